package sim

import (
	"fmt"
	"time"
)

// KeepAlive keeps an application's instance for a fixed time after every
// bin with requests: live in bins t+1 … t+K after requests in bin t, K =
// ceil(Keep / bin width). What AWS Lambda (10 min) and Azure Functions
// (20 min) did at the time of Shahrad et al.
type KeepAlive struct {
	Keep time.Duration

	k    int
	last []int // last bin with requests, per app; < 0 when none yet
}

// NewKeepAlive is a fixed keep-alive of keep.
func NewKeepAlive(keep time.Duration) *KeepAlive { return &KeepAlive{Keep: keep} }

func (p *KeepAlive) Name() string { return "keepalive-" + shortDuration(p.Keep) }

func (p *KeepAlive) Start(env Env) error {
	if p.Keep <= 0 {
		return fmt.Errorf("keep-alive %v: must be positive", p.Keep)
	}
	p.k = binsCeil(p.Keep, env.Bin)
	p.last = make([]int, len(env.Apps))
	for i := range p.last {
		p.last[i] = -1 << 30
	}
	return nil
}

func (p *KeepAlive) Plan(b int, live []bool) error {
	for i, t := range p.last {
		live[i] = b-t <= p.k
	}
	return nil
}

func (p *KeepAlive) Observe(b int, counts []uint32) {
	for i, c := range counts {
		if c > 0 {
			p.last[i] = b
		}
	}
}

// binsCeil is d in bins, rounded up, at least 1.
func binsCeil(d, bin time.Duration) int {
	return max(1, int((d+bin-1)/bin))
}

// shortDuration prints 10m rather than 10m0s.
func shortDuration(d time.Duration) string {
	switch {
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	default:
		return d.String()
	}
}

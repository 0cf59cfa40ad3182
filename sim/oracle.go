package sim

import (
	"fmt"

	"github.com/forewarm/forewarm/trace"
)

// Oracle knows the future: it prepares each application Lead bins before
// every bin with requests and releases right after that bin. With Lead 0
// (preparation decided at the start of the request's bin, as every other
// policy decides) nothing is cold and nothing is wasted: the floor no
// policy can beat. Lead > 0 charges Lead bins of waste per request burst.
type Oracle struct {
	Lead int

	tr *trace.Trace
}

func (p *Oracle) Name() string {
	if p.Lead == 0 {
		return "oracle"
	}
	return fmt.Sprintf("oracle-lead%d", p.Lead)
}

func (p *Oracle) Start(Env) error {
	if p.Lead < 0 {
		return fmt.Errorf("oracle lead %d bins: must be >= 0", p.Lead)
	}
	return nil
}

// Foresee hands the oracle the whole trace.
func (p *Oracle) Foresee(tr *trace.Trace) { p.tr = tr }

func (p *Oracle) Plan(b int, live []bool) error {
	if p.tr == nil {
		return fmt.Errorf("oracle: no trace to foresee (Run hands it over)")
	}
	end := min(b+p.Lead, p.tr.Bins-1)
	for i := range p.tr.Apps {
		for _, c := range p.tr.Apps[i].Counts[b : end+1] {
			if c > 0 {
				live[i] = true
				break
			}
		}
	}
	return nil
}

func (p *Oracle) Observe(int, []uint32) {}

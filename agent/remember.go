package agent

// What the agent remembers beyond its live leases, each bounded in time
// and in count: the IDs of ended leases and the results of served requests.

import (
	"sync"
	"time"

	"github.com/forewarm/forewarm/agent/api"
)

// tombstone remembers a lease ID that ended (or was released before it was
// ever reserved), so a late reserve or serve naming it is told it is gone
// instead of silently getting a new lease.
type tombstone struct {
	app   string
	state string
	note  string
	at    time.Time
	held  float64 // seconds from creation to end
	use   api.LeaseUse
	inst  *api.Instance // a process lease's instance, with how it ended
}

// tombstones is a bounded memory of ended IDs: each is kept for ttl, and
// never more than max at once (the oldest go first). Guarded by Agent.mu.
type tombstones struct {
	ttl   time.Duration
	max   int
	byID  map[string]tombstone
	order []tombRef // oldest first; may hold refs superseded by a later add
	head  int
}

type tombRef struct {
	id string
	at time.Time
}

func newTombstones(ttl time.Duration, max int) *tombstones {
	return &tombstones{ttl: ttl, max: max, byID: map[string]tombstone{}}
}

func (t *tombstones) add(id string, ts tombstone) {
	t.byID[id] = ts
	t.order = append(t.order, tombRef{id, ts.at})
	for len(t.byID) > t.max {
		t.popOldest()
	}
}

func (t *tombstones) get(id string) (tombstone, bool) {
	ts, ok := t.byID[id]
	return ts, ok
}

func (t *tombstones) len() int { return len(t.byID) }

// popOldest forgets the oldest remembered ID.
func (t *tombstones) popOldest() {
	for t.head < len(t.order) {
		r := t.order[t.head]
		t.order[t.head] = tombRef{}
		t.head++
		if ts, ok := t.byID[r.id]; ok && ts.at.Equal(r.at) {
			delete(t.byID, r.id)
			break
		}
	}
	t.compact()
}

// trim forgets IDs older than the TTL.
func (t *tombstones) trim(now time.Time) {
	for t.head < len(t.order) && now.Sub(t.order[t.head].at) > t.ttl {
		r := t.order[t.head]
		t.order[t.head] = tombRef{}
		t.head++
		if ts, ok := t.byID[r.id]; ok && ts.at.Equal(r.at) {
			delete(t.byID, r.id)
		}
	}
	t.compact()
}

func (t *tombstones) compact() {
	if t.head > 1024 && t.head > len(t.order)/2 {
		t.order = append([]tombRef(nil), t.order[t.head:]...)
		t.head = 0
	}
}

// serveCache makes serving idempotent by request ID: the first serve of an
// ID runs, a retry waits for it (if still running) and gets its result.
// Successful results are remembered for ttl and at most max of them; a
// failed serve is forgotten, so a retry may run it again.
type serveCache struct {
	ttl time.Duration
	max int

	mu    sync.Mutex
	byID  map[string]*serveEntry
	order []*serveEntry // finished entries, oldest first
	head  int
}

type serveEntry struct {
	id   string
	app  string
	done chan struct{}
	res  api.ServeResult
	err  error
	at   time.Time // when it finished
}

func newServeCache(ttl time.Duration, max int) *serveCache {
	return &serveCache{ttl: ttl, max: max, byID: map[string]*serveEntry{}}
}

// begin returns the entry of request id; first says the caller must run it
// and then call end. A retry naming another application is a conflict.
func (c *serveCache) begin(id, app string) (e *serveEntry, first bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.trimLocked(time.Now())
	if e, ok := c.byID[id]; ok {
		if e.app != app {
			return nil, false, errorf(api.CodeConflict, "request %s was already served for application %s, not %s", id, e.app, app)
		}
		return e, false, nil
	}
	e = &serveEntry{id: id, app: app, done: make(chan struct{})}
	c.byID[id] = e
	return e, true, nil
}

// end records how the first serve of e went and wakes its retries.
func (c *serveCache) end(e *serveEntry, res api.ServeResult, err error) {
	c.mu.Lock()
	e.res, e.err, e.at = res, err, time.Now()
	if err != nil {
		delete(c.byID, e.id)
	} else {
		c.order = append(c.order, e)
		for len(c.order)-c.head > c.max {
			c.popLocked()
		}
	}
	c.mu.Unlock()
	close(e.done)
}

func (c *serveCache) trimLocked(now time.Time) {
	for c.head < len(c.order) && now.Sub(c.order[c.head].at) > c.ttl {
		c.popLocked()
	}
}

func (c *serveCache) popLocked() {
	e := c.order[c.head]
	c.order[c.head] = nil
	c.head++
	if c.byID[e.id] == e {
		delete(c.byID, e.id)
	}
	if c.head > 1024 && c.head > len(c.order)/2 {
		c.order = append([]*serveEntry(nil), c.order[c.head:]...)
		c.head = 0
	}
}

func (c *serveCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.byID)
}

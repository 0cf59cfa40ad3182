package sim

// Reactive prepares nothing: every request is cold, nothing is wasted.
type Reactive struct{}

func (Reactive) Name() string           { return "reactive" }
func (Reactive) Start(Env) error        { return nil }
func (Reactive) Plan(int, []bool) error { return nil }
func (Reactive) Observe(int, []uint32)  {}

package workflows

import "github.com/forewarm/forewarm/internal/jsonx"

// What an operator reads of the workflows (inputs, results, the loop's
// state and its query, update answers) is written in the one JSON style:
// snake_case keys, durations as "1m0s" (package jsonx). Reading also
// accepts the form of histories recorded before (Go field names,
// durations in nanoseconds), so they replay. Signals and updates that
// operators and workers send keep their strict decoding (signals.go).

func (p Policy) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(p) }
func (p *Policy) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, p) }

func (l LoopInput) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(l) }
func (l *LoopInput) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, l) }

func (l LoopStats) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(l) }
func (l *LoopStats) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, l) }

func (l LoopResult) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(l) }
func (l *LoopResult) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, l) }

func (l LoopStatus) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(l) }
func (l *LoopStatus) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, l) }

func (p PolicyUpdateResult) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(p) }
func (p *PolicyUpdateResult) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, p) }

func (t TraceClock) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(t) }
func (t *TraceClock) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, t) }

func (p PrepareInput) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(p) }
func (p *PrepareInput) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, p) }

func (p PrepareAttempt) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(p) }
func (p *PrepareAttempt) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, p) }

func (p PrepareResult) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(p) }
func (p *PrepareResult) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, p) }

func (r RequestInput) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(r) }
func (r *RequestInput) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, r) }

func (r RequestResult) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(r) }
func (r *RequestResult) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, r) }

func (t TrainingInput) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(t) }
func (t *TrainingInput) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, t) }

func (m ModelDecision) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(m) }
func (m *ModelDecision) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, m) }

func (t TrainingResult) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(t) }
func (t *TrainingResult) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, t) }

func (t TrainingProgress) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(t) }
func (t *TrainingProgress) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, t) }

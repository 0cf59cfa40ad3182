package wire

import "github.com/forewarm/forewarm/internal/jsonx"

// The activity types an operator reads inside the workflows' inputs,
// states and answers (the loop's profile and leases, a ranking, a claim)
// are written in the one JSON style and read in either (package jsonx).
// DatasetSummary's methods are beside it.

func (a AppProfile) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(a) }
func (a *AppProfile) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, a) }

func (l Lease) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(l) }
func (l *Lease) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, l) }

func (h HostCandidate) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(h) }
func (h *HostCandidate) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, h) }

func (r RankResult) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(r) }
func (r *RankResult) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, r) }

func (k KeepPlan) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(k) }
func (k *KeepPlan) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, k) }

func (c ClaimResult) MarshalJSON() ([]byte, error)  { return jsonx.Marshal(c) }
func (c *ClaimResult) UnmarshalJSON(b []byte) error { return jsonx.Unmarshal(b, c) }

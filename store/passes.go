package store

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/forewarm/forewarm/store/records"
)

// AdjustmentPass is one pass of a learner (package records defines it).
type AdjustmentPass = records.AdjustmentPass

// maxPassAdjustments bounds one pass's adjustments: their stamps, At plus
// one nanosecond each, stay within At's second, so they are one insert
// into one partition (all or nothing on one server).
const maxPassAdjustments = 100_000

// RecordAdjustmentPass records a pass before its adjustments are written
// (ApplyAdjustmentPass writes them). The adjustments must be stamped At,
// At+1ns, … in order, with At on a whole second.
func (s *Store) RecordAdjustmentPass(ctx context.Context, p AdjustmentPass) error {
	if err := checkPass(p); err != nil {
		return err
	}
	body, err := json.Marshal(p.Adjustments)
	if err != nil {
		return fmt.Errorf("adjustment pass %s: encode its adjustments: %w", p.Learner, err)
	}
	return s.insert(ctx, "adjustment_passes", "time, learner, from_ns, to_ns, at_ns, rows, adjustments", 1, func(int) []any {
		return []any{p.At, p.Learner, nanos(p.From), nanos(p.To), nanos(p.At), uint64(p.Rows), string(body)}
	})
}

// checkPass refuses a pass whose adjustments could not be told apart once
// written, naming the field.
func checkPass(p AdjustmentPass) error {
	switch {
	case p.Learner == "":
		return fmt.Errorf("adjustment pass: field Learner is empty")
	case !p.To.After(p.From):
		return fmt.Errorf("adjustment pass %s: field To (%v) is not after From (%v)", p.Learner, p.To, p.From)
	case p.At.IsZero() || !p.At.Equal(p.At.Truncate(time.Second)):
		return fmt.Errorf("adjustment pass %s: field At (%v) is not a whole second", p.Learner, p.At)
	case p.Rows < 0:
		return fmt.Errorf("adjustment pass %s: field Rows is negative", p.Learner)
	case len(p.Adjustments) > maxPassAdjustments:
		return fmt.Errorf("adjustment pass %s: field Adjustments: %d, at most %d", p.Learner, len(p.Adjustments), maxPassAdjustments)
	}
	for i, a := range p.Adjustments {
		if want := p.At.Add(time.Duration(i)); !a.Time.Equal(want) {
			return fmt.Errorf("adjustment pass %s: field Adjustments[%d].Time is %v, want %v (At + %d ns)", p.Learner, i, a.Time, want, i)
		}
		if a.App == "" || a.Host == "" {
			return fmt.Errorf("adjustment pass %s: field Adjustments[%d]: app and host are required", p.Learner, i)
		}
	}
	return nil
}

// LastAdjustmentPass returns the learner's pass that reached furthest;
// ok is false before its first.
func (s *Store) LastAdjustmentPass(ctx context.Context, learner string) (p AdjustmentPass, ok bool, err error) {
	err = s.query(ctx, func(row scanner) error {
		var from, to, at, rows uint64
		var body string
		if err := row.Scan(&from, &to, &at, &rows, &body); err != nil {
			return err
		}
		p = AdjustmentPass{Learner: learner, From: fromNanos(from), To: fromNanos(to), At: fromNanos(at), Rows: int(rows)}
		if err := json.Unmarshal([]byte(body), &p.Adjustments); err != nil {
			return fmt.Errorf("field adjustments: %w", err)
		}
		ok = true
		return nil
	}, `SELECT from_ns, to_ns, at_ns, rows, adjustments FROM adjustment_passes WHERE learner = ?
		ORDER BY to_ns DESC, at_ns DESC LIMIT 1`, learner)
	if err != nil {
		return AdjustmentPass{}, false, fmt.Errorf("read the last adjustment pass of %s: %w", learner, err)
	}
	return p, ok, nil
}

// ApplyAdjustmentPass writes the pass's adjustments that are not in the
// adjustments table yet (known by their stamp, app and host) and says how
// many it wrote: all of them the first time, none once they landed. So
// it finishes a pass interrupted after it was recorded, and repeats
// nothing.
func (s *Store) ApplyAdjustmentPass(ctx context.Context, p AdjustmentPass) (int, error) {
	if err := checkPass(p); err != nil {
		return 0, err
	}
	if len(p.Adjustments) == 0 {
		return 0, nil
	}
	type key struct {
		ns        uint64
		app, host string
	}
	landed := map[key]bool{}
	err := s.query(ctx, func(row scanner) error {
		var k key
		if err := row.Scan(&k.ns, &k.app, &k.host); err != nil {
			return err
		}
		landed[k] = true
		return nil
	}, `SELECT at_ns, app, host FROM adjustments WHERE time = toDateTime(?) AND at_ns >= ? AND at_ns < ?`,
		unix(p.At), nanos(p.At), nanos(p.At)+uint64(len(p.Adjustments)))
	if err != nil {
		return 0, fmt.Errorf("adjustment pass %s at %v: read what landed: %w", p.Learner, p.At, err)
	}
	var missing []Adjustment
	for _, a := range p.Adjustments {
		if !landed[key{nanos(a.Time), a.App, a.Host}] {
			missing = append(missing, a)
		}
	}
	if len(missing) == 0 {
		return 0, nil
	}
	if err := s.RecordAdjustments(ctx, missing); err != nil {
		return 0, fmt.Errorf("adjustment pass %s at %v: %w", p.Learner, p.At, err)
	}
	return len(missing), nil
}

func fromNanos(ns uint64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, int64(ns)).UTC()
}

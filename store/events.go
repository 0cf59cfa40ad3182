package store

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/forewarm/forewarm/store/records"
)

// The rows this file reads and writes are defined in package records,
// with their event kinds and decisions.
type (
	Prediction       = records.Prediction
	PreparationEvent = records.PreparationEvent
	Adjustment       = records.Adjustment
)

// RecordPredictions stores predictions; a zero Time is now.
func (s *Store) RecordPredictions(ctx context.Context, ps []Prediction) error {
	for i := range ps {
		if ps[i].App == "" {
			return fmt.Errorf("prediction %d: empty app", i)
		}
	}
	return s.insert(ctx, "predictions", "time, at_ns, app, bin, probability, threshold, model_version, decision", len(ps), func(i int) []any {
		p := ps[i]
		p.Time = orNow(p.Time)
		return []any{p.Time, nanos(p.Time), p.App, p.Bin, p.Probability, p.Threshold, p.ModelVersion, p.Decision}
	})
}

// Predictions returns the predictions of [from, to), in time order.
func (s *Store) Predictions(ctx context.Context, from, to time.Time) ([]Prediction, error) {
	var out []Prediction
	err := s.query(ctx, func(rows scanner) error {
		var p Prediction
		var ns uint64
		if err := rows.Scan(&ns, &p.App, &p.Bin, &p.Probability, &p.Threshold, &p.ModelVersion, &p.Decision); err != nil {
			return err
		}
		p.Time, p.Bin = time.Unix(0, int64(ns)).UTC(), p.Bin.UTC()
		out = append(out, p)
		return nil
		// A batch written again after a lost acknowledgement (the insert
		// landed, the answer did not) holds the very same rows: each
		// prediction is read once.
	}, `SELECT DISTINCT at_ns, app, bin, probability, threshold, model_version, decision FROM predictions
			WHERE time >= toDateTime(?) AND time <= toDateTime(?) AND at_ns >= ? AND at_ns < ? ORDER BY at_ns`,
		unix(from), unix(to), nanos(from), nanos(to))
	if err != nil {
		return nil, fmt.Errorf("read predictions: %w", err)
	}
	return out, nil
}

const prepCols = "time, at_ns, preparation_id, app, host, event, memory_mb, disk_mb, cpu_milli, shadow_ms, reason, held_seconds"

// RecordPreparationEvents stores preparation events; a zero Time is now.
func (s *Store) RecordPreparationEvents(ctx context.Context, es []PreparationEvent) error {
	for i, e := range es {
		if !slices.Contains(records.Events, e.Event) {
			return fmt.Errorf("preparation event %d: unknown event %q (want one of %v)", i, e.Event, records.Events)
		}
	}
	return s.insert(ctx, "preparation_events", prepCols, len(es), func(i int) []any {
		e := es[i]
		e.Time = orNow(e.Time)
		return []any{e.Time, nanos(e.Time), e.PreparationID, e.App, e.Host, e.Event, e.MemoryMB, e.DiskMB, e.CPUMilli, e.ShadowMS, e.Reason, e.HeldSeconds}
	})
}

// PreparationEvents returns the events of [from, to), in time order.
func (s *Store) PreparationEvents(ctx context.Context, from, to time.Time) ([]PreparationEvent, error) {
	var out []PreparationEvent
	err := s.query(ctx, func(rows scanner) error {
		var e PreparationEvent
		var ns uint64
		if err := rows.Scan(&e.Time, &ns, &e.PreparationID, &e.App, &e.Host, &e.Event, &e.MemoryMB, &e.DiskMB, &e.CPUMilli, &e.ShadowMS, &e.Reason, &e.HeldSeconds); err != nil {
			return err
		}
		e.Time = time.Unix(0, int64(ns)).UTC()
		out = append(out, e)
		return nil
	}, `SELECT `+prepCols+` FROM preparation_events
			WHERE time >= toDateTime(?) AND time <= toDateTime(?) AND at_ns >= ? AND at_ns < ? ORDER BY at_ns`,
		unix(from), unix(to), nanos(from), nanos(to))
	if err != nil {
		return nil, fmt.Errorf("read preparation events: %w", err)
	}
	return out, nil
}

// RecordAdjustments stores adjustments; a zero Time is now.
func (s *Store) RecordAdjustments(ctx context.Context, as []Adjustment) error {
	for i := range as {
		if as[i].App == "" || as[i].Host == "" {
			return fmt.Errorf("adjustment %d: app and host are required", i)
		}
	}
	return s.insert(ctx, "adjustments", "time, at_ns, app, host, expected, actual, delta, new_adjustment, reason", len(as), func(i int) []any {
		a := as[i]
		a.Time = orNow(a.Time)
		return []any{a.Time, nanos(a.Time), a.App, a.Host, a.Expected, a.Actual, a.Delta, a.NewAdjustment, a.Reason}
	})
}

// Adjustments returns the latest adjustment of every (app, host) pair.
func (s *Store) Adjustments(ctx context.Context) (map[[2]string]float64, error) {
	out := map[[2]string]float64{}
	err := s.query(ctx, func(rows scanner) error {
		var app, host string
		var v float64
		if err := rows.Scan(&app, &host, &v); err != nil {
			return err
		}
		out[[2]string{app, host}] = v
		return nil
	}, `SELECT app, host, argMax(new_adjustment, at_ns) FROM adjustments GROUP BY app, host`)
	if err != nil {
		return nil, fmt.Errorf("read adjustments: %w", err)
	}
	return out, nil
}

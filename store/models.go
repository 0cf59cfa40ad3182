package store

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// ErrNoModel is returned when no model matches (no champion of a kind yet,
// or an unknown version).
var ErrNoModel = errors.New("no such model")

// Model statuses (the kinds are models.KindDemand and models.KindAffinity).
const (
	StatusChampion  = "champion"
	StatusCandidate = "candidate"
	StatusRetired   = "retired"
)

var statuses = []string{StatusChampion, StatusCandidate, StatusRetired}

// ModelRecord is one published model version.
type ModelRecord struct {
	Version string             `json:"version"`
	Kind    string             `json:"kind"` // models.KindDemand or models.KindAffinity
	Created time.Time          `json:"created"`
	Metrics map[string]float64 `json:"metrics"`
	Status  string             `json:"status"` // champion|candidate|retired
	Meta    string             `json:"meta"`   // JSON, owned by the models package
	ONNX    []byte             `json:"-"`
}

// PublishModel stores a model version with its status; publishing a
// champion retires the previous champion of its kind.
func (s *Store) PublishModel(ctx context.Context, m ModelRecord) error {
	if m.Version == "" || m.Kind == "" {
		return fmt.Errorf("publish model: version and kind are required")
	}
	if m.Status == "" {
		m.Status = StatusCandidate
	}
	if !slices.Contains(statuses, m.Status) {
		return fmt.Errorf("publish model %s: unknown status %q (want one of %v)", m.Version, m.Status, statuses)
	}
	m.Created = orNow(m.Created)
	names := slices.Sorted(maps.Keys(m.Metrics))
	values := make([]float64, len(names))
	for i, n := range names {
		values[i] = m.Metrics[n]
	}
	err := s.insert(ctx, "models", "version, kind, created, created_ns, metric_names, metric_values, meta, onnx", 1, func(int) []any {
		return []any{m.Version, m.Kind, m.Created, nanos(m.Created), names, values, m.Meta, m.ONNX}
	})
	if err != nil {
		return fmt.Errorf("publish model %s: %w", m.Version, err)
	}
	return s.setStatus(ctx, m.Version, m.Kind, m.Status)
}

// SetModelStatus changes a version's status (promoting to champion retires
// the previous champion of the kind).
func (s *Store) SetModelStatus(ctx context.Context, version, status string) error {
	if !slices.Contains(statuses, status) {
		return fmt.Errorf("model %s: unknown status %q (want one of %v)", version, status, statuses)
	}
	var kind string
	err := s.query(ctx, func(rows scanner) error {
		if err := rows.Scan(&kind); err != nil {
			return err
		}
		return nil
	}, `SELECT kind FROM models WHERE version = ? LIMIT 1`, version)
	if err != nil {
		return fmt.Errorf("model %s: %w", version, err)
	}
	if kind == "" {
		return fmt.Errorf("model %s: %w", version, ErrNoModel)
	}
	return s.setStatus(ctx, version, kind, status)
}

func (s *Store) setStatus(ctx context.Context, version, kind, status string) error {
	type change struct{ version, status string }
	changes := []change{}
	if status == StatusChampion {
		current, err := s.currentStatuses(ctx, kind)
		if err != nil {
			return err
		}
		for v, st := range current {
			if st == StatusChampion && v != version {
				changes = append(changes, change{v, StatusRetired})
			}
		}
	}
	changes = append(changes, change{version, status})
	now := time.Now()
	err := s.insert(ctx, "model_status", "time, at_ns, version, kind, status", len(changes), func(i int) []any {
		return []any{now, nanos(now) + uint64(i), changes[i].version, kind, changes[i].status}
	})
	if err != nil {
		return fmt.Errorf("set model %s %s: %w", version, status, err)
	}
	return nil
}

// currentStatuses maps every version of a kind ("" = all kinds) to its
// latest status.
func (s *Store) currentStatuses(ctx context.Context, kind string) (map[string]string, error) {
	out := map[string]string{}
	err := s.query(ctx, func(rows scanner) error {
		var v, st string
		if err := rows.Scan(&v, &st); err != nil {
			return err
		}
		out[v] = st
		return nil
	}, `SELECT version, argMax(status, at_ns) FROM model_status WHERE kind = ? OR ? = '' GROUP BY version`, kind, kind)
	if err != nil {
		return nil, fmt.Errorf("read model statuses: %w", err)
	}
	return out, nil
}

// ChampionVersion is the current champion of a kind, or ErrNoModel: the
// one champion lookup (workers poll it; Champion loads its bytes). Should
// two champions exist (concurrent promotions), the most recently promoted
// wins.
func (s *Store) ChampionVersion(ctx context.Context, kind string) (string, error) {
	var version string
	err := s.query(ctx, func(rows scanner) error {
		if err := rows.Scan(&version); err != nil {
			return err
		}
		return nil
	}, `SELECT version FROM model_status WHERE kind = ?
			GROUP BY version HAVING argMax(status, at_ns) = 'champion' ORDER BY max(at_ns) DESC LIMIT 1`, kind)
	if err != nil {
		return "", fmt.Errorf("find %s champion: %w", kind, err)
	}
	if version == "" {
		return "", fmt.Errorf("%s champion: %w", kind, ErrNoModel)
	}
	return version, nil
}

// Champion returns the current champion of a kind (ChampionVersion) with
// its ONNX bytes, or ErrNoModel.
func (s *Store) Champion(ctx context.Context, kind string) (ModelRecord, error) {
	version, err := s.ChampionVersion(ctx, kind)
	if err != nil {
		return ModelRecord{}, err
	}
	return s.Model(ctx, version)
}

// Model returns one version with its ONNX bytes, or ErrNoModel.
func (s *Store) Model(ctx context.Context, version string) (ModelRecord, error) {
	ms, err := s.models(ctx, version, true)
	if err != nil {
		return ModelRecord{}, err
	}
	if len(ms) == 0 {
		return ModelRecord{}, fmt.Errorf("model %s: %w", version, ErrNoModel)
	}
	return ms[0], nil
}

// ListModels returns every version without its bytes, newest first.
func (s *Store) ListModels(ctx context.Context) ([]ModelRecord, error) {
	return s.models(ctx, "", false)
}

func (s *Store) models(ctx context.Context, version string, withBytes bool) ([]ModelRecord, error) {
	onnx := "''"
	if withBytes {
		onnx = "argMax(onnx, created_ns)"
	}
	var out []ModelRecord
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, `SELECT version, argMax(kind, created_ns), max(created_ns), argMax(metric_names, created_ns),
				argMax(metric_values, created_ns), argMax(meta, created_ns), `+onnx+`
			FROM models WHERE version = ? OR ? = '' GROUP BY version ORDER BY max(created_ns) DESC, version`, version, version)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				m      ModelRecord
				ns     uint64
				names  []string
				values []float64
				bytes  string
			)
			if err := rows.Scan(&m.Version, &m.Kind, &ns, &names, &values, &m.Meta, &bytes); err != nil {
				return err
			}
			m.Created = time.Unix(0, int64(ns)).UTC()
			m.Metrics = make(map[string]float64, len(names))
			for i, n := range names {
				if i < len(values) {
					m.Metrics[n] = values[i]
				}
			}
			if withBytes {
				m.ONNX = []byte(bytes)
			}
			out = append(out, m)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read models: %w", err)
	}
	st, err := s.currentStatuses(ctx, "")
	if err != nil {
		return nil, err
	}
	for i := range out {
		out[i].Status = st[out[i].Version]
	}
	return out, nil
}

// TrainingRun is one run of the training workflow, published or not.
type TrainingRun struct {
	Time     time.Time          `json:"time"`
	RunID    string             `json:"run_id"`
	Kind     string             `json:"kind"`
	Version  string             `json:"version"` // the model trained ("" if none)
	Status   string             `json:"status"`  // e.g. published, rejected, failed
	Duration time.Duration      `json:"duration"`
	Samples  int64              `json:"samples"`
	Metrics  map[string]float64 `json:"metrics"`
	Message  string             `json:"message"`
}

// RecordTrainingRun stores a training run; a zero Time is now.
func (s *Store) RecordTrainingRun(ctx context.Context, r TrainingRun) error {
	r.Time = orNow(r.Time)
	names := slices.Sorted(maps.Keys(r.Metrics))
	values := make([]float64, len(names))
	for i, n := range names {
		values[i] = r.Metrics[n]
	}
	return s.insert(ctx, "training_runs", "time, at_ns, run_id, kind, version, status, duration_s, samples, metric_names, metric_values, message", 1, func(int) []any {
		return []any{r.Time, nanos(r.Time), r.RunID, r.Kind, r.Version, r.Status, r.Duration.Seconds(), uint64(max(0, r.Samples)), names, values, r.Message}
	})
}

// TrainingRuns returns the latest runs, newest first.
func (s *Store) TrainingRuns(ctx context.Context, limit int) ([]TrainingRun, error) {
	var out []TrainingRun
	err := s.withTimeout(ctx, func(ctx context.Context) error {
		rows, err := s.conn.Query(ctx, `SELECT at_ns, run_id, kind, version, status, duration_s, samples, metric_names, metric_values, message
			FROM training_runs ORDER BY at_ns DESC LIMIT ?`, max(1, limit))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				r      TrainingRun
				ns, n  uint64
				dur    float64
				names  []string
				values []float64
			)
			if err := rows.Scan(&ns, &r.RunID, &r.Kind, &r.Version, &r.Status, &dur, &n, &names, &values, &r.Message); err != nil {
				return err
			}
			r.Time, r.Duration, r.Samples = time.Unix(0, int64(ns)).UTC(), time.Duration(dur*float64(time.Second)), int64(n)
			r.Metrics = make(map[string]float64, len(names))
			for i, name := range names {
				if i < len(values) {
					r.Metrics[name] = values[i]
				}
			}
			out = append(out, r)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("read training runs: %w", err)
	}
	return out, nil
}

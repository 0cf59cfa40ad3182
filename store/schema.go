package store

import (
	"fmt"
	"strings"
	"text/template"
)

// Retention of the event tables on servers with TTL. Activity, loads,
// profiles, adjustments and models are history the models learn from and
// are kept; they are also dated by trace time, which may be years old.
const (
	RequestRetentionDays     = 90
	HostMetricsRetentionDays = 30
	EventRetentionDays       = 90
)

// migration is one schema version: statements that are each idempotent
// (IF NOT EXISTS), so a migration interrupted or run twice at once
// converges. Templates: {{str}} is a compact string type where supported,
// {{ttl "col" days}} a retention clause where supported.
type migration struct {
	version int
	name    string
	stmts   []string
}

var migrations = []migration{{
	version: 1,
	name:    "initial schema",
	stmts: []string{
		// Per-application activity per bin, sparse: only bins with requests.
		// Sums, so means are sum/requests. load_id '' = live requests.
		`CREATE TABLE IF NOT EXISTS activity (
			bin_start DateTime,
			app {{str}},
			load_id {{str}},
			requests UInt64,
			size_mb_sum Float64,
			read_ratio_sum Float64,
			work_ms_sum Float64
		) ENGINE = SummingMergeTree()
		PARTITION BY toYYYYMM(bin_start)
		ORDER BY (bin_start, app, load_id)`,

		// One row per committed load; the earliest attempt (smallest load_id)
		// of a content key is the visible one.
		`CREATE TABLE IF NOT EXISTS loads (
			load_id String,
			content_key String,
			format String,
			source String,
			apps UInt32,
			bins UInt32,
			bin_seconds UInt32,
			rows UInt64,
			requests UInt64,
			first_bin DateTime,
			last_bin DateTime,
			loaded_at DateTime
		) ENGINE = MergeTree()
		ORDER BY (content_key, load_id)`,

		`CREATE TABLE IF NOT EXISTS app_profiles (
			app String,
			load_id String,
			memory_mb Float64,
			read_ratio Float64,
			duration_ms Float64,
			volume_type String,
			updated_ns UInt64
		) ENGINE = ReplacingMergeTree(updated_ns)
		ORDER BY (app, load_id)`,

		`CREATE TABLE IF NOT EXISTS requests (
			time DateTime,
			at_ns UInt64,
			request_id UUID,
			app {{str}},
			volume_type {{str}},
			size_mb Float64,
			read_ratio Float64,
			host {{str}},
			warm UInt8,
			expected_score Float64,
			setup_ms Float64,
			work_ms Float64,
			latency_ms Float64,
			outcome {{str}}
		) ENGINE = MergeTree()
		PARTITION BY toYYYYMM(time)
		ORDER BY (app, time)
		{{ttl "time" 90}}`,

		// Keeps activity up to date from live requests, one row per
		// (second, app) of each insert block.
		`CREATE MATERIALIZED VIEW IF NOT EXISTS activity_from_requests TO activity AS
		SELECT
			time AS bin_start,
			app,
			'' AS load_id,
			count() AS requests,
			sum(size_mb) AS size_mb_sum,
			sum(read_ratio) AS read_ratio_sum,
			sum(work_ms) AS work_ms_sum
		FROM requests
		GROUP BY time, app`,

		`CREATE TABLE IF NOT EXISTS hosts (
			id String,
			url String,
			memory_mb Int64,
			disk_mb Int64,
			cpu_milli Int64,
			speed Float64,
			labels String,
			seen_ns UInt64
		) ENGINE = ReplacingMergeTree(seen_ns)
		ORDER BY id`,

		`CREATE TABLE IF NOT EXISTS host_metrics (
			time DateTime,
			at_ns UInt64,
			host_id {{str}},
			cpu_util Float64,
			mem_used_mb Float64,
			mem_avail_mb Float64,
			mem_pressure Float64,
			io_latency_ms Float64,
			reserved_mem_mb Float64,
			reserved_disk_mb Float64,
			reserved_cpu_milli Int64,
			leases UInt32
		) ENGINE = MergeTree()
		PARTITION BY toYYYYMM(time)
		ORDER BY (host_id, time)
		{{ttl "time" 30}}`,

		`CREATE TABLE IF NOT EXISTS predictions (
			time DateTime,
			at_ns UInt64,
			app {{str}},
			bin DateTime,
			probability Float64,
			threshold Float64,
			model_version {{str}},
			decision {{str}}
		) ENGINE = MergeTree()
		PARTITION BY toYYYYMM(time)
		ORDER BY (app, time)
		{{ttl "time" 90}}`,

		`CREATE TABLE IF NOT EXISTS preparation_events (
			time DateTime,
			at_ns UInt64,
			preparation_id String,
			app {{str}},
			host {{str}},
			event {{str}},
			memory_mb Float64,
			disk_mb Float64,
			cpu_milli Int64,
			shadow_ms Float64,
			reason String,
			held_seconds Float64
		) ENGINE = MergeTree()
		PARTITION BY toYYYYMM(time)
		ORDER BY (app, time)
		{{ttl "time" 90}}`,

		`CREATE TABLE IF NOT EXISTS adjustments (
			time DateTime,
			at_ns UInt64,
			app {{str}},
			host {{str}},
			expected Float64,
			actual Float64,
			delta Float64,
			new_adjustment Float64,
			reason String
		) ENGINE = MergeTree()
		PARTITION BY toYYYYMM(time)
		ORDER BY (app, host, time)`,

		// Immutable model versions; status changes are rows of model_status.
		`CREATE TABLE IF NOT EXISTS models (
			version String,
			kind String,
			created DateTime,
			created_ns UInt64,
			metric_names Array(String),
			metric_values Array(Float64),
			meta String,
			onnx String
		) ENGINE = ReplacingMergeTree(created_ns)
		ORDER BY version`,

		`CREATE TABLE IF NOT EXISTS model_status (
			time DateTime,
			at_ns UInt64,
			version String,
			kind String,
			status String
		) ENGINE = MergeTree()
		ORDER BY (kind, version, at_ns)`,

		`CREATE TABLE IF NOT EXISTS training_runs (
			time DateTime,
			at_ns UInt64,
			run_id String,
			kind String,
			version String,
			status String,
			duration_s Float64,
			samples UInt64,
			metric_names Array(String),
			metric_values Array(Float64),
			message String
		) ENGINE = MergeTree()
		PARTITION BY toYYYYMM(time)
		ORDER BY (kind, time)`,
	},
}, {
	version: 2,
	name:    "load claims",
	stmts: []string{
		// A load claims its content key before writing, so concurrent loads
		// of the same content do the work once; a claim is refreshed while
		// the load runs and released when it fails.
		`CREATE TABLE IF NOT EXISTS load_claims (
			content_key String,
			load_id String,
			state String,
			at_ns UInt64
		) ENGINE = MergeTree()
		ORDER BY (content_key, load_id, at_ns)`,
	},
}}

// render expands a migration statement for the server's features.
func (f features) render(stmt string) (string, error) {
	t, err := template.New("").Funcs(template.FuncMap{
		"str": func() string {
			if f.lowCardinality {
				return "LowCardinality(String)"
			}
			return "String"
		},
		"ttl": func(col string, days int) string {
			if f.ttl {
				return fmt.Sprintf("TTL %s + INTERVAL %d DAY", col, days)
			}
			return ""
		},
	}).Parse(stmt)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := t.Execute(&b, nil); err != nil {
		return "", err
	}
	return b.String(), nil
}

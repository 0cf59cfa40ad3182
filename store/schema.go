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

// migration is one schema version: tables, then materialized views, each
// created IF NOT EXISTS, so a migration interrupted or run twice at once
// converges. The same definitions render for one server and for a cluster
// (see layout).
type migration struct {
	version int
	name    string
	tables  []tableDef
	views   []viewDef
}

// tableDef is one table. columns and tail are templates: {{str}} is a
// compact string type where supported, {{ttl "col" days}} a retention
// clause where supported.
type tableDef struct {
	name    string
	columns string
	engine  string // MergeTree, SummingMergeTree or ReplacingMergeTree
	version string // ReplacingMergeTree's version column, if any
	tail    string // PARTITION BY / ORDER BY / TTL
}

// viewDef is a materialized view that writes to table `to` what is
// inserted into table `from`.
type viewDef struct {
	name, to, from string
	selects        string
	groupBy        string
}

var migrations = []migration{{
	version: 1,
	name:    "initial schema",
	tables: []tableDef{{
		// Per-application activity per bin, sparse: only bins with requests.
		// Sums, so means are sum/requests. load_id '' = live requests.
		name: "activity",
		columns: `bin_start DateTime,
			app {{str}},
			load_id {{str}},
			requests UInt64,
			size_mb_sum Float64,
			read_ratio_sum Float64,
			work_ms_sum Float64`,
		engine: "SummingMergeTree",
		tail: `PARTITION BY toYYYYMM(bin_start)
		ORDER BY (bin_start, app, load_id)`,
	}, {
		// One row per committed load; the earliest attempt (smallest load_id)
		// of a content key is the visible one.
		name: "loads",
		columns: `load_id String,
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
			loaded_at DateTime`,
		engine: "MergeTree",
		tail:   `ORDER BY (content_key, load_id)`,
	}, {
		name: "app_profiles",
		columns: `app String,
			load_id String,
			memory_mb Float64,
			read_ratio Float64,
			duration_ms Float64,
			volume_type String,
			updated_ns UInt64`,
		engine:  "ReplacingMergeTree",
		version: "updated_ns",
		tail:    `ORDER BY (app, load_id)`,
	}, {
		name: "requests",
		columns: `time DateTime,
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
			outcome {{str}}`,
		engine: "MergeTree",
		tail: `PARTITION BY toYYYYMM(time)
		ORDER BY (app, time)
		{{ttl "time" 90}}`,
	}, {
		name: "hosts",
		columns: `id String,
			url String,
			memory_mb Int64,
			disk_mb Int64,
			cpu_milli Int64,
			speed Float64,
			labels String,
			seen_ns UInt64`,
		engine:  "ReplacingMergeTree",
		version: "seen_ns",
		tail:    `ORDER BY id`,
	}, {
		name: "host_metrics",
		columns: `time DateTime,
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
			leases UInt32`,
		engine: "MergeTree",
		tail: `PARTITION BY toYYYYMM(time)
		ORDER BY (host_id, time)
		{{ttl "time" 30}}`,
	}, {
		name: "predictions",
		columns: `time DateTime,
			at_ns UInt64,
			app {{str}},
			bin DateTime,
			probability Float64,
			threshold Float64,
			model_version {{str}},
			decision {{str}}`,
		engine: "MergeTree",
		tail: `PARTITION BY toYYYYMM(time)
		ORDER BY (app, time)
		{{ttl "time" 90}}`,
	}, {
		name: "preparation_events",
		columns: `time DateTime,
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
			held_seconds Float64`,
		engine: "MergeTree",
		tail: `PARTITION BY toYYYYMM(time)
		ORDER BY (app, time)
		{{ttl "time" 90}}`,
	}, {
		name: "adjustments",
		columns: `time DateTime,
			at_ns UInt64,
			app {{str}},
			host {{str}},
			expected Float64,
			actual Float64,
			delta Float64,
			new_adjustment Float64,
			reason String`,
		engine: "MergeTree",
		tail: `PARTITION BY toYYYYMM(time)
		ORDER BY (app, host, time)`,
	}, {
		// Immutable model versions; status changes are rows of model_status.
		name: "models",
		columns: `version String,
			kind String,
			created DateTime,
			created_ns UInt64,
			metric_names Array(String),
			metric_values Array(Float64),
			meta String,
			onnx String`,
		engine:  "ReplacingMergeTree",
		version: "created_ns",
		tail:    `ORDER BY version`,
	}, {
		name: "model_status",
		columns: `time DateTime,
			at_ns UInt64,
			version String,
			kind String,
			status String`,
		engine: "MergeTree",
		tail:   `ORDER BY (kind, version, at_ns)`,
	}, {
		name: "training_runs",
		columns: `time DateTime,
			at_ns UInt64,
			run_id String,
			kind String,
			version String,
			status String,
			duration_s Float64,
			samples UInt64,
			metric_names Array(String),
			metric_values Array(Float64),
			message String`,
		engine: "MergeTree",
		tail: `PARTITION BY toYYYYMM(time)
		ORDER BY (kind, time)`,
	}},
	views: []viewDef{{
		// Keeps activity up to date from live requests, one row per
		// (second, app) of each insert block. In a cluster it runs on the
		// replica that takes the insert; the result replicates like any row.
		name: "activity_from_requests", to: "activity", from: "requests",
		selects: `time AS bin_start,
			app,
			'' AS load_id,
			count() AS requests,
			sum(size_mb) AS size_mb_sum,
			sum(read_ratio) AS read_ratio_sum,
			sum(work_ms) AS work_ms_sum`,
		groupBy: "time, app",
	}},
}, {
	version: 2,
	name:    "load claims",
	tables: []tableDef{{
		// A load claims its content key before writing, so concurrent loads
		// of the same content do the work once; a claim is refreshed while
		// the load runs and released when it fails.
		name: "load_claims",
		columns: `content_key String,
			load_id String,
			state String,
			at_ns UInt64`,
		engine: "MergeTree",
		tail:   `ORDER BY (content_key, load_id, at_ns)`,
	}},
}, {
	version: 3,
	name:    "router arrivals",
	tables: []tableDef{{
		// A platform's router's requests per application and bin, in
		// batches (store.RecordArrivals). (router, batch) is a batch's
		// identity, one row per (bin, app) of it: a batch written twice
		// folds into one row when parts merge, and every read takes one
		// row per key (any), so a retry counts once before the merge too;
		// two routers' identical batches are distinct blocks, which
		// replicated insert deduplication keeps apart. Reads add them to
		// the activity (activityRows); kept like it.
		name: "arrivals",
		columns: `bin_start DateTime,
			app {{str}},
			router {{str}},
			batch String,
			requests UInt64`,
		engine: "ReplacingMergeTree",
		tail: `PARTITION BY toYYYYMM(bin_start)
		ORDER BY (bin_start, app, router, batch)`,
	}},
}, {
	version: 4,
	name:    "gateway requests",
	tables: []tableDef{{
		// Every request the gateway served, in batches: host, warm or
		// cold, the latency split, method, status and sizes. Not the
		// requests table: the gateway's arrivals already count in the
		// activity (through arrivals), so these rows must not count twice.
		name: "gateway_requests",
		columns: `time DateTime,
			at_ns UInt64,
			request_id String,
			app {{str}},
			gateway {{str}},
			host {{str}},
			lease String,
			outcome {{str}},
			retried UInt8,
			method {{str}},
			status UInt16,
			bytes_in UInt64,
			bytes_out UInt64,
			queue_ms Float64,
			start_ms Float64,
			app_ms Float64,
			total_ms Float64,
			error String`,
		engine: "MergeTree",
		tail: `PARTITION BY toYYYYMM(time)
		ORDER BY (app, time)
		{{ttl "time" 90}}`,
	}},
}, {
	version: 5,
	name:    "adjustment passes",
	tables: []tableDef{{
		// One row per pass of a learner that turns recorded requests into
		// affinity adjustments (records.AdjustmentPass): the rows it read
		// and, as JSON, the adjustments it wrote, so a pass interrupted
		// before they landed is finished from here, never computed again.
		// Kept like the requests they read (a learner that finds no pass
		// starts from its lookback).
		name: "adjustment_passes",
		columns: `time DateTime,
			learner {{str}},
			from_ns UInt64,
			to_ns UInt64,
			at_ns UInt64,
			rows UInt64,
			adjustments String`,
		engine: "MergeTree",
		tail: `PARTITION BY toYYYYMM(time)
		ORDER BY (learner, to_ns, at_ns)
		{{ttl "time" 90}}`,
	}},
}}

// migrationsTable records the applied versions.
var migrationsTable = tableDef{
	name: "schema_migrations",
	columns: `version UInt32,
		name String,
		applied_at DateTime,
		applied_by String`,
	engine: "ReplacingMergeTree",
	tail:   "ORDER BY version",
}

// layout says how the tables are laid out: on one server, plain tables
// under their own names; in a cluster, every table is a Replicated* table
// <name>_local on each replica (ZooKeeper path keyed by the {shard} macro,
// replica name by {replica}) behind a Distributed table <name> that every
// read and write goes through, and DDL runs ON CLUSTER.
type layout struct {
	db       string
	cluster  string
	features features
}

// features are the schema options chosen from the server version.
type features struct {
	lowCardinality bool
	ttl            bool
}

// local is the name of the table that holds the rows.
func (l layout) local(name string) string {
	if l.cluster == "" {
		return name
	}
	return name + "_local"
}

// ref names a table in DDL: qualified in a cluster, where the statement
// runs on other servers too.
func (l layout) ref(name string) string {
	if l.cluster == "" {
		return name
	}
	return "`" + l.db + "`.`" + name + "`"
}

func (l layout) onCluster() string {
	if l.cluster == "" {
		return ""
	}
	return " ON CLUSTER `" + l.cluster + "`"
}

// createDatabase is run through a connection to the default database.
func (l layout) createDatabase() string {
	return "CREATE DATABASE IF NOT EXISTS `" + l.db + "`" + l.onCluster()
}

// createTable renders a table's statements: one, or in a cluster the
// replicated table and the Distributed table in front of it.
func (l layout) createTable(t tableDef) ([]string, error) {
	cols, err := l.features.render(t.columns)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", t.name, err)
	}
	tail, err := l.features.render(t.tail)
	if err != nil {
		return nil, fmt.Errorf("table %s: %w", t.name, err)
	}
	engine := t.engine + "(" + t.version + ")"
	if l.cluster != "" {
		args := []string{fmt.Sprintf("'/clickhouse/tables/{shard}/%s/%s'", l.db, l.local(t.name)), "'{replica}'"}
		if t.version != "" {
			args = append(args, t.version)
		}
		engine = "Replicated" + t.engine + "(" + strings.Join(args, ", ") + ")"
	}
	out := []string{fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s (\n\t\t\t%s\n\t\t) ENGINE = %s\n\t\t%s",
		l.ref(l.local(t.name)), l.onCluster(), cols, engine, tail)}
	if l.cluster != "" {
		out = append(out, fmt.Sprintf("CREATE TABLE IF NOT EXISTS %s%s AS %s ENGINE = Distributed('%s', '%s', '%s', rand())",
			l.ref(t.name), l.onCluster(), l.ref(l.local(t.name)), l.cluster, l.db, l.local(t.name)))
	}
	return out, nil
}

// createView renders a materialized view; in a cluster it reads and
// writes the replicas' own tables.
func (l layout) createView(v viewDef) string {
	return fmt.Sprintf("CREATE MATERIALIZED VIEW IF NOT EXISTS %s%s TO %s AS\n\t\tSELECT\n\t\t\t%s\n\t\tFROM %s\n\t\tGROUP BY %s",
		l.ref(v.name), l.onCluster(), l.ref(l.local(v.to)), v.selects, l.ref(l.local(v.from)), v.groupBy)
}

// statements renders a migration for the layout.
func (l layout) statements(m migration) ([]string, error) {
	var out []string
	for _, t := range m.tables {
		s, err := l.createTable(t)
		if err != nil {
			return nil, err
		}
		out = append(out, s...)
	}
	for _, v := range m.views {
		out = append(out, l.createView(v))
	}
	return out, nil
}

// render expands a column list or table tail for the server's features.
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

package store_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/records"
	"github.com/forewarm/forewarm/store/storetest"
	"github.com/forewarm/forewarm/trace"
)

// BenchmarkIngestActivity loads a dense 1,000 apps × 1,000 bins trace (1M
// activity rows) per iteration, end to end: claim, batches, commit.
func BenchmarkIngestActivity(b *testing.B) {
	s := storetest.New(b)
	ctx := context.Background()
	var rows int64
	b.ResetTimer()
	for i := range b.N {
		b.StopTimer()
		tr := denseTrace(1000, 1000, time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).AddDate(0, 0, i))
		b.StartTimer()
		res, err := s.LoadTrace(ctx, tr, store.LoadOptions{})
		if err != nil || res.Duplicate {
			b.Fatal(err, res.Duplicate)
		}
		rows += res.Rows
	}
	b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkRecordRequests inserts live requests (the materialized view
// updating activity included) in batches of 100,000.
func BenchmarkRecordRequests(b *testing.B) {
	s := storetest.New(b)
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	reqs := make([]store.Request, 100_000)
	for i := range reqs {
		reqs[i] = store.Request{Time: base.Add(time.Duration(i) * time.Millisecond * 30), RequestID: uuid.NewString(),
			App: "app-" + string(rune('a'+i%26)), VolumeType: "ssd", SizeMB: 128, ReadRatio: 0.7, Host: "h1", Outcome: records.OutcomeWarm}
	}
	b.ResetTimer()
	for range b.N {
		if err := s.RecordRequests(ctx, reqs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*len(reqs))/b.Elapsed().Seconds(), "rows/s")
}

// BenchmarkLoadAzureSample parses and loads the shared Azure sample (each
// iteration at another start, so it is new content).
func BenchmarkLoadAzureSample(b *testing.B) {
	s := storetest.New(b)
	dir := sampleDir(b)
	ctx := context.Background()
	for i := range b.N {
		ropt := trace.ReadOptions{MemoryPath: filepath.Join(dir, "1350_mem.csv"), DurationsPath: filepath.Join(dir, "1350_run.csv"),
			Start: trace.AzureStart.AddDate(0, 0, i)}
		res, err := s.LoadFile(ctx, trace.FormatAzure2019, filepath.Join(dir, "1350_inv.csv"), ropt, store.LoadOptions{})
		if err != nil || res.Duplicate || res.Requests != 927272 {
			b.Fatal(err, res)
		}
	}
}

// BenchmarkRecentActivity10kApps reads the last 64 one-minute bins of
// 10,000 apps (a history of 128 dense bins each) in one query.
func BenchmarkRecentActivity10kApps(b *testing.B) {
	s := storetest.New(b)
	ctx := context.Background()
	tr := denseTrace(10_000, 128, time.Date(2025, 3, 1, 0, 0, 0, 0, time.UTC))
	if _, err := s.LoadTrace(ctx, tr, store.LoadOptions{}); err != nil {
		b.Fatal(err)
	}
	ids := make([]string, len(tr.Apps))
	for i, a := range tr.Apps {
		ids[i] = a.ID
	}
	for _, bc := range []struct {
		name string
		ids  []string
	}{{"all", nil}, {"listed", ids}} {
		b.Run(bc.name, func(b *testing.B) {
			for range b.N {
				act, err := s.RecentActivity(ctx, bc.ids, tr.End(), 64, time.Minute)
				if err != nil || len(act) != 10_000 {
					b.Fatal(err, len(act))
				}
			}
		})
	}
}

// BenchmarkDayFootprint writes one day of a real fleet's history through
// the store's own methods and reports what it takes in ClickHouse once
// merged, scaled to 10,000 applications: the Azure Functions 2019 sample
// (1,350 apps, their real IDs and per-minute request counts) as live
// requests (the activity follows through the materialized view), one
// prediction per app per 1-minute bin (what a loop records), and the
// preparation events of the policy at the keep-alive budget on that trace
// (about 19 preparations per app-hour, three events each: docs/results.md),
// plus 10 hosts reporting every 5 s. Figures per table: rows and
// compressed bytes per 10,000 apps per day (host_metrics: per 10 hosts).
//
//	go test ./store -run '^$' -bench DayFootprint -benchtime 1x
func BenchmarkDayFootprint(b *testing.B) {
	s := storetest.New(b)
	ctx := context.Background()
	dir := sampleDir(b)
	tr, err := trace.Read(trace.FormatAzure2019, filepath.Join(dir, "1350_inv.csv"),
		trace.ReadOptions{MemoryPath: filepath.Join(dir, "1350_mem.csv"), DurationsPath: filepath.Join(dir, "1350_run.csv")})
	if err != nil {
		b.Fatal(err)
	}
	day := time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -1) // inside every retention window
	rng := rand.New(rand.NewPCG(1, 2))
	hosts := []string{"host-a", "host-b", "host-c"}
	const prepsPerAppHour = 19.3
	b.ResetTimer()
	for range b.N {
		var reqs []store.Request
		var preds []store.Prediction
		var events []store.PreparationEvent
		flush := func(force bool) {
			if len(reqs) >= 100_000 || force && len(reqs) > 0 {
				if err := s.RecordRequests(ctx, reqs); err != nil {
					b.Fatal(err)
				}
				reqs = reqs[:0]
			}
			if len(preds) >= 100_000 || force && len(preds) > 0 {
				if err := s.RecordPredictions(ctx, preds); err != nil {
					b.Fatal(err)
				}
				preds = preds[:0]
			}
			if len(events) >= 100_000 || force && len(events) > 0 {
				if err := s.RecordPreparationEvents(ctx, events); err != nil {
					b.Fatal(err)
				}
				events = events[:0]
			}
		}
		for _, a := range tr.Apps {
			mem := max(a.MemoryMB, 128)
			for bin := range 1440 {
				at := day.Add(time.Duration(bin) * time.Minute)
				p := rng.Float64()
				decision := "hold"
				if p >= 0.3 {
					decision = "prepare"
				}
				preds = append(preds, store.Prediction{Time: at.Add(time.Duration(rng.IntN(900)) * time.Millisecond), App: a.ID, Bin: at,
					Probability: p, Threshold: 0.3, ModelVersion: "demand-20190714T235900Z", Decision: decision})
				for range a.Counts[bin%len(a.Counts)] {
					host := hosts[rng.IntN(len(hosts))]
					warm := rng.Float64() < 0.9
					setup := 0.0
					if !warm {
						setup = mem * 0.3
					}
					reqs = append(reqs, store.Request{Time: at.Add(time.Duration(rng.Int64N(int64(time.Minute)))), RequestID: uuid.NewString(),
						App: a.ID, VolumeType: "ssd", SizeMB: mem, ReadRatio: 0.5, Host: host, Warm: warm, ExpectedScore: rng.Float64(),
						SetupMS: setup, WorkMS: a.DurationMS, LatencyMS: setup + a.DurationMS + rng.Float64()*5, Outcome: records.OutcomeWarm})
				}
				if rng.Float64() < prepsPerAppHour/60 {
					host := hosts[rng.IntN(len(hosts))]
					id := fmt.Sprintf("%s.%d.%s", a.ID, at.Unix(), host)
					score := rng.Float64()
					events = append(events,
						store.PreparationEvent{Time: at.Add(20 * time.Millisecond), PreparationID: id, App: a.ID, Host: host, Event: records.EventReserved,
							MemoryMB: mem, DiskMB: mem / 4, CPUMilli: 250, Reason: fmt.Sprintf("score %.3f (model %.3f, adjustment %+.3f)", score, score, 0.0)},
						store.PreparationEvent{Time: at.Add(60 * time.Millisecond), PreparationID: id, App: a.ID, Host: host, Event: records.EventValidated,
							MemoryMB: mem, DiskMB: mem / 4, CPUMilli: 250, ShadowMS: 5 + rng.Float64()*20},
						store.PreparationEvent{Time: at.Add(5 * time.Minute), PreparationID: id, App: a.ID, Host: host, Event: records.EventReleased,
							MemoryMB: mem, DiskMB: mem / 4, CPUMilli: 250, HeldSeconds: 300 * rng.Float64()})
				}
			}
			flush(false)
		}
		flush(true)
		var ms []store.HostMetrics
		for h := range 10 {
			for i := range 17280 {
				ms = append(ms, store.HostMetrics{Time: day.Add(time.Duration(i) * 5 * time.Second), HostID: fmt.Sprintf("host-%02d", h),
					CPUUtil: rng.Float64(), MemUsedMB: 20000 + rng.Float64()*4000, MemAvailMB: 8000, MemPressure: rng.Float64() / 10,
					IOLatencyMS: rng.Float64(), ReservedMemMB: rng.Float64() * 8000, ReservedDiskMB: rng.Float64() * 2000,
					ReservedCPUMilli: rng.Int64N(4000), Leases: rng.IntN(50)})
			}
		}
		if err := s.RecordHostMetrics(ctx, ms); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	scale := 10000.0 / float64(len(tr.Apps)) / float64(b.N)
	var totalRows, totalBytes float64
	for _, table := range []string{"predictions", "preparation_events", "requests", "activity", "host_metrics"} {
		if err := s.Conn().Exec(ctx, "OPTIMIZE TABLE "+table+" FINAL"); err != nil {
			b.Fatal(err)
		}
		var rows, bytes, raw uint64
		if err := s.Conn().QueryRow(ctx, `SELECT sum(rows), sum(data_compressed_bytes), sum(data_uncompressed_bytes) FROM system.parts
			WHERE active AND database = ? AND table = ?`, s.Database(), table).Scan(&rows, &bytes, &raw); err != nil {
			b.Fatal(err)
		}
		f := scale
		if table == "host_metrics" {
			f = 1 / float64(b.N) // per 10 hosts, whatever the fleet
		}
		b.ReportMetric(float64(rows)*f, table+"-rows")
		b.ReportMetric(float64(bytes)*f/1e6, table+"-MB")
		per := "per 10,000 apps per day"
		if table == "host_metrics" {
			per = "per 10 hosts per day"
		}
		b.Logf("%-18s %12.0f rows %9.1f MB compressed (%5.1f B/row, %4.1f× compression) %s",
			table, float64(rows)*f, float64(bytes)*f/1e6, float64(bytes)/float64(max(rows, 1)), float64(raw)/float64(max(bytes, 1)), per)
		if table != "host_metrics" {
			totalRows += float64(rows) * f
			totalBytes += float64(bytes) * f
		}
	}
	b.Logf("per 10,000 apps per day: %.1f M rows, %.0f MB compressed (server %s)", totalRows/1e6, totalBytes/1e6, s.Server().Version)
}

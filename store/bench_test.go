package store_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/forewarm/forewarm/store"
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
		reqs[i] = store.Request{Time: base.Add(time.Duration(i) * time.Millisecond * 30), RequestID: uuid.New(),
			App: "app-" + string(rune('a'+i%26)), VolumeType: "ssd", SizeMB: 128, ReadRatio: 0.7, Host: "h1", Outcome: "ok"}
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

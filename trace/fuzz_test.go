package trace

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The trace readers take files from users: whatever bytes they hold, a
// reader returns either a trace that passes Validate or an *InputError
// naming the file, never a panic. Seed corpora are in testdata/fuzz/.
//
//	go test ./trace -run '^$' -fuzz FuzzReadAzure2019 -fuzztime 30s
//	go test ./trace -run '^$' -fuzz FuzzReadEvents -fuzztime 30s

func FuzzReadAzure2019(f *testing.F) {
	f.Add("HashOwner,HashApp,HashFunction,Trigger,1,2,3\no1,a1,f1,http,0,2,1\no2,a2,f3,queue,5,0,7\n",
		"HashOwner,HashApp,SampleCount,AverageAllocatedMb\no1,a1,10,128\n")
	f.Add("HashFunction,HashOwner,HashApp,minute_1,minute_2\nf1,o1,a1,0,2\nf1,o1,a1,3.0,1\n", "")
	f.Fuzz(func(t *testing.T, inv, mem string) {
		dir := t.TempDir()
		invPath := fuzzFile(t, dir, "inv.csv", inv)
		opt := AzureOptions{}
		if mem != "" {
			opt.MemoryPath = fuzzFile(t, dir, "mem.csv", mem)
		}
		tr, err := ReadAzure2019(invPath, opt)
		checkRead(t, tr, err, invPath, opt.MemoryPath)
	})
}

func FuzzReadEvents(f *testing.F) {
	f.Add("timestamp,app_id,memory_mb,read_ratio,duration_ms\n2019-07-15T00:00:10Z,a,128,0.5,20\n1563148870.5,b,,,\n")
	f.Add("\ufefftimestamp,app_id\r\n2019-07-15T00:00:10Z,a\r\n")
	f.Fuzz(func(t *testing.T, data string) {
		path := fuzzFile(t, t.TempDir(), "events.csv", data)
		// Year-wide bins keep any span of valid timestamps small in memory.
		tr, err := ReadEvents(path, EventsOptions{Bin: 365 * 24 * time.Hour})
		checkRead(t, tr, err, path, "")
	})
}

func fuzzFile(t *testing.T, dir, name, content string) string {
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func checkRead(t *testing.T, tr *Trace, err error, paths ...string) {
	t.Helper()
	if err != nil {
		var ie *InputError
		if !errors.As(err, &ie) || ie.Msg == "" {
			t.Fatalf("error %T %v is not an *InputError with a message", err, err)
		}
		for _, p := range paths {
			if p != "" && ie.File == p {
				return
			}
		}
		t.Fatalf("error names file %q, not one of %v", ie.File, paths)
	}
	if tr == nil || tr.Bins < 1 || len(tr.Apps) == 0 {
		t.Fatalf("no error and an empty trace: %+v", tr)
	}
	if err := tr.Validate(); err != nil {
		t.Fatalf("a trace read without error fails Validate: %v", err)
	}
}

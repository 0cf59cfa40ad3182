package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	historypb "go.temporal.io/api/history/v1"
	"google.golang.org/protobuf/encoding/protojson"
)

// recordHistories writes the histories of finished workflows as JSON (the
// format of `temporal workflow show --output json`) for the replay tests in
// workflows/testdata ("id@run" names one run of a chain). Run the end-to-end test with
// FOREWARM_RECORD_HISTORIES=$PWD/workflows/testdata to refresh them.
func (k *stack) recordHistories(dir string, files map[string]string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(k.t, os.MkdirAll(dir, 0o755))
	for name, id := range files {
		id, run, _ := strings.Cut(id, "@") // id@run names one run
		it := k.c.GetWorkflowHistory(ctx, id, run, false, enumspb.HISTORY_EVENT_FILTER_TYPE_ALL_EVENT)
		var h historypb.History
		for it.HasNext() {
			ev, err := it.Next()
			require.NoError(k.t, err, "history of %s", id)
			h.Events = append(h.Events, ev)
		}
		b, err := protojson.MarshalOptions{Indent: "  "}.Marshal(&h)
		require.NoError(k.t, err)
		require.NoError(k.t, os.WriteFile(filepath.Join(dir, name), b, 0o644))
		k.t.Logf("recorded %d events of %s in %s", len(h.Events), id, name)
	}
}

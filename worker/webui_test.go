package main

import (
	"context"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/forewarm/forewarm/internal/browser"
	"github.com/forewarm/forewarm/internal/config"
	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/workflows"
)

// An operator's view in a real browser: after a short run, the Web UI's
// workflow list filtered by our application search attribute shows the
// loop; the loop's page answers its state query and, on its "User
// Metadata" tab, shows its current details with the one-paragraph summary.
// The screenshots are kept under artifacts/webui/ (or $FOREWARM_ARTIFACTS).
func TestWebUIShowsLoopAndDetails(t *testing.T) {
	if _, err := browser.Path(); err != nil {
		testenv.Missing(t, "Chromium", err)
	}
	ui := config.Env("TEMPORAL_UI_ADDRESS", "127.0.0.1:8233")
	if err := testenv.Dialable(ui); err != nil {
		testenv.Missing(t, "the Temporal Web UI at "+ui, err)
	}
	k := newStack(t)
	k.startAgent("ui-host", 256, 1, 0)
	app := k.prefix + "-ui-app"
	k.loadHistory([]string{app}, []int{4}, 120)
	k.startWorker()
	pol := workflows.DefaultPolicy()
	pol.Threshold = 0.42
	k.startLoop(app, pol)
	k.waitFor("the loop to tick", 60*time.Second, func() bool { return k.status(app).Stats.Wakes >= 2 })

	dir := config.Env("FOREWARM_ARTIFACTS", filepath.Join("..", "artifacts"))
	dir = filepath.Join(dir, "webui")
	require.NoError(t, os.MkdirAll(dir, 0o755))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	b, err := browser.Start(ctx, 1400, 1000)
	require.NoError(t, err)
	defer b.Close()

	id := workflows.LoopWorkflowID(app)
	query := workflows.AttrApp.GetName() + `="` + app + `"`
	// Visibility is eventually consistent: the page polls until the row shows.
	_, err = b.WaitForText("http://"+ui+"/namespaces/default/workflows?query="+url.QueryEscape(query), 60*time.Second, id)
	require.NoError(t, err)
	require.NoError(t, b.Screenshot(filepath.Join(dir, "loops-filtered.png")))

	// The loop's page shows its current state: the Queries tab runs the
	// loop's "state" query, as an operator would, and shows the threshold
	// the loop holds now (the editor renders only the lines in view).
	runID := k.c.GetWorkflow(ctx, id, "").GetRunID()
	// Its input (the loop's state as it started) is in the one JSON style:
	// snake_case keys, the bin as "1s", not "Bin": 1000000000.
	hist, err := b.WaitForText("http://"+ui+"/namespaces/default/workflows/"+url.PathEscape(id)+"/"+runID+"/history", 60*time.Second,
		"Queries", `"bin": "1s"`, `"threshold": 0.42`)
	require.NoError(t, err)
	require.NotContains(t, hist, `"Bin"`)
	require.NoError(t, b.Screenshot(filepath.Join(dir, "loop-input.png")))
	require.NoError(t, b.Click("Queries"))
	_, err = b.WaitForText("", 30*time.Second, "Run Query")
	require.NoError(t, err)
	require.NoError(t, b.Click("Run Query"))
	if _, err = b.WaitForText("", 30*time.Second, `"state": "running"`, `"threshold": 0.42`); err != nil {
		_ = b.Screenshot(filepath.Join(dir, "loop-details-failed.png"))
	}
	require.NoError(t, err)
	require.NoError(t, b.Screenshot(filepath.Join(dir, "loop-details.png")))

	// The loop's Current Details are on the "User Metadata" tab: the UI
	// asks the running loop for them (the workflow metadata query) when
	// the tab opens. Their first paragraph is the loop's summary.
	require.NoError(t, b.Click("User Metadata"))
	if _, err = b.WaitForText("", 30*time.Second, "Current Details", app+" is running: last P =", "(threshold 0.42 for a", "lease(s) live", "next wake"); err != nil {
		_ = b.Screenshot(filepath.Join(dir, "loop-current-details-failed.png"))
	}
	require.NoError(t, err)
	require.NoError(t, b.Screenshot(filepath.Join(dir, "loop-current-details.png")))
	t.Logf("screenshots in %s", dir)
	k.stopLoop(app)
}

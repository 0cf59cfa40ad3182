package main

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/forewarm/forewarm/internal/testenv"
	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/storetest"
	"github.com/forewarm/forewarm/trace"
)

// small keeps test training to a second or two.
var smallTrain = []string{"--format", "synth", "--apps", "12", "--days", "1", "--samples", "1200", "--epochs", "2",
	"--hidden", "8", "--seq-len", "24"}

func TestModelTrainBadFlags(t *testing.T) {
	cases := map[string][]string{
		"unknown status":       append([]string{"model", "train", "--status", "gold", "--no-publish"}, smallTrain...),
		"train-until outside":  append([]string{"model", "train", "--train-until", "2030-01-01T00:00:00Z", "--no-publish", "--no-ort"}, smallTrain...),
		"from without store":   append([]string{"model", "train", "--from", "2024-01-01T00:00:00Z", "--no-publish"}, smallTrain...),
		"store and file":       {"model", "train", "--from-store", "--format", "azure2019", "--file", "x.csv"},
		"no format":            {"model", "train", "--no-publish", "--no-ort"},
		"bad time":             append([]string{"model", "train", "--train-until", "yesterday", "--no-publish"}, smallTrain...),
		"negative hidden":      {"model", "train", "--hidden", "-1", "--format", "synth", "--no-publish"},
		"list of unknown kind": {"model", "list", "--kind", "weather"},
	}
	for name, args := range cases {
		out, err := runStarter(t, args...)
		if exitCode(err) != 2 {
			t.Errorf("%s: exit %d (%v), want 2; output %q", name, exitCode(err), err, out)
		}
	}
}

func TestModelTrainPublishesAndLists(t *testing.T) {
	testenv.ORTLib(t)
	db := storetest.Config(t).Database
	train := func(extra ...string) modelTrainOutput {
		t.Helper()
		args := append([]string{"model", "train", "--clickhouse-database", db, "--json"}, smallTrain...)
		out, err := runStarter(t, append(args, extra...)...)
		if err != nil {
			t.Fatalf("model train: %v\n%s", err, out)
		}
		var o modelTrainOutput
		if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &o); err != nil {
			t.Fatalf("model train --json: %v\n%s", err, out)
		}
		return o
	}
	first := train("--version", "t-first", "--status", "champion")
	t.Logf("first: %d epochs, %d sequences, AUC %.3f (recency %.3f), %s", first.Epochs, first.TrainSeqs, first.Model.AUC, first.Baselines["recency_rate"].AUC, first.Reason)
	if !first.Published || first.Status != store.StatusChampion || first.Runtime != "onnxruntime" {
		t.Fatalf("first model: %+v", first)
	}
	if first.Model.N == 0 || len(first.Baselines) != 3 || first.Model.AUC <= 0.5 {
		t.Errorf("evaluation missing or useless: %+v", first.Model)
	}
	second := train("--version", "t-second", "--status", "candidate")
	if second.Status != store.StatusCandidate {
		t.Errorf("second model status %q", second.Status)
	}

	out, err := runStarter(t, "model", "list", "--clickhouse-database", db, "--json")
	if err != nil {
		t.Fatal(err, out)
	}
	var recs []store.ModelRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil {
		t.Fatalf("model list --json: %v\n%s", err, out)
	}
	status := map[string]string{}
	for _, r := range recs {
		status[r.Version] = r.Status
		if r.Metrics["model.roc_auc"] == 0 || r.Kind != models.KindDemand {
			t.Errorf("%s: kind %q metrics %v", r.Version, r.Kind, r.Metrics)
		}
	}
	if status["t-first"] != store.StatusChampion || status["t-second"] != store.StatusCandidate {
		t.Errorf("statuses %v", status)
	}
	table, err := runStarter(t, "model", "list", "--clickhouse-database", db)
	if err != nil || !strings.Contains(table, "t-first") || !strings.Contains(table, "auc=") {
		t.Errorf("model list table: %v\n%s", err, table)
	}
}

func TestModelTrainAffinity(t *testing.T) {
	db := storetest.Config(t).Database
	run := func(args ...string) affinityTrainOutput {
		t.Helper()
		out, err := runStarter(t, append([]string{"model", "train-affinity", "--clickhouse-database", db, "--json", "--epochs", "8"}, args...)...)
		if err != nil {
			t.Fatalf("train-affinity: %v\n%s", err, out)
		}
		var o affinityTrainOutput
		if err := json.Unmarshal([]byte(out), &o); err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return o
	}
	first := run("--synthetic", "800", "--version", "aff-1")
	if first.Status != store.StatusChampion || first.Metrics["mse"] >= first.Metrics["default.mse"] {
		t.Fatalf("first affinity model: %+v", first)
	}
	second := run("--synthetic", "800", "--version", "aff-2", "--train-seed", "2")
	if second.Champion != "aff-1" || second.ChampionMSE == nil || !second.Published {
		t.Errorf("second model not compared with the champion: %+v", second)
	}
	// Too few stored outcomes: a clear error, nothing published.
	out, err := runStarter(t, "model", "train-affinity", "--clickhouse-database", db)
	if err == nil || !strings.Contains(err.Error(), "0 usable request outcomes, 50 needed") {
		t.Errorf("empty store: %v\n%s", err, out)
	}
	if _, err := runStarter(t, "model", "train-affinity", "--from-store", "--synthetic", "10"); exitCode(err) != 2 {
		t.Errorf("--from-store with --synthetic: %v", err)
	}
}

// Training from stored history reads the activity back from ClickHouse.
func TestModelTrainFromStore(t *testing.T) {
	testenv.ORTLib(t)
	st := storetest.New(t)
	tr := trace.Synth(trace.SynthOptions{Apps: 10, Days: 1, Seed: 3})
	if _, err := st.LoadTrace(context.Background(), tr, store.LoadOptions{Format: "synth", Source: "test"}); err != nil {
		t.Fatal(err)
	}
	out, err := runStarter(t, "model", "train", "--from-store", "--clickhouse-database", st.Database(), "--json", "--no-publish",
		"--samples", "800", "--epochs", "1", "--hidden", "8", "--seq-len", "24")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	var o modelTrainOutput
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &o); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if !strings.HasPrefix(o.Source, "stored history") || o.Model.N == 0 || o.Published {
		t.Errorf("from-store run: %+v", o)
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"

	"github.com/forewarm/forewarm/internal/payload"
	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/workflows"
)

func init() { addCommand(statusCmd) }

func statusCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "status",
		Short: "One-screen overview: services, hosts, loops, champion model, last training run",
		Long: `Status checks that Temporal and ClickHouse answer, lists the host agents seen
in the last minute with what they have reserved, counts the prediction loops
by state, and shows the champion demand model and the last training run.
It exits non-zero when a service does not answer.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			st := collectStatus(cmd.Context(), g)
			if asJSON {
				if err := emitJSON(os.Stdout, st); err != nil {
					return err
				}
			} else {
				st.print()
			}
			if st.Temporal.Error != "" || st.ClickHouse.Error != "" {
				var hints []string
				if st.Temporal.Error != "" {
					hints = append(hints, "Temporal: "+g.Temporal.Hint())
				}
				if st.ClickHouse.Error != "" {
					hints = append(hints, "ClickHouse: "+g.ClickHouse.Hint())
				}
				return fmt.Errorf("a service is not reachable; %s", strings.Join(hints, "; "))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the overview as JSON")
	return cmd
}

type serviceStatus struct {
	Address string `json:"address"`
	OK      bool   `json:"ok"`
	Detail  string `json:"detail,omitempty"`
	Error   string `json:"error,omitempty"`
}

type hostStatus struct {
	store.Host
	Metrics *store.HostMetrics `json:"metrics,omitempty"`
}

type overview struct {
	Temporal     serviceStatus      `json:"temporal"`
	ClickHouse   serviceStatus      `json:"clickhouse"`
	Hosts        []hostStatus       `json:"hosts"`
	Loops        map[string]int     `json:"loops"` // loop state -> running loops
	Champion     *store.ModelRecord `json:"champion,omitempty"`
	LastTraining *store.TrainingRun `json:"last_training,omitempty"`
	Problems     []string           `json:"problems,omitempty"`
}

func collectStatus(ctx context.Context, g *globals) overview {
	ov := overview{
		Temporal:   serviceStatus{Address: g.Temporal.Address},
		ClickHouse: serviceStatus{Address: g.ClickHouse.Addr},
		Loops:      map[string]int{},
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()

	if c, err := g.Temporal.Dial(nil); err != nil {
		ov.Temporal.Error = err.Error()
	} else {
		defer c.Close()
		ov.Temporal.OK = true
		ov.Temporal.Detail = "namespace " + g.Temporal.Namespace
		if err := countLoops(ctx, c, ov.Loops); err != nil {
			ov.Problems = append(ov.Problems, "listing loops: "+err.Error())
		}
	}

	st, err := store.Open(ctx, g.ClickHouse)
	if err != nil {
		ov.ClickHouse.Error = err.Error()
		return ov
	}
	defer st.Close()
	ov.ClickHouse.OK = true
	srv := st.Server()
	ov.ClickHouse.Detail = fmt.Sprintf("database %s, server %d.%d", st.Database(), srv.Major, srv.Minor)
	hosts, err := st.Hosts(ctx, time.Now().Add(-time.Minute))
	if err != nil {
		ov.Problems = append(ov.Problems, "hosts: "+err.Error())
	}
	metrics, err := st.LatestHostMetrics(ctx)
	if err != nil {
		ov.Problems = append(ov.Problems, "host metrics: "+err.Error())
	}
	for _, h := range hosts {
		hs := hostStatus{Host: h}
		if m, ok := metrics[h.ID]; ok {
			hs.Metrics = &m
		}
		ov.Hosts = append(ov.Hosts, hs)
	}
	if m, err := st.Champion(ctx, models.KindDemand); err == nil {
		m.ONNX = nil
		ov.Champion = &m
	} else if !errors.Is(err, store.ErrNoModel) {
		ov.Problems = append(ov.Problems, "champion: "+err.Error())
	}
	if runs, err := st.TrainingRuns(ctx, 1); err != nil {
		ov.Problems = append(ov.Problems, "training runs: "+err.Error())
	} else if len(runs) > 0 {
		ov.LastTraining = &runs[0]
	}
	return ov
}

// countLoops counts running prediction loops by their ForewarmLoopState.
func countLoops(ctx context.Context, c client.Client, into map[string]int) error {
	query := fmt.Sprintf("WorkflowType = '%s' AND ExecutionStatus = 'Running'", workflows.LoopWorkflowName)
	var token []byte
	for {
		resp, err := c.ListWorkflow(ctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token, PageSize: 1000})
		if err != nil {
			return err
		}
		for _, e := range resp.Executions {
			state := "unknown"
			if p, ok := e.GetSearchAttributes().GetIndexedFields()[workflows.AttrLoopState.GetName()]; ok {
				_ = payload.Converter().FromPayload(p, &state)
			}
			into[state]++
		}
		if token = resp.NextPageToken; len(token) == 0 {
			return nil
		}
	}
}

func (ov overview) print() {
	tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
	svc := func(name string, s serviceStatus) {
		if s.OK {
			fmt.Fprintf(tw, "%s\tok\t%s\t%s\n", name, s.Address, s.Detail)
		} else {
			fmt.Fprintf(tw, "%s\tDOWN\t%s\t%s\n", name, s.Address, s.Error)
		}
	}
	svc("temporal", ov.Temporal)
	svc("clickhouse", ov.ClickHouse)
	tw.Flush()

	fmt.Printf("\nhosts seen in the last minute: %d\n", len(ov.Hosts))
	if len(ov.Hosts) > 0 {
		fmt.Fprintln(tw, "  host\tcapacity mem/disk/cpu\treserved mem/disk/cpu\tleases\tcpu util\tio latency\tseen")
		for _, h := range ov.Hosts {
			r := "-\t-\t-\t-"
			if m := h.Metrics; m != nil {
				r = fmt.Sprintf("%.0f MB / %.0f MB / %dm\t%d\t%.0f%%\t%.2f ms", m.ReservedMemMB, m.ReservedDiskMB, m.ReservedCPUMilli, m.Leases, 100*m.CPUUtil, m.IOLatencyMS)
			}
			fmt.Fprintf(tw, "  %s\t%d MB / %d MB / %dm\t%s\t%s ago\n", h.ID, h.MemoryMB, h.DiskMB, h.CPUMilli, r, time.Since(h.LastSeen).Round(time.Second))
		}
		tw.Flush()
	}

	total := 0
	for _, n := range ov.Loops {
		total += n
	}
	fmt.Printf("\nprediction loops running: %d", total)
	for _, s := range []string{workflows.LoopStateRunning, workflows.LoopStatePaused, workflows.LoopStateDryRun, "unknown"} {
		if n := ov.Loops[s]; n > 0 {
			fmt.Printf("  %s %d", s, n)
		}
	}
	fmt.Println()

	if m := ov.Champion; m != nil {
		fmt.Printf("\nchampion demand model: %s, published %s", m.Version, m.Created.Format(time.RFC3339))
		if auc, ok := m.Metrics["roc_auc"]; ok {
			fmt.Printf(", ROC AUC %.4f", auc)
		}
		fmt.Println()
	} else if ov.ClickHouse.OK {
		fmt.Println("\nno champion model yet: `starter train --wait` trains one")
	}
	if r := ov.LastTraining; r != nil {
		fmt.Printf("last training run: %s %s (%s, %s)", r.Time.Format(time.RFC3339), r.Status, r.Kind, r.Duration.Round(time.Second))
		if r.Message != "" {
			fmt.Printf(": %s", r.Message)
		}
		fmt.Println()
	}
	for _, p := range ov.Problems {
		fmt.Println("problem:", p)
	}
}

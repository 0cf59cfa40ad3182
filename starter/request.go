package main

import (
	"fmt"
	"math"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/forewarm/forewarm/workflows"
)

func init() { addCommand(newRequestCmd) }

func newRequestCmd(g *globals) *cobra.Command {
	var (
		in        workflows.RequestInput
		taskQueue string
		asJSON    bool
		timeout   time.Duration
	)
	cmd := &cobra.Command{
		Use:   "request --app A [size flags] [--json]",
		Short: "Send one resource request through the serve-request workflow and wait for its outcome",
		Long: `Start the serve-request workflow (ID request/<app>/<request ID>): it claims a
lease from the application's loop (warm) or goes cold, serves on the host,
records the outcome in ClickHouse, tells the loop, and adjusts the
application-host affinity when the host did better or worse than expected.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if in.App == "" || strings.ContainsAny(in.App, "/ ") {
				return usageErr("--app %q: required, without '/' or spaces", in.App)
			}
			for _, f := range []struct {
				name string
				v    float64
				max  float64
			}{{"--memory-mb", in.MemoryMB, 1 << 20}, {"--disk-mb", in.DiskMB, 1 << 24}, {"--work-ms", in.WorkMS, 3_600_000}, {"--read-ratio", in.ReadRatio, 1}} {
				if math.IsNaN(f.v) || f.v < 0 || f.v > f.max {
					return usageErr("%s %v: must be in [0, %g]", f.name, f.v, f.max)
				}
			}
			if in.RequestID == "" {
				in.RequestID = uuid.NewString()
			}
			c, err := g.Temporal.Dial(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			run, err := c.ExecuteWorkflow(ctx, client.StartWorkflowOptions{
				ID:                    workflows.RequestWorkflowID(in.App, in.RequestID),
				TaskQueue:             taskQueue,
				WorkflowRunTimeout:    timeout,
				TypedSearchAttributes: temporal.NewSearchAttributes(workflows.AttrApp.ValueSet(in.App)),
				StaticSummary:         fmt.Sprintf("request of %s: %.0f MB, %.0f ms of work", in.App, in.MemoryMB, in.WorkMS),
			}, workflows.RequestWorkflowName, in)
			if err != nil {
				return fmt.Errorf("start request %s: %w", in.RequestID, err)
			}
			var res workflows.RequestResult
			if err := run.Get(ctx, &res); err != nil {
				return fmt.Errorf("request %s (workflow %s): %w", in.RequestID, run.GetID(), err)
			}
			if asJSON {
				return emitJSON(cmd.OutOrStdout(), struct {
					WorkflowID string `json:"workflow_id"`
					workflows.RequestResult
				}{run.GetID(), res})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: %s on %s in %.1f ms (setup %.1f, work %.1f); expected %.2f, actual %.2f",
				run.GetID(), res.Outcome, res.Host, res.LatencyMS, res.SetupMS, res.WorkMS, res.Expected, res.Actual)
			if res.Adjusted {
				fmt.Fprintf(cmd.OutOrStdout(), "; adjustment now %+.3f", res.NewAdjustment)
			}
			fmt.Fprintln(cmd.OutOrStdout())
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&in.App, "app", "", "application ID (required)")
	fs.StringVar(&in.RequestID, "request-id", "", "request ID (default: a new UUID); the same ID is the same request")
	fs.Float64Var(&in.MemoryMB, "memory-mb", 128, "memory the request needs, MB")
	fs.Float64Var(&in.DiskMB, "disk-mb", 32, "storage the request needs, MB")
	fs.Float64Var(&in.ReadRatio, "read-ratio", 0.7, "share of reads in its I/O, 0..1")
	fs.Float64Var(&in.WorkMS, "work-ms", 50, "CPU work at reference speed, ms")
	fs.StringVar(&in.VolumeType, "volume-type", "ssd", "volume type")
	fs.Float64Var(&in.Tolerance, "tolerance", 0, "gap between actual and expected affinity that moves the adjustment (0: 0.15)")
	fs.StringVar(&taskQueue, "task-queue", workflows.PredictionTaskQueue, "prediction task queue")
	fs.DurationVar(&timeout, "timeout", 5*time.Minute, "give up waiting after this long")
	fs.BoolVar(&asJSON, "json", false, "print the outcome as JSON")
	return cmd
}

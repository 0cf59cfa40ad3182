package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/forewarm/forewarm/models/lifecycle/rule"
	"github.com/forewarm/forewarm/workflows"
	"github.com/forewarm/forewarm/workflows/wfclient"
)

func init() { addCommand(newTrainCmd) }

// startTraining starts the training workflow (`starter train --wait`).
func startTraining(ctx context.Context, g *globals, taskQueue string, in workflows.TrainingInput, wait bool) (string, *workflows.TrainingResult, error) {
	c, err := g.Temporal.Dial(nil)
	if err != nil {
		return "", nil, err
	}
	defer c.Close()
	return wfclient.StartTraining(ctx, c, taskQueue, in, wait)
}

func newTrainCmd(g *globals) *cobra.Command {
	var (
		in        workflows.TrainingInput
		from, to  string
		taskQueue string
		wait      bool
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "train [--wait] [--span DUR | --from T --to T] [--bin DUR]",
		Short: "Train the models now through the training workflow (publishes only a better model)",
		Long: `Start the training workflow on the training task queue: extract the data
set from ClickHouse, train the demand model (and the affinity model when
enough request outcomes exist), evaluate against the champion and the
baselines on a held-out range, publish only if better. --wait prints the
decision and why.

Without --from and --to it reads the last --span of stored history (ending
with the last stored bin), so a store holding traces of different dates
trains on the most recent one.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var err error
			if in.From, err = parseTimeFlag("--from", from); err != nil {
				return err
			}
			if in.To, err = parseTimeFlag("--to", to); err != nil {
				return err
			}
			if in.From.IsZero() != in.To.IsZero() || (!in.From.IsZero() && !in.To.After(in.From)) {
				return usageErr("--from and --to go together, with --from before --to (or give neither: the last --span of stored history)")
			}
			// --span has a default, so only a --span given goes against a
			// range; with a range the span is not used.
			switch spanGiven := cmd.Flags().Changed("span"); {
			case spanGiven && !in.From.IsZero():
				return usageErr("--span %v: only without --from and --to", in.Span)
			case !in.From.IsZero():
				in.Span = 0
			case in.Span <= 0:
				return usageErr("--span %v: must be a positive duration", in.Span)
			}
			if in.Bin <= 0 || in.Bin%time.Second != 0 {
				return usageErr("--bin %v: must be a positive whole number of seconds", in.Bin)
			}
			if in.Epochs < 0 {
				return usageErr("--epochs %d: must not be negative", in.Epochs)
			}
			id, res, err := startTraining(cmd.Context(), g, taskQueue, in, wait)
			if err != nil {
				return err
			}
			if res == nil {
				fmt.Fprintf(cmd.OutOrStdout(), "training %s started; follow it in the Web UI or with `temporal workflow show --workflow-id %s`\n", id, id)
				return nil
			}
			if asJSON {
				return emitJSON(cmd.OutOrStdout(), struct {
					WorkflowID string `json:"workflow_id"`
					*workflows.TrainingResult
				}{id, res})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "training %s on %d apps × %d bins, %v .. %v: %s (--span, or --from and --to, to change)\n", id, res.Dataset.Apps, res.Dataset.Bins,
				res.Dataset.From.Format(time.RFC3339), res.Dataset.To.Format(time.RFC3339), res.Dataset.Chosen)
			fmt.Fprintf(cmd.OutOrStdout(), "demand:   %s\n", res.Demand.Reason)
			fmt.Fprintf(cmd.OutOrStdout(), "affinity: %s\n", res.Affinity.Reason)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringVar(&from, "from", "", "start of the training range, RFC 3339 (default: the last --span of stored history)")
	fs.DurationVar(&in.Span, "span", rule.DefaultSpan, "without --from and --to: how much of the most recent stored history to train on")
	fs.StringVar(&to, "to", "", "end of the training range, RFC 3339")
	fs.DurationVar(&in.Bin, "bin", time.Minute, "bin width of the training data")
	fs.IntVar(&in.Epochs, "epochs", 0, "maximum epochs (0: the trainer's default)")
	fs.Int64Var(&in.Seed, "seed", 1, "training seed")
	fs.StringVar(&taskQueue, "task-queue", workflows.TrainingTaskQueue, "training task queue")
	fs.BoolVar(&wait, "wait", false, "wait for the result and print the decision")
	fs.BoolVar(&asJSON, "json", false, "with --wait, print the result as JSON")
	return cmd
}

func parseTimeFlag(flag, v string) (time.Time, error) {
	if v == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		return t, usageErr("%s %q: not an RFC 3339 time (e.g. 2019-07-15T00:00:00Z)", flag, v)
	}
	return t.UTC(), nil
}

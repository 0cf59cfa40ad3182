package main

import (
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/api/enums/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/forewarm/forewarm/workflows"
)

func init() { addCommand(newScheduleCmd) }

func newScheduleCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "schedule",
		Short: "Temporal Schedules: periodic training",
	}
	cmd.AddCommand(newScheduleTrainingCmd(g))
	return cmd
}

func newScheduleTrainingCmd(g *globals) *cobra.Command {
	var (
		every     time.Duration
		in        workflows.TrainingInput
		taskQueue string
		remove    bool
		id        string
		trigger   bool
		asJSON    bool
	)
	cmd := &cobra.Command{
		Use:   "training --every DUR",
		Short: "Create or update the periodic training schedule (ID forewarm-training, overlap: skip)",
		Long: `Run the training workflow every DUR through a Temporal Schedule with the
fixed ID forewarm-training. A run still going when the next is due makes
the next one skip (no overlap). Running it again updates the interval.
--delete removes the schedule; --trigger also starts one run now.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !remove && every < time.Minute {
				return usageErr("--every %v: give an interval of at least 1m (e.g. --every 6h)", every)
			}
			if in.Bin <= 0 || in.Bin%time.Second != 0 {
				return usageErr("--bin %v: must be a positive whole number of seconds", in.Bin)
			}
			c, err := g.Temporal.Dial(nil)
			if err != nil {
				return err
			}
			defer c.Close()
			ctx := cmd.Context()
			h := c.ScheduleClient().GetHandle(ctx, id)
			if remove {
				if err := h.Delete(ctx); err != nil {
					return fmt.Errorf("delete schedule %s: %w", id, err)
				}
				fmt.Fprintf(cmd.OutOrStdout(), "schedule %s deleted\n", id)
				return nil
			}
			action := &client.ScheduleWorkflowAction{
				ID:            workflows.ScheduledTrainingWorkflowID,
				Workflow:      workflows.TrainingWorkflowName,
				Args:          []any{in},
				TaskQueue:     taskQueue,
				StaticSummary: "scheduled training: demand and affinity models",
			}
			spec := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: every}}}
			status := "created"
			_, err = c.ScheduleClient().Create(ctx, client.ScheduleOptions{
				ID:                 id,
				Spec:               spec,
				Action:             action,
				Overlap:            enums.SCHEDULE_OVERLAP_POLICY_SKIP,
				CatchupWindow:      every,
				TriggerImmediately: trigger,
				Note:               "created by `starter schedule training`",
			})
			if errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
				status = "updated"
				err = h.Update(ctx, client.ScheduleUpdateOptions{DoUpdate: func(u client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
					s := u.Description.Schedule
					s.Spec = &spec
					s.Action = action
					s.Policy.Overlap = enums.SCHEDULE_OVERLAP_POLICY_SKIP
					return &client.ScheduleUpdate{Schedule: &s}, nil
				}})
				if err == nil && trigger {
					err = h.Trigger(ctx, client.ScheduleTriggerOptions{Overlap: enums.SCHEDULE_OVERLAP_POLICY_SKIP})
				}
			}
			if err != nil {
				return fmt.Errorf("schedule %s: %w", id, err)
			}
			if asJSON {
				return emitJSON(cmd.OutOrStdout(), map[string]any{"schedule_id": id, "every": every.String(), "status": status})
			}
			fmt.Fprintf(cmd.OutOrStdout(), "schedule %s %s: training every %v (overlap: skip)\n", id, status, every)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.DurationVar(&every, "every", 0, "interval between training runs (required, ≥ 1m)")
	fs.DurationVar(&in.Bin, "bin", time.Minute, "bin width of the training data")
	fs.IntVar(&in.Epochs, "epochs", 0, "maximum epochs (0: the trainer's default)")
	fs.StringVar(&taskQueue, "task-queue", workflows.TrainingTaskQueue, "training task queue")
	fs.BoolVar(&remove, "delete", false, "delete the schedule")
	fs.BoolVar(&trigger, "trigger", false, "also start one run now")
	fs.BoolVar(&asJSON, "json", false, "print the outcome as JSON")
	fs.StringVar(&id, "schedule-id", workflows.TrainingScheduleID, "schedule ID (tests use their own)")
	_ = fs.MarkHidden("schedule-id")
	return cmd
}

// Command starter is Forewarm's operator CLI: load history, train and list
// models, start and steer prediction loops, replay traces, evaluate policies.
//
// Each command group lives in its own file and registers itself with
// addCommand from an init function, so groups can grow independently.
package main

import (
	"context"
	"errors"
	"fmt"
	"github.com/forewarm/forewarm/internal/buildinfo"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/forewarm/forewarm/internal/config"
)

// globals are the connection settings every command can use.
type globals struct {
	Temporal   config.Temporal
	ClickHouse config.ClickHouse
	ONNX       config.ONNX
	LogLevel   string
}

var commands []func(*globals) *cobra.Command

// addCommand registers a top-level command constructor.
func addCommand(f func(*globals) *cobra.Command) { commands = append(commands, f) }

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "starter",
		Short:         "Operate Forewarm: history, models, prediction loops, replay and evaluation",
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			var lvl slog.Level
			if err := lvl.UnmarshalText([]byte(g.LogLevel)); err != nil {
				return fmt.Errorf("--log-level %q: %w", g.LogLevel, err)
			}
			slog.SetDefault(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl})))
			return nil
		},
	}
	pf := root.PersistentFlags()
	g.Temporal.Flags(pf)
	g.ClickHouse.Flags(pf)
	g.ONNX.Flags(pf)
	pf.StringVar(&g.LogLevel, "log-level", config.Env("FOREWARM_LOG_LEVEL", "warn"), "log level: debug, info, warn, error ($FOREWARM_LOG_LEVEL)")
	for _, f := range commands {
		root.AddCommand(f(g))
	}
	root.Version = buildinfo.Version()
	root.AddCommand(&cobra.Command{Use: "version", Short: "Print the build's version", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			_, err := fmt.Fprintln(cmd.OutOrStdout(), buildinfo.String("starter"))
			return err
		}})
	// A malformed flag value is a usage error (exit 2), like a bad flag.
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error {
		return usageErr("%s: %v (see `%s --help`)", cmd.CommandPath(), err, cmd.CommandPath())
	})
	return root
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	err := newRoot().ExecuteContext(ctx)
	if err == nil {
		return
	}
	fmt.Fprintln(os.Stderr, "starter: "+err.Error())
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	os.Exit(1)
}

// exitError carries a specific exit status (2 for usage errors).
type exitError struct {
	code int
	err  error
}

func (e exitError) Error() string { return e.err.Error() }
func (e exitError) Unwrap() error { return e.err }

// usageErr marks bad flags or arguments: exit status 2.
func usageErr(format string, a ...any) error {
	return exitError{code: 2, err: fmt.Errorf(format, a...)}
}

package main

import (
	"errors"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/forewarm/forewarm/store"
	"github.com/forewarm/forewarm/store/chconn"
)

func init() { addCommand(migrateCmd) }

func migrateCmd(g *globals) *cobra.Command {
	var asJSON, check bool
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Create or upgrade the ClickHouse schema (the one step that changes it)",
		Long: `Migrate creates the database if it is missing and applies the schema
migrations this release knows. It is the only program that changes the
schema: the worker, the host agents and the other starter commands check the
schema version and refuse to start on a mismatch. Run it before starting a
new release (in Kubernetes: the migration Job). Safe to run twice, and from
several places at once.

With --clickhouse-cluster every statement runs ON CLUSTER (every replica and
ZooKeeper must be up), tables are Replicated* behind Distributed tables.

--check changes nothing: it exits 1 when the database is not at this
release's version, with the versions in the message.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, out := cmd.Context(), cmd.OutOrStdout()
			if check {
				st, err := store.Open(ctx, g.ClickHouse)
				if err != nil {
					return err
				}
				st.Close()
				fmt.Fprintf(out, "database %s at %s is at schema version %d\n", g.ClickHouse.Database, g.ClickHouse.Addr, chconn.SchemaVersion)
				return nil
			}
			res, err := store.Migrate(ctx, g.ClickHouse)
			var se *chconn.SchemaError
			if errors.As(err, &se) {
				return err
			}
			if err != nil {
				return fmt.Errorf("migrate: %w", err)
			}
			if asJSON {
				return emitJSON(out, res)
			}
			where := "one server"
			if res.Cluster != "" {
				where = "cluster " + res.Cluster
			}
			if len(res.Applied) == 0 {
				fmt.Fprintf(out, "database %s at %s (%s) is already at schema version %d\n", g.ClickHouse.Database, g.ClickHouse.Addr, where, res.To)
			} else {
				fmt.Fprintf(out, "database %s at %s (%s): schema version %d -> %d (applied %v)\n", g.ClickHouse.Database, g.ClickHouse.Addr, where, res.From, res.To, res.Applied)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print what was applied as JSON")
	cmd.Flags().BoolVar(&check, "check", false, "change nothing; exit 1 unless the schema is at this release's version")
	return cmd
}

package hostreg_test

import (
	"os"
	"regexp"
	"slices"
	"testing"

	"github.com/forewarm/forewarm/store/hostreg"
)

// The agents' documented grants are exactly what hostreg needs: insert
// into its two tables (and their replicated tables) and read the schema
// version. A new table here without its grant would fail on a real
// cluster only.
func TestAgentGrantsMatchWhatItWrites(t *testing.T) {
	b, err := os.ReadFile("../../deploy/clickhouse/grants.sql")
	if err != nil {
		t.Fatal(err)
	}
	re := regexp.MustCompile(`(?m)^GRANT (.+) ON forewarm\.(\S+) TO forewarm_agent;`)
	var got []string
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		got = append(got, m[1]+" "+m[2])
	}
	var want []string
	for _, tb := range []string{hostreg.HostsTable, hostreg.HostMetricsTable} {
		want = append(want, "INSERT "+tb, "INSERT "+tb+"_local")
	}
	want = append(want, "SELECT(version) schema_migrations", "SELECT(version) schema_migrations_local")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("grants to forewarm_agent in deploy/clickhouse/grants.sql:\n%v\nwant:\n%v", got, want)
	}
	if n := len(regexp.MustCompile(`TO forewarm_agent`).FindAllString(string(b), -1)); n != len(want) {
		t.Errorf("%d grants to forewarm_agent, want %d", n, len(want))
	}
}

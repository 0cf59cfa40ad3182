package sim

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"text/tabwriter"
)

// csvHeader names the CSV columns; rates are fractions, waste in MB·s.
var csvHeader = []string{"policy", "family", "param", "apps", "requests", "cold_requests",
	"cold_rate_p75", "cold_rate_overall", "wasted_mb_s", "waste_pct_of_keepalive10",
	"preparations", "shadow_requests", "live_mb_s"}

// WriteCSV writes one row per policy run.
func WriteCSV(w io.Writer, rep *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }
	for _, r := range rep.Rows {
		rec := []string{r.Policy, r.Family, f(r.Param), strconv.Itoa(r.Apps),
			strconv.FormatUint(r.Requests, 10), strconv.FormatUint(r.ColdRequests, 10),
			f(r.ColdP75), f(r.ColdOverall), f(r.WastedMBSec), f(r.WastePct),
			strconv.Itoa(r.Preparations), strconv.Itoa(r.Shadow), f(r.LiveMBSec)}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WritePerAppCSV writes every run's per-application accounting, one row per
// (policy, application), for finding where a policy wins or loses.
func WritePerAppCSV(w io.Writer, rep *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"policy", "app", "memory_mb", "requests", "cold_requests", "live_bins", "wasted_bins", "wasted_mb_s", "preparations"}); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }
	for _, r := range rep.Runs {
		for _, a := range r.Apps {
			if err := cw.Write([]string{r.Policy, a.ID, f(a.MemoryMB), strconv.FormatUint(a.Requests, 10), strconv.FormatUint(a.Cold, 10),
				strconv.Itoa(a.LiveBins), strconv.Itoa(a.WastedBins), f(a.WastedMBSec), strconv.Itoa(a.Preparations)}); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the whole report, indented. NaN waste percentages (no
// reference waste) become null.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonReport(rep))
}

// jsonReport replaces NaNs, which encoding/json refuses.
func jsonReport(rep *Report) any {
	type row struct {
		Summary
		WastePct *float64 `json:"waste_pct_of_keepalive10"`
	}
	conv := func(rs []Summary) []row {
		out := make([]row, len(rs))
		for i, r := range rs {
			out[i].Summary = r
			if !math.IsNaN(r.WastePct) {
				v := r.WastePct
				out[i].WastePct = &v
			}
		}
		return out
	}
	return struct {
		*Report
		Rows []row `json:"rows"`
		Best []row `json:"best_within_keepalive10_waste"`
	}{rep, conv(rep.Rows), conv(rep.Best)}
}

// WriteTable writes the human-readable table.
func WriteTable(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "%d apps, evaluation %s to %s (%d bins of %gs), trained on the %d bins before\n",
		rep.Apps, rep.EvalFrom.Format("2006-01-02 15:04"), rep.EvalTo.Format("2006-01-02 15:04"),
		rep.Bins-rep.EvalStart, rep.BinSeconds, rep.EvalStart)
	fmt.Fprintf(w, "waste is normalised to the 10-minute keep-alive: %.1f GB·h = 100%%\n\n", rep.ReferenceWastedMBSec/1024/3600)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "policy\tcold p75\tcold overall\twaste\twasted GB·h\tpreparations\t")
	row := func(r Summary) {
		fmt.Fprintf(tw, "%s\t%.1f%%\t%.2f%%\t%s\t%.2f\t%d\t\n", r.Policy, 100*r.ColdP75, 100*r.ColdOverall, pct(r.WastePct), r.WastedMBSec/1024/3600, r.Preparations)
	}
	for _, r := range rep.Rows {
		row(r)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Best) > 0 {
		fmt.Fprintln(w, "\nbest p75 cold-start rate at no more waste than the 10-minute keep-alive:")
		for _, r := range rep.Best {
			fmt.Fprintf(w, "  %-10s %-16s cold p75 %5.1f%%  waste %s\n", r.Family, r.Policy, 100*r.ColdP75, pct(r.WastePct))
		}
	}
	return nil
}

func pct(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", v)
}

// WriteMarkdown writes the table as Markdown, for the results page.
func WriteMarkdown(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "%d apps; evaluation %s – %s UTC (%d bins of %gs) after %d training bins; 100%% waste = %.1f GB·h (fixed 10-minute keep-alive).\n\n",
		rep.Apps, rep.EvalFrom.Format("2006-01-02 15:04"), rep.EvalTo.Format("2006-01-02 15:04"),
		rep.Bins-rep.EvalStart, rep.BinSeconds, rep.EvalStart, rep.ReferenceWastedMBSec/1024/3600)
	fmt.Fprintln(w, "| policy | cold p75 | cold overall | waste (% of keep-alive 10 min) | wasted GB·h | preparations (= shadow requests) |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
	for _, r := range rep.Rows {
		fmt.Fprintf(w, "| %s | %.1f%% | %.2f%% | %s | %.1f | %d |\n", r.Policy, 100*r.ColdP75, 100*r.ColdOverall, pct(r.WastePct), r.WastedMBSec/1024/3600, r.Preparations)
	}
	if len(rep.Best) > 0 {
		fmt.Fprintln(w, "\nBest p75 cold-start rate per policy at no more waste than the 10-minute keep-alive:")
		fmt.Fprintln(w)
		for _, r := range rep.Best {
			fmt.Fprintf(w, "- %s: **%s**, cold p75 %.1f%%, waste %s\n", r.Family, r.Policy, 100*r.ColdP75, pct(r.WastePct))
		}
	}
	_, err := fmt.Fprintln(w)
	return err
}

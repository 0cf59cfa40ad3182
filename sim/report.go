package sim

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
	"text/tabwriter"
)

// csvHeader names the CSV columns; rates are fractions, waste in MB·s.
var csvHeader = []string{"range", "policy", "family", "param", "selected", "apps", "requests", "cold_rule", "cold_requests",
	"cold_rate_p75", "cold_rate_p75_ci90_low", "cold_rate_p75_ci90_high", "cold_rate_overall",
	"cold_rate_p75_first", "cold_rate_overall_first", "cold_rate_p75_all", "cold_rate_overall_all",
	"wasted_mb_s", "idle_mb_s", "preparation_mb_s", "waste_pct_of_keepalive10",
	"preparations", "preparations_per_request", "live_mb_s",
	"cold_rate_mean_app", "cold_rate_mean_app_first", "cold_rate_mean_app_all"} // appended last: old readers keep their columns

// WriteCSV writes one row per policy run.
func WriteCSV(w io.Writer, rep *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(csvHeader); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }
	for _, r := range rep.Rows {
		rec := []string{r.Range, r.Policy, r.Family, f(r.Param), strconv.FormatBool(r.Selected), strconv.Itoa(r.Apps),
			strconv.FormatUint(r.Requests, 10), string(r.ColdRule), strconv.FormatUint(r.ColdRequests, 10),
			f(r.ColdP75), f(r.ColdP75CI[0]), f(r.ColdP75CI[1]), f(r.ColdOverall),
			f(r.ColdP75First), f(r.ColdOverallFirst), f(r.ColdP75All), f(r.ColdOverallAll),
			f(r.WastedMBSec), f(r.IdleMBSec), f(r.PrepareMBSec), f(r.WastePct),
			strconv.Itoa(r.Preparations), f(r.PrepsPerReq), f(r.LiveMBSec),
			f(r.ColdMeanApp), f(r.ColdMeanAppFirst), f(r.ColdMeanAppAll)}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// WritePerAppCSV writes every run's per-application accounting, one row per
// (range, policy, application), for finding where a policy wins or loses.
func WritePerAppCSV(w io.Writer, rep *Report) error {
	cw := csv.NewWriter(w)
	if err := cw.Write([]string{"range", "policy", "app", "memory_mb", "requests", "cold_first", "cold_all", "live_bins", "wasted_bins", "wasted_mb_s", "preparations"}); err != nil {
		return err
	}
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 8, 64) }
	for k, r := range rep.Runs {
		for _, a := range r.Apps {
			if err := cw.Write([]string{rep.Rows[k].Range, r.Policy, a.ID, f(a.MemoryMB), strconv.FormatUint(a.Requests, 10),
				strconv.FormatUint(a.ColdFirst, 10), strconv.FormatUint(a.ColdAll, 10),
				strconv.Itoa(a.LiveBins), strconv.Itoa(a.WastedBins), f(a.WastedMBSec), strconv.Itoa(a.Preparations)}); err != nil {
				return err
			}
		}
	}
	cw.Flush()
	return cw.Error()
}

// WriteJSON writes the whole report, indented. NaNs (no reference waste, a
// waste no setting reaches) become null.
func WriteJSON(w io.Writer, rep *Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(jsonReport(rep))
}

// nullable is a number that encodes NaN as null.
type nullable float64

func (n nullable) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(n)) || math.IsInf(float64(n), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(n))
}

// jsonReport replaces NaNs, which encoding/json refuses.
func jsonReport(rep *Report) any {
	type row struct {
		Summary
		WastePct nullable `json:"waste_pct_of_keepalive10"`
	}
	conv := func(rs []Summary) []row {
		out := make([]row, len(rs))
		for i, r := range rs {
			out[i] = row{r, nullable(r.WastePct)}
		}
		return out
	}
	type matched struct {
		Family          string     `json:"family"`
		WastePct        []float64  `json:"waste_pct"`
		ColdP75         []nullable `json:"cold_rate_p75"`
		Setting         []*string  `json:"setting"`
		SettingWastePct []nullable `json:"setting_waste_pct"`
	}
	var ms []matched
	for _, m := range rep.Matched {
		c := make([]nullable, len(m.ColdP75))
		for i, v := range m.ColdP75 {
			c[i] = nullable(v)
		}
		set := make([]*string, len(m.Setting))
		for i := range m.Setting {
			if m.Setting[i] != "" {
				set[i] = &m.Setting[i]
			}
		}
		sw := make([]nullable, len(m.SettingWastePct))
		for i, v := range m.SettingWastePct {
			sw[i] = nullable(v)
		}
		ms = append(ms, matched{m.Family, m.WastePct, c, set, sw})
	}
	type difference struct {
		Difference
		CI90 [2]nullable `json:"ci90"`
	}
	var ds []difference
	for _, d := range rep.Differences {
		ds = append(ds, difference{d, [2]nullable{nullable(d.CI90[0]), nullable(d.CI90[1])}})
	}
	return struct {
		*Report
		Rows        []row        `json:"rows"`
		Selection   []row        `json:"selection"`
		Chosen      []row        `json:"chosen"`
		Differences []difference `json:"p75_difference_vs,omitempty"`
		Matched     []matched    `json:"matched_waste"`
		LateReady   []row        `json:"late_ready,omitempty"`
	}{rep, conv(rep.Rows), conv(rep.Selection), conv(rep.Chosen), ds, ms, conv(rep.LateReady)}
}

func rangeLine(name string, r RangeInfo) string {
	return fmt.Sprintf("%s %s to %s (bins %d-%d), 100%% waste = %.1f GB·h", name,
		r.From.Format("2006-01-02 15:04"), r.To.Format("2006-01-02 15:04"), r.FromBin, r.ToBin, r.ReferenceWastedMBSec/1024/3600)
}

// WriteTable writes the human-readable tables: the test range, the
// settings chosen on the select range, and the matched-waste reading.
func WriteTable(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "%d apps; %s; %s\n", rep.Apps, rangeLine("select", rep.Select), rangeLine("test", rep.Test))
	fmt.Fprintf(w, "cold rule %q; each preparation charged %gs of its memory; budget %g%% of the 10-minute keep-alive's waste\n\n",
		rep.ColdRule, rep.PrepareSeconds, rep.BudgetPct)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "test range\tcold p75\t90% CI\tmean per app\tcold overall\twaste\twasted GB·h\tpreparations\t")
	for _, r := range rep.TestRows() {
		mark := ""
		if r.Selected {
			mark = " *"
		}
		fmt.Fprintf(tw, "%s%s\t%.1f%%\t%.1f-%.1f%%\t%.1f%%\t%.2f%%\t%s\t%.2f\t%d\t\n", r.Policy, mark, 100*r.ColdP75, 100*r.ColdP75CI[0], 100*r.ColdP75CI[1],
			100*r.ColdMeanApp, 100*r.ColdOverall, pct(r.WastePct), r.WastedMBSec/1024/3600, r.Preparations)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\n* chosen on the select range (lowest p75 within %g%% waste there):\n", rep.BudgetPct)
	for i, s := range rep.Selection {
		t := rep.Chosen[i]
		fmt.Fprintf(w, "  %-16s %-24s select: p75 %5.1f%% waste %-7s  test: p75 %5.1f%% (%.1f-%.1f) waste %s\n",
			s.Family, s.Policy, 100*s.ColdP75, pct(s.WastePct), 100*t.ColdP75, 100*t.ColdP75CI[0], 100*t.ColdP75CI[1], pct(t.WastePct))
	}
	if len(rep.Differences) > 0 {
		fmt.Fprintf(w, "\np75 of ours (%s) minus each chosen setting's, test range, 90%% paired bootstrap interval over applications:\n", rep.Differences[0].Ours)
		for _, d := range rep.Differences {
			fmt.Fprintf(w, "  %-16s %-24s %s (%s)\n", d.Family, d.Setting, ppOf(d.Estimate), ppRange(d.CI90))
		}
	}
	if len(rep.Matched) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\np75 at matched waste on the test range (each family's best measured setting at or under each waste, a staircase, never interpolated):")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprint(tw, "waste\t")
	for _, m := range rep.Matched {
		fmt.Fprintf(tw, "%s\t", m.Family)
	}
	fmt.Fprintln(tw)
	for k, lv := range rep.Matched[0].WastePct {
		fmt.Fprintf(tw, "%g%%\t", lv)
		for _, m := range rep.Matched {
			fmt.Fprintf(tw, "%s\t", pctOf(m.ColdP75[k]))
		}
		fmt.Fprintln(tw)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Calibration) > 0 {
		fmt.Fprintln(w, "\ncalibration of the test model on the test range, per application group:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "group\tapps\tapp-bins\tobserved\tmean P\tlog loss\tBrier\tROC AUC\t")
		for _, g := range rep.Calibration {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%.4f\t%.4f\t%.4f\t%.4f\t%.3f\t\n", g.Group, g.Apps, g.Metrics.N, g.Metrics.Positive, g.MeanP, g.Metrics.LogLoss, g.Metrics.Brier, g.Metrics.AUC)
		}
		return tw.Flush()
	}
	return nil
}

func pct(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", v)
}

// pctOf prints a 0..1 rate as a percentage, "—" when NaN.
func pctOf(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf("%.1f%%", 100*v)
}

// ppOf prints a difference of 0..1 rates in percentage points.
func ppOf(v float64) string {
	if math.IsNaN(v) {
		return "—"
	}
	return fmt.Sprintf("%+.1f pp", 100*v)
}

// ppRange prints an interval of differences, "—" when there is none.
func ppRange(ci [2]float64) string {
	if math.IsNaN(ci[0]) || math.IsNaN(ci[1]) {
		return "—"
	}
	return fmt.Sprintf("%+.1f to %+.1f", 100*ci[0], 100*ci[1])
}

// matchedCell is level k of m: the p75 and, in brackets, the setting that
// gave it (its parameter, when the family has one).
func matchedCell(m Matched, k int) string {
	v := pctOf(m.ColdP75[k])
	if set := strings.TrimPrefix(m.Setting[k], m.Family+"-"); set != "" && set != m.Family {
		v += " (" + set + ")"
	}
	return v
}

// WriteMarkdown writes the report as Markdown, for the results page.
func WriteMarkdown(w io.Writer, rep *Report) error {
	fmt.Fprintf(w, "%d apps; %s; %s. Cold rule %q; each preparation charged %gs of its memory.\n\n",
		rep.Apps, rangeLine("select", rep.Select), rangeLine("test", rep.Test), rep.ColdRule, rep.PrepareSeconds)
	fmt.Fprintf(w, "Chosen on the select range (lowest p75 within %g%% of the 10-minute keep-alive's waste there), reported on the test range:\n\n", rep.BudgetPct)
	fmt.Fprintln(w, "| family | setting | select: cold p75 | select: waste | **test: cold p75** (90% CI) | test: mean per app | test: cold overall | **test: waste** | test: preparations per request |")
	fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|---:|---:|---:|")
	for i, s := range rep.Selection {
		t := rep.Chosen[i]
		fmt.Fprintf(w, "| %s | %s | %.1f%% | %s | **%.1f%%** (%.1f–%.1f) | %.1f%% | %.2f%% | **%s** | %.3f |\n", s.Family, s.Policy,
			100*s.ColdP75, pct(s.WastePct), 100*t.ColdP75, 100*t.ColdP75CI[0], 100*t.ColdP75CI[1], 100*t.ColdMeanApp, 100*t.ColdOverall, pct(t.WastePct), t.PrepsPerReq)
	}
	if len(rep.Differences) > 0 {
		fmt.Fprintf(w, "\np75 cold-start rate of ours (%s) minus each family's chosen setting's, test range, in percentage points (negative: ours lower), with a 90%% paired bootstrap interval (both policies' p75 on the same resampled applications):\n\n", rep.Differences[0].Ours)
		fmt.Fprintln(w, "| vs family | its setting | p75: ours − family | 90% CI |")
		fmt.Fprintln(w, "|---|---|---:|---:|")
		for _, d := range rep.Differences {
			fmt.Fprintf(w, "| %s | %s | %s | %s |\n", d.Family, d.Setting, ppOf(d.Estimate), ppRange(d.CI90))
		}
	}
	if len(rep.LateReady) > 0 {
		fmt.Fprintf(w, "\nThe chosen settings on the test range again, every fresh preparation ready only %gs into its bin (a request before then is cold):\n\n", rep.ReadySeconds)
		fmt.Fprintln(w, "| family | setting | test: cold p75 | test: mean per app | test: cold overall | test: waste |")
		fmt.Fprintln(w, "|---|---|---:|---:|---:|---:|")
		for _, t := range rep.LateReady {
			fmt.Fprintf(w, "| %s | %s | %.1f%% | %.1f%% | %.2f%% | %s |\n", t.Family, t.Policy, 100*t.ColdP75, 100*t.ColdMeanApp, 100*t.ColdOverall, pct(t.WastePct))
		}
	}
	if len(rep.Matched) > 0 {
		fmt.Fprintln(w, "\np75 cold-start rate at matched waste, test range: each family's best measured setting at or under each waste (a staircase of measured settings, never interpolated; the setting in brackets; — where no setting wastes that little):")
		fmt.Fprintln(w)
		fmt.Fprint(w, "| waste |")
		for _, m := range rep.Matched {
			fmt.Fprintf(w, " %s |", m.Family)
		}
		fmt.Fprint(w, "\n|---:|")
		for range rep.Matched {
			fmt.Fprint(w, "---:|")
		}
		fmt.Fprintln(w)
		for k, lv := range rep.Matched[0].WastePct {
			fmt.Fprintf(w, "| %g%% |", lv)
			for _, m := range rep.Matched {
				fmt.Fprintf(w, " %s |", matchedCell(m, k))
			}
			fmt.Fprintln(w)
		}
	}
	if len(rep.Calibration) > 0 {
		fmt.Fprintln(w, "\nCalibration of the test model on the test range, per application group (groups from each application's history before the range):")
		fmt.Fprintln(w)
		fmt.Fprintln(w, "| group | apps | app-bins | observed rate | mean P | log loss | Brier | ROC AUC | reliability: mean P → observed (n) per P bin |")
		fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---|")
		for _, g := range rep.Calibration {
			var rel []string
			for _, r := range g.Reliability {
				if r.N > 0 {
					rel = append(rel, fmt.Sprintf("%.3g→%.3g (%d)", r.MeanP, r.Observed, r.N))
				}
			}
			fmt.Fprintf(w, "| %s | %d | %d | %.4f | %.4f | %.4f | %.4f | %.3f | %s |\n", g.Group, g.Apps, g.Metrics.N, g.Metrics.Positive, g.MeanP, g.Metrics.LogLoss, g.Metrics.Brier, g.Metrics.AUC, strings.Join(rel, "; "))
		}
	}
	fmt.Fprintln(w, "\n<details><summary>Every setting on the test range</summary>")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| policy | cold p75 (90% CI) | mean per app | cold overall | waste | wasted GB·h | preparations |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range rep.TestRows() {
		name := r.Policy
		if r.Selected {
			name = "**" + name + "**"
		}
		fmt.Fprintf(w, "| %s | %.1f%% (%.1f–%.1f) | %.1f%% | %.2f%% | %s | %.1f | %d |\n", name, 100*r.ColdP75, 100*r.ColdP75CI[0], 100*r.ColdP75CI[1],
			100*r.ColdMeanApp, 100*r.ColdOverall, pct(r.WastePct), r.WastedMBSec/1024/3600, r.Preparations)
	}
	_, err := fmt.Fprintln(w, "\n</details>")
	return err
}

package sim

import (
	"fmt"
	"image/color"
	"io"
	"math"
	"strconv"
	"time"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
)

// WritePlot draws the Pareto plot of the report's test range: p75
// cold-start rate against wasted memory-time (% of the 10-minute
// keep-alive), one curve per policy family (its sweep, each point labelled
// with its parameter), single points for the others, and a ring around
// each family's setting chosen on the select range. format is "png" or "svg".
func WritePlot(w io.Writer, rep *Report, title, format string) error {
	p := plot.New()
	p.Title.Text = title
	p.X.Label.Text = "wasted memory-time (% of fixed 10-minute keep-alive)"
	p.Y.Label.Text = "cold-start rate, 75th percentile of apps (%)"
	p.Add(plotter.NewGrid())
	p.Legend.Top = true
	// Pad the axes so points on the edges (the oracle at 0, 0) stay visible;
	// beyond PlotMaxWastePct the interesting region would be squashed, so
	// such points stay in the table only.
	rows := rep.TestRows()
	maxX, omitted := 100.0, 0
	for _, r := range rows {
		switch {
		case math.IsNaN(r.WastePct):
		case r.WastePct > PlotMaxWastePct:
			omitted++
		default:
			maxX = max(maxX, r.WastePct)
		}
	}
	if omitted > 0 {
		p.X.Label.Text += fmt.Sprintf("; %d point(s) beyond %g%% omitted", omitted, PlotMaxWastePct)
	}
	p.X.Min, p.X.Max = -0.03*maxX, 1.08*maxX
	p.X.Tick.Marker = integerTicks{}
	p.Y.Tick.Marker = integerTicks{}
	p.Y.Min, p.Y.Max = -3, 103

	// The budget line: anything left of it wastes no more than the
	// 10-minute keep-alive.
	budget, err := plotter.NewLine(plotter.XYs{{X: 100, Y: p.Y.Min}, {X: 100, Y: p.Y.Max}})
	if err != nil {
		return err
	}
	budget.Color = color.Gray{Y: 150}
	budget.Dashes = []vg.Length{vg.Points(4), vg.Points(3)}
	p.Add(budget)
	p.Legend.Add("waste of keep-alive 10 min", budget)

	for i, fam := range Families {
		var pts plotter.XYs
		var labels []string
		for _, r := range rows {
			if r.Family != fam || math.IsNaN(r.WastePct) || r.WastePct > PlotMaxWastePct {
				continue
			}
			pts = append(pts, plotter.XY{X: r.WastePct, Y: 100 * r.ColdP75})
			labels = append(labels, paramLabel(r))
		}
		if len(pts) == 0 {
			continue
		}
		col := plotutil.Color(i)
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return fmt.Errorf("plot %s: %w", fam, err)
		}
		sc.GlyphStyle.Color = col
		sc.GlyphStyle.Shape = plotutil.Shape(i)
		sc.GlyphStyle.Radius = vg.Points(3)
		p.Add(sc)
		if len(pts) > 1 {
			ln, err := plotter.NewLine(pts)
			if err != nil {
				return fmt.Errorf("plot %s: %w", fam, err)
			}
			ln.Color = col
			p.Add(ln)
			p.Legend.Add(fam, ln, sc)
			lb, err := plotter.NewLabels(plotter.XYLabels{XYs: pts, Labels: labels})
			if err != nil {
				return fmt.Errorf("plot %s labels: %w", fam, err)
			}
			for j := range lb.TextStyle {
				lb.TextStyle[j].Color = col
				lb.TextStyle[j].Font.Size = vg.Points(7)
			}
			lb.Offset = vg.Point{X: vg.Points(4), Y: vg.Points(2)}
			p.Add(lb)
		} else {
			p.Legend.Add(fam, sc)
		}
		for _, r := range rows {
			if r.Family == fam && r.Selected && !math.IsNaN(r.WastePct) && r.WastePct <= PlotMaxWastePct {
				ring, err := plotter.NewScatter(plotter.XYs{{X: r.WastePct, Y: 100 * r.ColdP75}})
				if err != nil {
					return err
				}
				ring.GlyphStyle.Color = col
				ring.GlyphStyle.Shape = draw.RingGlyph{}
				ring.GlyphStyle.Radius = vg.Points(7)
				p.Add(ring)
			}
		}
	}
	wt, err := p.WriterTo(7*vg.Inch, 5*vg.Inch, format)
	if err != nil {
		return fmt.Errorf("plot format %q: %w", format, err)
	}
	_, err = wt.WriteTo(w)
	return err
}

// PlotMaxWastePct is the widest waste axis the plot draws.
const PlotMaxWastePct = 300.0

// integerTicks are gonum's default ticks labelled without decimals.
type integerTicks struct{}

func (integerTicks) Ticks(lo, hi float64) []plot.Tick {
	ts := plot.DefaultTicks{}.Ticks(lo, hi)
	for i := range ts {
		if ts[i].Label != "" {
			ts[i].Label = strconv.FormatFloat(ts[i].Value, 'f', 0, 64)
		}
	}
	return ts
}

func paramLabel(r Summary) string {
	switch r.Family {
	case FamilyKeepAlive:
		return strconv.FormatFloat(r.Param, 'g', -1, 64) + "m"
	case FamilyHistogram:
		return shortDuration(time.Duration(r.Param * float64(time.Hour)))
	case FamilyOurs, FamilyPerApp:
		return strconv.FormatFloat(r.Param, 'g', -1, 64)
	}
	return ""
}

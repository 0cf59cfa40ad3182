package report

import (
	"fmt"
	"image/color"
	"io"
	"sort"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/vg"
	"gonum.org/v1/plot/vg/draw"
	"gonum.org/v1/plot/vg/vgimg"
)

// Decision is one of a loop's decisions as recorded: the bin it was made
// for (index on the grid), the probability and the effective threshold it
// was held against.
type Decision struct {
	Bin       int
	P         float64
	Threshold float64
}

// AppView is what the plot shows of one application.
type AppView struct {
	App       string
	Decisions []Decision
	Held      []Held
}

var (
	warmColor = color.RGBA{R: 46, G: 139, B: 87, A: 255}
	coldColor = color.RGBA{R: 200, G: 60, B: 50, A: 255}
	idleColor = color.RGBA{R: 230, G: 160, B: 40, A: 255}
	pColor    = color.RGBA{R: 40, G: 90, B: 200, A: 255}
	grey      = color.Gray{Y: 120}
)

// WritePlot draws a replay window as an operator reads it, one panel
// under another: requests per bin, warm and cold; memory held per bin, used
// and idle; and for one application its probability against its effective
// threshold, its requests and its leases as bars. PNG.
func WritePlot(w io.Writer, g Grid, s Series, view AppView, title string) error {
	x := func(k int) float64 { return float64(k) }
	bins := g.Bins

	reqs := plot.New()
	reqs.Title.Text = title
	reqs.Y.Label.Text = "requests per bin"
	reqs.X.Label.Text = fmt.Sprintf("bin (%v of trace, %v live)", g.TraceBin, g.LiveBin)
	if err := stacked(reqs, bins, x, []series{{"warm", s.Warm, warmColor}, {"cold", s.Cold, coldColor}}); err != nil {
		return err
	}

	mem := plot.New()
	mem.Y.Label.Text = "memory held (MB, mean over the bin)"
	mem.X.Label.Text = "bin"
	if err := stacked(mem, bins, x, []series{{"used (a request in the bin)", s.UsedMB, warmColor}, {"idle", s.IdleMB, idleColor}}); err != nil {
		return err
	}

	app := plot.New()
	app.Title.Text = "application " + view.App
	app.Y.Label.Text = "P(request in the bin)"
	app.X.Label.Text = "bin"
	app.Y.Min, app.Y.Max = 0, 1.15
	app.X.Min, app.X.Max = 0, float64(bins)
	app.Legend.Top = true
	if err := decisions(app, view, bins); err != nil {
		return err
	}
	var pts plotter.XYs
	for k, n := range s.RequestByBin[view.App] {
		if n > 0 {
			pts = append(pts, plotter.XY{X: x(k) + 0.5, Y: 1.02})
		}
	}
	if len(pts) > 0 {
		sc, err := plotter.NewScatter(pts)
		if err != nil {
			return err
		}
		sc.GlyphStyle.Color, sc.GlyphStyle.Shape, sc.GlyphStyle.Radius = coldColor, draw.PyramidGlyph{}, vg.Points(2.5)
		app.Add(sc)
		app.Legend.Add("a request in the bin", sc)
	}
	for i, h := range view.Held {
		lo, hi := float64(g.BinOf(h.From)), float64(g.BinOf(h.To))+1
		lo, hi = max(lo, 0), min(hi, float64(bins))
		if hi <= lo {
			continue
		}
		ln, err := plotter.NewLine(plotter.XYs{{X: lo, Y: 1.09}, {X: hi, Y: 1.09}})
		if err != nil {
			return err
		}
		ln.Width, ln.Color = vg.Points(5), warmColor
		app.Add(ln)
		if i == 0 {
			app.Legend.Add("a lease held", ln)
		}
	}

	const rows = 3
	img := vgimg.New(11*vg.Inch, 11*vg.Inch)
	dc := draw.New(img)
	tiles := draw.Tiles{Rows: rows, Cols: 1, PadX: vg.Millimeter, PadY: 4 * vg.Millimeter, PadTop: 2 * vg.Millimeter, PadBottom: 2 * vg.Millimeter}
	canvases := plot.Align([][]*plot.Plot{{reqs}, {mem}, {app}}, tiles, dc)
	for r := range rows {
		[]*plot.Plot{reqs, mem, app}[r].Draw(canvases[r][0])
	}
	_, err := vgimg.PngCanvas{Canvas: img}.WriteTo(w)
	return err
}

type series struct {
	name string
	ys   []float64
	col  color.Color
}

// stacked draws series as bars stacked bin by bin.
func stacked(p *plot.Plot, bins int, x func(int) float64, ss []series) error {
	p.Legend.Top = true
	width := vg.Points(max(1, 560/float64(max(bins, 1))))
	var below *plotter.BarChart
	for _, s := range ss {
		vals := make(plotter.Values, bins)
		copy(vals, s.ys)
		b, err := plotter.NewBarChart(vals, width)
		if err != nil {
			return err
		}
		b.Color, b.LineStyle.Width = s.col, 0
		if below != nil {
			b.StackOn(below)
		}
		p.Add(b)
		p.Legend.Add(s.name, b)
		below = b
	}
	p.X.Min, p.X.Max = -0.5, float64(bins)-0.5
	return nil
}

// decisions draws an application's probability and effective threshold
// as steps: a decision holds until the next.
func decisions(p *plot.Plot, view AppView, bins int) error {
	ds := append([]Decision(nil), view.Decisions...)
	sort.Slice(ds, func(i, j int) bool { return ds[i].Bin < ds[j].Bin })
	var prob, th plotter.XYs
	for i, d := range ds {
		if d.Bin >= bins {
			break
		}
		end := bins
		if i+1 < len(ds) {
			end = min(ds[i+1].Bin, bins)
		}
		if d.Bin < 0 {
			continue
		}
		prob = append(prob, plotter.XY{X: float64(d.Bin), Y: d.P}, plotter.XY{X: float64(end), Y: d.P})
		th = append(th, plotter.XY{X: float64(d.Bin), Y: min(d.Threshold, 1)}, plotter.XY{X: float64(end), Y: min(d.Threshold, 1)})
	}
	if len(prob) == 0 {
		return nil
	}
	pl, err := plotter.NewLine(prob)
	if err != nil {
		return err
	}
	pl.Color, pl.Width = pColor, vg.Points(1.2)
	tl, err := plotter.NewLine(th)
	if err != nil {
		return err
	}
	tl.Color, tl.Dashes = grey, []vg.Length{vg.Points(3), vg.Points(2)}
	p.Add(pl, tl)
	p.Legend.Add("P (the loop's forecast)", pl)
	p.Legend.Add("effective threshold", tl)
	return nil
}

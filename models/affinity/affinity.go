package affinity

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/advancedclimatesystems/gonnx/onnx"

	"github.com/forewarm/forewarm/models"
)

// Input is one (application, host) pair to score.
type Input struct {
	// Application profile.
	VolumeType string  // "ssd", "hdd", "memory", "network"; anything else is "other"
	SizeMB     float64 // memory the application needs
	ReadRatio  float64 // 0..1
	Rate       float64 // requests per minute, recent
	// Host characteristics and current metrics.
	MemoryMB, DiskMB, CPUMilli float64
	Speed                      float64 // nominal relative speed, 1 = reference
	CPUUtil, MemPressure       float64 // 0..1
	IOLatencyMS                float64
	FreeMemMB                  float64
}

// Model scores how well each host will serve its application, 0..1:
// the expected min(1, usual latency / latency there), the same scale as an
// observed performance score. Safe for concurrent use.
type Model interface {
	Score(in []Input) ([]float64, error)
	Version() string
}

// Format names the affinity feature encoding of this build.
const Format = "forewarm.affinity/v1"

var volumeTypes = []string{"ssd", "hdd", "memory", "network"}

var features = []string{
	"vol_ssd", "vol_hdd", "vol_memory", "vol_network", "vol_other",
	"log_size", "read_ratio", "log_rate",
	"log_host_memory", "log_host_disk", "host_cpu", "host_speed",
	"cpu_util", "mem_pressure", "log_io_latency", "fit",
}

// Spec is the encoding and network shape, stored with the model.
type Spec struct {
	Format   string   `json:"format"`
	Features []string `json:"features"`
	Hidden   []int    `json:"hidden"`
}

func defaultSpec() Spec {
	return Spec{Format: Format, Features: slices.Clone(features), Hidden: []int{32, 16}}
}

func (s Spec) validate() error {
	if s.Format != Format {
		return fmt.Errorf("affinity spec format %q is not supported (this build speaks %q)", s.Format, Format)
	}
	if !slices.Equal(s.Features, features) {
		return fmt.Errorf("affinity spec features %v do not match this build's %v", s.Features, features)
	}
	if len(s.Hidden) == 0 || slices.ContainsFunc(s.Hidden, func(h int) bool { return h < 1 || h > 4096 }) {
		return fmt.Errorf("affinity spec hidden layers %v invalid", s.Hidden)
	}
	return nil
}

// encode validates one input and writes its features.
func encode(dst []float32, in Input, index int) error {
	nums := []struct {
		name string
		v    float64
		lo   float64
		hi   float64
	}{
		{"SizeMB", in.SizeMB, 0, math.Inf(1)}, {"ReadRatio", in.ReadRatio, 0, 1}, {"Rate", in.Rate, 0, math.Inf(1)},
		{"MemoryMB", in.MemoryMB, 0, math.Inf(1)}, {"DiskMB", in.DiskMB, 0, math.Inf(1)}, {"CPUMilli", in.CPUMilli, 0, math.Inf(1)},
		{"Speed", in.Speed, 0, math.Inf(1)}, {"CPUUtil", in.CPUUtil, 0, 1}, {"MemPressure", in.MemPressure, 0, 1},
		{"IOLatencyMS", in.IOLatencyMS, 0, math.Inf(1)}, {"FreeMemMB", in.FreeMemMB, 0, math.Inf(1)},
	}
	for _, n := range nums {
		if !models.Finite(n.v) || n.v < n.lo || n.v > n.hi {
			return &models.InputError{Kind: models.KindAffinity, Index: index, Field: n.name, Msg: fmt.Sprintf("%v is not a finite number in [%v, %v]", n.v, n.lo, n.hi)}
		}
	}
	clear(dst)
	vt := slices.Index(volumeTypes, strings.ToLower(in.VolumeType))
	if vt < 0 {
		vt = len(volumeTypes)
	}
	dst[vt] = 1
	dst[5] = float32(math.Log1p(in.SizeMB) / 10)
	dst[6] = float32(in.ReadRatio)
	dst[7] = float32(math.Log1p(in.Rate) / 5)
	dst[8] = float32(math.Log1p(in.MemoryMB) / 12)
	dst[9] = float32(math.Log1p(in.DiskMB) / 14)
	dst[10] = float32(in.CPUMilli / 16000)
	dst[11] = float32(in.Speed)
	dst[12] = float32(in.CPUUtil)
	dst[13] = float32(in.MemPressure)
	dst[14] = float32(math.Log1p(in.IOLatencyMS) / 6)
	// Headroom after placing the app, relative to the host's memory; -1 = does not fit at all.
	dst[15] = float32(math.Max(-1, math.Min(1, (in.FreeMemMB-in.SizeMB)/math.Max(in.MemoryMB, 1))))
	return nil
}

// Default scores by a fixed rule until a trained model exists: the
// host's speed (capped at 1) reduced by CPU load, memory pressure and I/O
// latency. Whether the application fits at all is not a score: ranking
// asks Fits first.
func Default() Model { return defaultAffinity{} }

type defaultAffinity struct{}

func (defaultAffinity) Version() string { return "heuristic-v1" }

func (defaultAffinity) Score(in []Input) ([]float64, error) {
	out := make([]float64, len(in))
	x := make([]float32, len(features))
	for i, a := range in {
		if err := encode(x, a, i); err != nil {
			return nil, err
		}
		speed := a.Speed
		if speed <= 0 {
			speed = 1
		}
		s := math.Min(1, speed) * (1 - 0.5*a.CPUUtil) * (1 - 0.5*a.MemPressure) / (1 + a.IOLatencyMS/100)
		out[i] = math.Max(0, math.Min(1, s))
	}
	return out, nil
}

// Sample is an observed outcome: Target is the performance score
// min(1, usual latency / observed latency) of a request served on the host.
type Sample struct {
	Input  Input
	Target float64
}

// Observation is one served request, for AffinitySamples.
type Observation struct {
	App       string
	Input     Input
	LatencyMS float64 // the work's duration on the host (not cold-start setup)
	Failed    bool    // the host failed the request: target 0
}

// Target is the performance score of one request: 1 when it was as
// fast as usual or faster, usual/observed when slower.
func Target(usualMS, observedMS float64) float64 {
	if usualMS <= 0 || observedMS <= 0 {
		return 1
	}
	return math.Min(1, usualMS/observedMS)
}

// AffinitySamples turns served requests into training samples, taking each
// application's median latency (of successful requests) as its usual.
// Failed requests score 0; successful ones with a non-positive or
// non-finite latency are dropped.
func Samples(obs []Observation) []Sample {
	byApp := map[string][]float64{}
	for _, o := range obs {
		if !o.Failed && models.Finite(o.LatencyMS) && o.LatencyMS > 0 {
			byApp[o.App] = append(byApp[o.App], o.LatencyMS)
		}
	}
	usual := map[string]float64{}
	for app, ls := range byApp {
		sort.Float64s(ls)
		usual[app] = ls[len(ls)/2]
	}
	var out []Sample
	for _, o := range obs {
		if o.Failed {
			out = append(out, Sample{Input: o.Input, Target: 0})
			continue
		}
		if u, ok := usual[o.App]; ok && models.Finite(o.LatencyMS) && o.LatencyMS > 0 {
			out = append(out, Sample{Input: o.Input, Target: Target(u, o.LatencyMS)})
		}
	}
	return out
}

// SynthSamples makes n samples from a hidden rule that the default
// heuristic only approximates: write-heavy applications on disk volumes
// suffer from I/O latency far more than readers, large applications suffer
// from memory pressure, and speed matters for CPU-bound (high-rate) ones.
// For tests and demos.
func SynthSamples(n int, seed uint64) []Sample {
	rng := rand.New(rand.NewPCG(seed, 77))
	out := make([]Sample, n)
	for i := range out {
		in := Input{
			VolumeType:  volumeTypes[rng.IntN(len(volumeTypes))],
			SizeMB:      math.Exp(3 + 4*rng.Float64()),
			ReadRatio:   rng.Float64(),
			Rate:        math.Exp(4*rng.Float64()) - 1,
			MemoryMB:    []float64{4096, 8192, 16384}[rng.IntN(3)],
			DiskMB:      []float64{20000, 100000}[rng.IntN(2)],
			CPUMilli:    []float64{2000, 4000, 8000}[rng.IntN(3)],
			Speed:       0.5 + rng.Float64(),
			CPUUtil:     rng.Float64(),
			MemPressure: rng.Float64(),
			IOLatencyMS: math.Exp(5 * rng.Float64()),
		}
		in.FreeMemMB = in.MemoryMB * rng.Float64()
		slow := 1.0
		if in.VolumeType == "hdd" || in.VolumeType == "network" {
			slow += (1 - in.ReadRatio) * in.IOLatencyMS / 40
		} else {
			slow += (1 - in.ReadRatio) * in.IOLatencyMS / 400
		}
		slow *= 1 + 2*in.MemPressure*math.Min(1, in.SizeMB/1000)
		cpuBound := math.Min(1, in.Rate/10)
		slow *= 1 + cpuBound*(1/in.Speed-1+in.CPUUtil)
		if in.SizeMB > in.FreeMemMB {
			slow *= 3 // swapping or evicting
		}
		slow *= math.Exp(0.1 * rng.NormFloat64())
		out[i] = Sample{Input: in, Target: Target(1, math.Max(slow, 1e-3))}
	}
	return out
}

// mlp is a Gemm/Relu stack ending in one sigmoid output.
type mlp struct {
	sizes []int       // input, hidden..., 1
	W     [][]float32 // layer l: [sizes[l+1]][sizes[l]] (ONNX Gemm transB=1 layout)
	B     [][]float32
}

func newMLP(sizes []int, rng *rand.Rand) *mlp {
	m := &mlp{sizes: sizes}
	for l := 0; l+1 < len(sizes); l++ {
		in, out := sizes[l], sizes[l+1]
		w := make([]float32, in*out)
		lim := float32(math.Sqrt(6 / float64(in)))
		for i := range w {
			w[i] = (2*rng.Float32() - 1) * lim
		}
		m.W = append(m.W, w)
		m.B = append(m.B, make([]float32, out))
	}
	return m
}

func (m *mlp) params() [][]float32 {
	var ps [][]float32
	for l := range m.W {
		ps = append(ps, m.W[l], m.B[l])
	}
	return ps
}

// forward returns all layer activations (acts[0] = x) and the output logit.
func (m *mlp) forward(x []float32, acts [][]float32) float32 {
	acts[0] = x
	for l := range m.W {
		in, out := m.sizes[l], m.sizes[l+1]
		a := acts[l+1][:out]
		for o := range out {
			s := m.B[l][o]
			w := m.W[l][o*in : (o+1)*in]
			for i, v := range acts[l][:in] {
				s += w[i] * v
			}
			if l+1 < len(m.W) && s < 0 {
				s = 0
			}
			a[o] = s
		}
	}
	return acts[len(m.W)][0]
}

func (m *mlp) newActs() [][]float32 {
	acts := make([][]float32, len(m.sizes))
	for l := 1; l < len(m.sizes); l++ {
		acts[l] = make([]float32, m.sizes[l])
	}
	return acts
}

// backward adds d(loss)/d(params) for dlogit into grad.
func (m *mlp) backward(acts [][]float32, dlogit float32, grad *mlp, delta [][]float32) {
	L := len(m.W)
	delta[L] = delta[L][:1]
	delta[L][0] = dlogit
	for l := L - 1; l >= 0; l-- {
		in, out := m.sizes[l], m.sizes[l+1]
		d := delta[l+1][:out]
		for o := range out {
			grad.B[l][o] += d[o]
			g := grad.W[l][o*in : (o+1)*in]
			for i, v := range acts[l][:in] {
				g[i] += d[o] * v
			}
		}
		if l == 0 {
			break
		}
		dp := delta[l][:in]
		clear(dp)
		for o := range out {
			w := m.W[l][o*in : (o+1)*in]
			for i := range in {
				dp[i] += d[o] * w[i]
			}
		}
		for i := range in {
			if acts[l][i] <= 0 { // Relu
				dp[i] = 0
			}
		}
	}
}

// TrainOptions configures Train.
type TrainOptions struct {
	Epochs      int     // default 60
	BatchSize   int     // default 64
	LR          float64 // default 3e-3
	ValFraction float64 // latest share of the samples held out, default 0.2
	Seed        uint64
	Version     string // default "affinity-<UTC timestamp>"
}

// Result is a trained affinity model with its held-out metrics.
type Result struct {
	Version    string
	Spec       Spec
	TrainN     int
	ValN       int
	ValMSE     float64 // mean squared error of the score on held-out samples
	DefaultMSE float64 // the Default heuristic on the same samples
	MeanMSE    float64 // predicting the training mean
	model      *mlp
}

// Metrics are the registry metrics.
func (r *Result) Metrics() map[string]float64 {
	return map[string]float64{"mse": r.ValMSE, "default.mse": r.DefaultMSE, "mean.mse": r.MeanMSE,
		"train.samples": float64(r.TrainN), "val.samples": float64(r.ValN)}
}

// Model returns the pure-Go scorer.
func (r *Result) Model() Model { return &goAffinity{m: r.model, version: r.Version} }

type meta = models.Meta[Spec]

// Meta is the registry description (JSON).
func (r *Result) Meta() string {
	return meta{Kind: models.KindAffinity, Version: r.Version, Spec: r.Spec}.String()
}

// ONNX exports Gemm -> Relu -> ... -> Gemm -> Sigmoid.
func (r *Result) ONNX() ([]byte, error) {
	m := r.model
	g := &onnx.GraphProto{Name: "forewarm_affinity",
		Input:  []*onnx.ValueInfoProto{models.ValueInfo(affinityInput, "batch", m.sizes[0])},
		Output: []*onnx.ValueInfoProto{models.ValueInfo(affinityOutput, "batch", 1)}}
	cur := affinityInput
	for l := range m.W {
		w, b := fmt.Sprintf("W%d", l), fmt.Sprintf("B%d", l)
		g.Initializer = append(g.Initializer,
			models.FloatTensor(w, []int64{int64(m.sizes[l+1]), int64(m.sizes[l])}, m.W[l]),
			models.FloatTensor(b, []int64{int64(m.sizes[l+1])}, m.B[l]))
		z := fmt.Sprintf("z%d", l)
		g.Node = append(g.Node, &onnx.NodeProto{Name: "gemm" + fmt.Sprint(l), OpType: "Gemm", Input: []string{cur, w, b}, Output: []string{z},
			Attribute: []*onnx.AttributeProto{models.IntAttr("transB", 1)}})
		if l+1 < len(m.W) {
			a := fmt.Sprintf("a%d", l)
			g.Node = append(g.Node, &onnx.NodeProto{Name: "relu" + fmt.Sprint(l), OpType: "Relu", Input: []string{z}, Output: []string{a}})
			cur = a
		} else {
			g.Node = append(g.Node, &onnx.NodeProto{Name: "sigmoid", OpType: "Sigmoid", Input: []string{z}, Output: []string{affinityOutput}})
		}
	}
	return models.MarshalModel(g, meta{Kind: models.KindAffinity, Version: r.Version, Spec: r.Spec})
}

const (
	affinityInput  = "x"     // [batch, F]
	affinityOutput = "score" // [batch, 1]
)

// Train fits the MLP to samples (in time order: the latest
// ValFraction is held out) by Adam on cross-entropy against the soft
// targets, keeping the epoch with the lowest held-out MSE.
func Train(ctx context.Context, samples []Sample, opt TrainOptions) (*Result, error) {
	if opt.Epochs <= 0 {
		opt.Epochs = 60
	}
	if opt.BatchSize <= 0 {
		opt.BatchSize = 64
	}
	if opt.LR <= 0 {
		opt.LR = 3e-3
	}
	if opt.ValFraction <= 0 || opt.ValFraction >= 1 {
		opt.ValFraction = 0.2
	}
	if opt.Version == "" {
		opt.Version = "affinity-" + time.Now().UTC().Format("20060102T150405Z")
	}
	F := len(features)
	xs := make([]float32, len(samples)*F)
	ys := make([]float32, len(samples))
	for i, s := range samples {
		if err := encode(xs[i*F:(i+1)*F], s.Input, i); err != nil {
			return nil, fmt.Errorf("affinity sample: %w", err)
		}
		if !models.Finite(s.Target) || s.Target < 0 || s.Target > 1 {
			return nil, fmt.Errorf("affinity sample %d: target %v is not in 0..1", i, s.Target)
		}
		ys[i] = float32(s.Target)
	}
	nVal := int(float64(len(samples)) * opt.ValFraction)
	nTrain := len(samples) - nVal
	if nTrain < 20 || nVal < 5 {
		return nil, fmt.Errorf("affinity: %d samples are too few to train and validate (need 25 or more)", len(samples))
	}
	spec := defaultSpec()
	rng := rand.New(rand.NewPCG(opt.Seed, 5))
	m := newMLP(append(append([]int{F}, spec.Hidden...), 1), rng)
	grad := newMLP(m.sizes, rng)
	ad := &adamMLP{lr: opt.LR}
	ad.init(m)
	acts, delta := m.newActs(), m.newActs()
	mse := func(mm *mlp, from, to int) float64 {
		a := mm.newActs()
		var s float64
		for i := from; i < to; i++ {
			p := float64(sigmoid(mm.forward(xs[i*F:(i+1)*F], a)))
			s += (p - float64(ys[i])) * (p - float64(ys[i]))
		}
		return s / float64(to-from)
	}
	best, bestMSE := m, math.Inf(1)
	order := make([]int, nTrain)
	for i := range order {
		order[i] = i
	}
	for epoch := range opt.Epochs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for b := 0; b < nTrain; b += opt.BatchSize {
			batch := order[b:min(b+opt.BatchSize, nTrain)]
			for _, p := range grad.params() {
				clear(p)
			}
			for _, i := range batch {
				z := m.forward(xs[i*F:(i+1)*F], acts)
				d := (sigmoid(z) - ys[i]) / float32(len(batch))
				m.backward(acts, d, grad, delta)
			}
			ad.update(m, grad)
		}
		if v := mse(m, nTrain, len(samples)); v < bestMSE {
			bestMSE = v
			best = m.clone()
		}
		_ = epoch
	}
	res := &Result{Version: opt.Version, Spec: spec, TrainN: nTrain, ValN: nVal, ValMSE: bestMSE, model: best}
	// Baselines on the same held-out samples.
	var mean float64
	for _, y := range ys[:nTrain] {
		mean += float64(y)
	}
	mean /= float64(nTrain)
	held := samples[nTrain:]
	in := make([]Input, len(held))
	for i, s := range held {
		in[i] = s.Input
	}
	def, _ := Default().Score(in)
	for i, s := range held {
		res.DefaultMSE += (def[i] - s.Target) * (def[i] - s.Target) / float64(nVal)
		res.MeanMSE += (mean - s.Target) * (mean - s.Target) / float64(nVal)
	}
	return res, nil
}

func (m *mlp) clone() *mlp {
	c := &mlp{sizes: slices.Clone(m.sizes)}
	for l := range m.W {
		c.W = append(c.W, slices.Clone(m.W[l]))
		c.B = append(c.B, slices.Clone(m.B[l]))
	}
	return c
}

// adamMLP is Adam over an mlp's parameters.
type adamMLP struct {
	lr   float64
	step int
	m, v [][]float32
}

func (a *adamMLP) init(m *mlp) {
	for _, p := range m.params() {
		a.m = append(a.m, make([]float32, len(p)))
		a.v = append(a.v, make([]float32, len(p)))
	}
}

func (a *adamMLP) update(m, g *mlp) {
	a.step++
	bc1 := 1 - math.Pow(0.9, float64(a.step))
	bc2 := 1 - math.Pow(0.999, float64(a.step))
	lr := float32(a.lr * math.Sqrt(bc2) / bc1)
	gs := g.params()
	for k, p := range m.params() {
		mm, vv, gg := a.m[k], a.v[k], gs[k]
		for j := range p {
			mm[j] = 0.9*mm[j] + 0.1*gg[j]
			vv[j] = 0.999*vv[j] + 0.001*gg[j]*gg[j]
			p[j] -= lr * mm[j] / (float32(math.Sqrt(float64(vv[j]))) + 1e-8)
		}
	}
}

// goAffinity scores with the pure-Go forward pass.
type goAffinity struct {
	m       *mlp
	version string
}

func (g *goAffinity) Version() string { return g.version }

func (g *goAffinity) Score(in []Input) ([]float64, error) {
	F := len(features)
	x := make([]float32, F)
	acts := g.m.newActs()
	out := make([]float64, len(in))
	for i, a := range in {
		if err := encode(x, a, i); err != nil {
			return nil, err
		}
		out[i] = float64(sigmoid(g.m.forward(x, acts)))
	}
	return out, nil
}

// Load builds a scorer from registry bytes (see LoadDemand).
func Load(onnxBytes []byte, registryMeta string, useORT bool) (Model, error) {
	p, fm, err := models.LoadMeta(onnxBytes, registryMeta, models.KindAffinity, Spec.validate, sameSpec)
	if err != nil {
		return nil, err
	}
	sizes := append(append([]int{len(features)}, fm.Spec.Hidden...), 1)
	m := &mlp{sizes: sizes}
	for l := 0; l+1 < len(sizes); l++ {
		w, err := p.Floats(fmt.Sprintf("W%d", l), int64(sizes[l+1]), int64(sizes[l]))
		if err != nil {
			return nil, models.Incompatible("affinity model %s: %v", fm.Version, err)
		}
		b, err := p.Floats(fmt.Sprintf("B%d", l), int64(sizes[l+1]))
		if err != nil {
			return nil, models.Incompatible("affinity model %s: %v", fm.Version, err)
		}
		m.W = append(m.W, slices.Clone(w))
		m.B = append(m.B, slices.Clone(b))
	}
	ga := &goAffinity{m: m, version: fm.Version}
	if !useORT {
		return ga, nil
	}
	s, err := models.NewSession(onnxBytes, affinityInput, affinityOutput)
	if err != nil {
		return nil, fmt.Errorf("affinity model %s: %w", fm.Version, err)
	}
	return &ortAffinity{goAffinity: ga, s: s}, nil
}

func sameSpec(a, b Spec) bool { return slices.Equal(a.Hidden, b.Hidden) }

// sigmoid is the logistic function in float32.
func sigmoid(x float32) float32 { return float32(1 / (1 + math.Exp(-float64(x)))) }

// ortAffinity scores in ONNX Runtime.
type ortAffinity struct {
	*goAffinity
	s *models.Session
}

func (o *ortAffinity) Score(in []Input) ([]float64, error) {
	if len(in) == 0 {
		return nil, nil
	}
	F := len(features)
	x := make([]float32, len(in)*F)
	for i, a := range in {
		if err := encode(x[i*F:(i+1)*F], a, i); err != nil {
			return nil, err
		}
	}
	p, err := o.s.Run(x, []int64{int64(len(in)), int64(F)}, []int64{int64(len(in)), 1})
	if err != nil {
		return nil, fmt.Errorf("affinity model %s: %w", o.version, err)
	}
	out := make([]float64, len(in))
	for i, v := range p {
		out[i] = float64(v)
	}
	return out, nil
}

// Close releases the ONNX Runtime session.
func (o *ortAffinity) Close() error { return o.s.Close() }

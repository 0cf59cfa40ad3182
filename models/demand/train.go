package demand

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"log/slog"
	"math"
	"math/rand/v2"
	"runtime"
	"sync"
	"time"

	"github.com/forewarm/forewarm/models"
	"github.com/forewarm/forewarm/trace"
)

// TrainOptions configures Train. Zero values pick the defaults.
type TrainOptions struct {
	// Spec zero = DefaultSpec(trace bin), with the calendar features
	// the training range allows (CalendarFeatures); SeqLen and Hidden may be
	// set alone (Format left empty) to keep that logic.
	Spec Spec
	// TrainUntil ends the training data: every label window lies before it.
	// Zero = the trace end. Evaluate on later times only.
	TrainUntil time.Time
	// Samples is the number of (application, bin) training sequences drawn
	// from the training range (default 48000); a further ValFraction of them
	// comes from its latest part for early stopping.
	Samples     int
	ValFraction float64 // default 0.15
	Epochs      int     // maximum, default 8
	Patience    int     // epochs without validation improvement before stopping, default 2
	BatchSize   int     // default 128
	LR          float64 // Adam learning rate, default 3e-3
	Workers     int     // goroutines per mini-batch, default min(2, GOMAXPROCS)
	Seed        uint64  // same seed, data and Workers = the same model, bit for bit
	// Version names the model; default "demand-<UTC timestamp>", or the
	// checkpoint's version when resuming.
	Version string
	// Checkpoint resumes a run from bytes a Progress carried. It is refused
	// when it belongs to other options or other data.
	Checkpoint []byte
	// ProgressEvery throttles progress reports within an epoch (default 2s);
	// every epoch end is reported with a checkpoint.
	ProgressEvery time.Duration
	Logger        *slog.Logger
}

// Progress is reported during training. Checkpoint is the latest resumable
// state (nil until the first epoch ends; renewed at every epoch end and
// repeated in the reports between, so the last heartbeat always carries
// it): pass it back as TrainOptions.Checkpoint to resume after that epoch.
type Progress struct {
	Epoch, Epochs  int
	Batch, Batches int
	TrainLoss      float64 // running mean over the epoch so far
	ValLoss        float64 // last completed epoch's; NaN before the first
	BestValLoss    float64
	SeqPerSec      float64
	Checkpoint     []byte
}

// Result is a trained demand model.
type Result struct {
	Spec        Spec
	Version     string
	Epochs      int // epochs run (including any before a resume)
	BestEpoch   int
	TrainLoss   float64
	ValLoss     float64 // at the best epoch, after calibration
	TrainSeqs   int
	ValSeqs     int
	SeqPerSec   float64 // training throughput (forward + backward)
	Calibration [2]float64
	Resumed     bool
	model       *lstm
}

// Model returns the pure-Go predictor for the trained weights.
func (r *Result) Model() Model { return newGoDemand(r.model, r.Version, r.Spec) }

// ONNX exports the model as a standard ONNX graph with its spec in metadata.
func (r *Result) ONNX() ([]byte, error) {
	return exportONNX(r.model, meta{Kind: models.KindDemand, Version: r.Version, Spec: r.Spec})
}

// Meta is the registry description (JSON) of the model.
func (r *Result) Meta() string {
	return meta{Kind: models.KindDemand, Version: r.Version, Spec: r.Spec}.String()
}

// sample is one training point: application index and prediction bin.
type sample struct {
	app, t int32
	y      bool
}

type dataset struct {
	spec       Spec
	tr         *trace.Trace
	counts     [][]float64
	train, val []sample
}

func (d *dataset) fingerprint() uint64 {
	h := fnv.New64a()
	for _, s := range [][]sample{d.train, d.val} {
		for _, x := range s {
			fmt.Fprint(h, x.app, x.t, x.y)
		}
	}
	return h.Sum64()
}

// encode writes sample s's input tensor into dst; idle is the caller's
// scratch histogram (one per goroutine).
func (d *dataset) encode(dst []float32, s sample, idle *IdleTimes) {
	c := d.counts[s.app]
	t := int(s.t)
	hist := c[max(0, t-d.spec.HistoryBins()):t]
	idle.reset(tail(hist, d.spec.GapCap))
	d.spec.encodeWith(dst, hist, d.tr.BinStart(t), idle)
}

// newIdle is a scratch idle-time histogram for the dataset's spec.
func (d *dataset) newIdle() *IdleTimes { return NewIdleTimes(nil, d.spec.GapCap, d.spec.Hazard) }

func buildDataset(tr *trace.Trace, spec Spec, opt TrainOptions) (*dataset, error) {
	end, err := binIndex(tr, opt.TrainUntil, tr.Bins)
	if err != nil {
		return nil, fmt.Errorf("--train-until: %w", err)
	}
	H := spec.Horizon
	first := min(spec.SeqLen, end/4) // points need some history behind them
	last := end - H                  // last point whose label window ends by `end`
	if last-first < 4 {
		return nil, fmt.Errorf("training range has %d bins before %s: too short for horizon %d", end, tr.BinStart(end).Format(time.RFC3339), H)
	}
	valStart := first + int(float64(last-first)*(1-opt.ValFraction))
	d := &dataset{spec: spec, tr: tr, counts: make([][]float64, len(tr.Apps))}
	for i, a := range tr.Apps {
		c := make([]float64, len(a.Counts))
		for j, v := range a.Counts {
			c[j] = float64(v)
		}
		d.counts[i] = c
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 0x5eed))
	nVal := int(float64(opt.Samples) * opt.ValFraction / (1 - opt.ValFraction))
	// Training points end their label windows before validation starts.
	d.train = d.draw(rng, first, valStart-H+1, opt.Samples)
	d.val = d.draw(rng, valStart, last+1, nVal)
	if len(d.train) == 0 || len(d.val) == 0 {
		return nil, fmt.Errorf("training range too short: %d training and %d validation points", len(d.train), len(d.val))
	}
	return d, nil
}

// draw picks up to n distinct (app, t) points with from <= t < to, uniformly.
func (d *dataset) draw(rng *rand.Rand, from, to, n int) []sample {
	if to <= from {
		return nil
	}
	per := to - from
	total := len(d.counts) * per
	n = min(n, total)
	out := make([]sample, 0, n)
	seen := make(map[int]struct{}, n)
	for len(out) < n {
		k := rng.IntN(total)
		if n == total {
			k = len(out)
		} else if _, dup := seen[k]; dup {
			continue
		}
		seen[k] = struct{}{}
		app, t := k/per, from+k%per
		c := d.counts[app]
		y := false
		for b := t; b < t+d.spec.Horizon && b < len(c); b++ {
			y = y || c[b] > 0
		}
		out = append(out, sample{int32(app), int32(t), y})
	}
	return out
}

// checkpoint is the resumable state after a completed epoch.
type checkpoint struct {
	Format      string
	Version     string
	OptionsHash uint64
	DataHash    uint64
	Epoch       int
	Step        int
	Params      [][]float32
	Best        [][]float32
	BestEpoch   int
	BestVal     float64
	SinceBest   int
	AdamM       [][]float32
	AdamV       [][]float32
	TrainSecs   float64
	TrainSeqs   int
}

const checkpointFormat = "forewarm.demand.checkpoint/v1"

func optionsHash(spec Spec, o TrainOptions) uint64 {
	h := fnv.New64a()
	sj, _ := json.Marshal(spec)
	fmt.Fprint(h, string(sj), o.TrainUntil.UTC().Format(time.RFC3339Nano), o.Samples, o.ValFraction, o.BatchSize, o.LR, o.Seed)
	return h.Sum64()
}

func setParams(dst *lstm, src [][]float32) error {
	ps := dst.params()
	if len(ps) != len(src) {
		return fmt.Errorf("checkpoint has %d parameter tensors, want %d", len(src), len(ps))
	}
	for i := range ps {
		if len(ps[i]) != len(src[i]) {
			return fmt.Errorf("checkpoint tensor %d has %d values, want %d", i, len(src[i]), len(ps[i]))
		}
		copy(ps[i], src[i])
	}
	return nil
}

func copyParams(m *lstm) [][]float32 {
	var out [][]float32
	for _, p := range m.params() {
		out = append(out, append([]float32(nil), p...))
	}
	return out
}

func (o *TrainOptions) defaults(tr *trace.Trace) Spec {
	def := DefaultSpec(tr.Bin)
	spec := o.Spec
	if spec.Format == "" {
		s := def
		if spec.SeqLen > 0 {
			s.SeqLen = spec.SeqLen
		}
		if spec.Hidden > 0 {
			s.Hidden = spec.Hidden
		}
		span := tr.End().Sub(tr.Start)
		if !o.TrainUntil.IsZero() {
			span = o.TrainUntil.Sub(tr.Start)
		}
		s.TimeOfDay, s.DayOfWeek = CalendarFeatures(span)
		spec = s
	}
	if o.Samples <= 0 {
		o.Samples = 48000
	}
	if o.ValFraction <= 0 || o.ValFraction >= 1 {
		o.ValFraction = 0.15
	}
	if o.Epochs <= 0 {
		o.Epochs = 8
	}
	if o.Patience <= 0 {
		o.Patience = 2
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 128
	}
	if o.LR <= 0 {
		o.LR = 3e-3
	}
	if o.Workers <= 0 {
		o.Workers = min(2, runtime.GOMAXPROCS(0))
	}
	if o.ProgressEvery <= 0 {
		o.ProgressEvery = 2 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	return spec
}

// CalendarFeatures says which calendar features a training range of span
// can teach: the time of day once every hour has been seen (a day), the day
// of week once every weekday has (a week).
func CalendarFeatures(span time.Duration) (timeOfDay, dayOfWeek bool) {
	return span >= 24*time.Hour, span >= 7*24*time.Hour
}

// Train fits the demand LSTM on tr with BPTT and Adam, stopping early
// on the validation loss, then calibrates the output (Platt scaling on the
// validation points, folded into the read-out). progress may be nil.
func Train(ctx context.Context, tr *trace.Trace, opt TrainOptions, progress func(Progress)) (*Result, error) {
	if tr == nil || len(tr.Apps) == 0 || tr.Bins == 0 {
		return nil, fmt.Errorf("train: the trace is empty")
	}
	spec := opt.defaults(tr)
	if spec.BinSeconds != tr.Bin.Seconds() {
		return nil, fmt.Errorf("train: spec bin %vs differs from the trace's %v", spec.BinSeconds, tr.Bin)
	}
	if err := spec.Validate(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	var resume *checkpoint
	if len(opt.Checkpoint) > 0 {
		resume = &checkpoint{}
		if err := gob.NewDecoder(bytes.NewReader(opt.Checkpoint)).Decode(resume); err != nil {
			return nil, fmt.Errorf("train: checkpoint is unreadable: %w", err)
		}
		if opt.Version == "" {
			opt.Version = resume.Version
		}
	}
	if opt.Version == "" {
		opt.Version = "demand-" + time.Now().UTC().Format("20060102T150405Z")
	}
	ds, err := buildDataset(tr, spec, opt)
	if err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	rng := rand.New(rand.NewPCG(opt.Seed, 1))
	model := newLSTM(spec.NumFeatures(), spec.Hidden, rng)
	adam := newAdam(model, opt.LR)
	st := checkpoint{Format: checkpointFormat, Version: opt.Version, OptionsHash: optionsHash(spec, opt), DataHash: ds.fingerprint(),
		BestVal: math.Inf(1)}
	res := &Result{Spec: spec, Version: opt.Version, TrainSeqs: len(ds.train), ValSeqs: len(ds.val)}
	if resume != nil {
		cp := *resume
		switch {
		case cp.Version != opt.Version:
			return nil, fmt.Errorf("train: checkpoint is of model %q, not %q", cp.Version, opt.Version)
		case cp.Format != checkpointFormat:
			return nil, fmt.Errorf("train: checkpoint format %q, want %q", cp.Format, checkpointFormat)
		case cp.OptionsHash != st.OptionsHash:
			return nil, fmt.Errorf("train: checkpoint belongs to a run with other options (spec, range, samples, seed)")
		case cp.DataHash != st.DataHash:
			return nil, fmt.Errorf("train: checkpoint belongs to other training data")
		}
		if err := setParams(model, cp.Params); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		if err := adam.restore(cp.AdamM, cp.AdamV, cp.Step); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		st = cp
		res.Resumed = true
		opt.Logger.Info("resuming demand training", "version", opt.Version, "after_epoch", cp.Epoch)
	}
	best := model.clone()
	if st.Best != nil {
		if err := setParams(best, st.Best); err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
	}

	tr32 := newTrainer(model, ds, opt.Workers, opt.BatchSize)
	var lastCP []byte // latest epoch-end state, repeated in every report
	lastVal := math.NaN()
	if resume != nil {
		lastCP = opt.Checkpoint
	}
	T, F := spec.SeqLen, spec.NumFeatures()
	order := make([]int, len(ds.train))
	batches := (len(order) + opt.BatchSize - 1) / opt.BatchSize
	for st.Epoch < opt.Epochs && st.SinceBest < opt.Patience {
		epoch := st.Epoch + 1
		// Per-epoch shuffle derived from the seed: a resumed run shuffles identically.
		erng := rand.New(rand.NewPCG(opt.Seed, uint64(epoch)+100))
		for i := range order {
			order[i] = i
		}
		erng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		start := time.Now()
		lastReport := start
		var lossSum float64
		var seen int
		for b := range batches {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			idx := order[b*opt.BatchSize : min((b+1)*opt.BatchSize, len(order))]
			loss := tr32.step(idx)
			if math.IsNaN(loss) {
				return nil, fmt.Errorf("train: loss became NaN at epoch %d batch %d (lower the learning rate)", epoch, b)
			}
			adam.update(model, tr32.grad)
			lossSum += loss * float64(len(idx))
			seen += len(idx)
			if progress != nil && time.Since(lastReport) >= opt.ProgressEvery {
				lastReport = time.Now()
				progress(Progress{Epoch: epoch, Epochs: opt.Epochs, Batch: b + 1, Batches: batches,
					TrainLoss: lossSum / float64(seen), ValLoss: lastVal, BestValLoss: nanIfInf(st.BestVal),
					SeqPerSec: float64(seen) / time.Since(start).Seconds(), Checkpoint: lastCP})
			}
		}
		secs := time.Since(start).Seconds()
		st.TrainSecs += secs
		st.TrainSeqs += seen
		val := tr32.loss(ds.val, T, F)
		lastVal = val
		st.Epoch = epoch
		st.Step = adam.step
		if val < st.BestVal-1e-5 {
			st.BestVal, st.BestEpoch, st.SinceBest = val, epoch, 0
			best = model.clone()
		} else {
			st.SinceBest++
		}
		res.TrainLoss = lossSum / float64(seen)
		opt.Logger.Info("demand epoch", "epoch", epoch, "train_loss", res.TrainLoss, "val_loss", val,
			"best_epoch", st.BestEpoch, "seq_per_s", math.Round(float64(seen)/secs))
		if progress != nil {
			st.Params, st.Best = copyParams(model), copyParams(best)
			st.AdamM, st.AdamV = adam.m, adam.v
			var buf bytes.Buffer
			if err := gob.NewEncoder(&buf).Encode(&st); err != nil {
				return nil, fmt.Errorf("train: encode checkpoint: %w", err)
			}
			lastCP = buf.Bytes()
			progress(Progress{Epoch: epoch, Epochs: opt.Epochs, Batch: batches, Batches: batches,
				TrainLoss: res.TrainLoss, ValLoss: val, BestValLoss: st.BestVal,
				SeqPerSec: float64(seen) / secs, Checkpoint: lastCP})
		}
	}
	res.Epochs, res.BestEpoch = st.Epoch, st.BestEpoch
	if st.TrainSecs > 0 {
		res.SeqPerSec = float64(st.TrainSeqs) / st.TrainSecs
	}
	// Platt scaling on the validation points, folded into the read-out.
	logits, ys := newTrainer(best, ds, opt.Workers, opt.BatchSize).logits(ds.val, T, F)
	a, c := fitPlatt(logits, ys)
	for j := range best.Wout {
		best.Wout[j] *= float32(a)
	}
	best.Bout[0] = best.Bout[0]*float32(a) + float32(c)
	res.Calibration = [2]float64{a, c}
	res.model = best
	res.ValLoss = newTrainer(best, ds, opt.Workers, opt.BatchSize).loss(ds.val, T, F)
	if err := best.check(); err != nil {
		return nil, fmt.Errorf("train: %w", err)
	}
	return res, nil
}

func nanIfInf(v float64) float64 {
	if math.IsInf(v, 0) {
		return math.NaN()
	}
	return v
}

// fitPlatt fits p = sigmoid(a*logit + c) by Newton's method on log loss.
func fitPlatt(z []float64, y []bool) (a, c float64) {
	a, c = 1, 0
	for range 50 {
		var ga, gc, haa, hac, hcc float64
		for i, zi := range z {
			p := 1 / (1 + math.Exp(-(a*zi + c)))
			d := p - models.B2F(y[i])
			w := max(p*(1-p), 1e-12)
			ga += d * zi
			gc += d
			haa += w * zi * zi
			hac += w * zi
			hcc += w
		}
		det := haa*hcc - hac*hac
		if det <= 1e-12 {
			break
		}
		da := (hcc*ga - hac*gc) / det
		dc := (haa*gc - hac*ga) / det
		a -= da
		c -= dc
		if math.Abs(da)+math.Abs(dc) < 1e-9 {
			break
		}
	}
	if !models.Finite(a) || !models.Finite(c) || a <= 0 {
		return 1, 0
	}
	return a, c
}

// trainer computes mini-batch gradients with W workers, each over a fixed
// contiguous share of the batch, summed in worker order: deterministic.
type trainer struct {
	m       *lstm
	ds      *dataset
	workers []*worker
	grad    *lstm
	bs      int
}

type worker struct {
	idle   *IdleTimes
	tape   lstmTape
	grad   *lstm
	x      []float32
	dlogit []float32
	loss   float64
}

func (w *worker) idleFor(ds *dataset) *IdleTimes {
	if w.idle == nil {
		w.idle = ds.newIdle()
	}
	return w.idle
}

func newTrainer(m *lstm, ds *dataset, workers, bs int) *trainer {
	t := &trainer{m: m, ds: ds, bs: bs, grad: zeroLike(m)}
	for range workers {
		t.workers = append(t.workers, &worker{grad: zeroLike(m)})
	}
	return t
}

func zeroLike(m *lstm) *lstm {
	return &lstm{F: m.F, H: m.H, WT: make([]float32, len(m.WT)), RT: make([]float32, len(m.RT)),
		B: make([]float32, len(m.B)), Wout: make([]float32, len(m.Wout)), Bout: make([]float32, 1)}
}

func zeroParams(m *lstm) {
	for _, p := range m.params() {
		clear(p)
	}
}

// parts splits n items into len(workers) contiguous shares.
func (t *trainer) parts(n int) [][2]int {
	w := len(t.workers)
	out := make([][2]int, w)
	for i := range w {
		out[i] = [2]int{n * i / w, n * (i + 1) / w}
	}
	return out
}

// step computes the mean loss and the gradient of the mean loss (into t.grad)
// over the training samples idx.
func (t *trainer) step(idx []int) float64 {
	spec := t.ds.spec
	T, F := spec.SeqLen, spec.NumFeatures()
	var wg sync.WaitGroup
	for wi, p := range t.parts(len(idx)) {
		w := t.workers[wi]
		wg.Go(func() {
			zeroParams(w.grad)
			w.loss = 0
			n := p[1] - p[0]
			if n == 0 {
				return
			}
			w.x = growF(w.x, n*T*F)
			w.dlogit = growF(w.dlogit, n)
			ys := make([]bool, n)
			for k, i := range idx[p[0]:p[1]] {
				s := t.ds.train[i]
				t.ds.encode(w.x[k*T*F:(k+1)*T*F], s, w.idleFor(t.ds))
				ys[k] = s.y
			}
			t.m.forward(&w.tape, w.x, n, T)
			for k := range n {
				z := float64(w.tape.logit[k])
				w.loss += bce(z, ys[k])
				// Gradient of the batch-mean loss.
				w.dlogit[k] = float32((1/(1+math.Exp(-z)) - models.B2F(ys[k])) / float64(len(idx)))
			}
			t.m.backward(&w.tape, w.dlogit[:n], w.grad)
		})
	}
	wg.Wait()
	zeroParams(t.grad)
	var loss float64
	gp := t.grad.params()
	for _, w := range t.workers {
		loss += w.loss
		for k, p := range w.grad.params() {
			for j, v := range p {
				gp[k][j] += v
			}
		}
	}
	return loss / float64(len(idx))
}

// logits runs the model over samples (in parallel, deterministic order).
func (t *trainer) logits(samples []sample, T, F int) ([]float64, []bool) {
	z := make([]float64, len(samples))
	ys := make([]bool, len(samples))
	const chunk = 256
	var wg sync.WaitGroup
	for wi, p := range t.parts(len(samples)) {
		w := t.workers[wi]
		wg.Go(func() {
			for s := p[0]; s < p[1]; s += chunk {
				e := min(s+chunk, p[1])
				n := e - s
				w.x = growF(w.x, n*T*F)
				for k := range n {
					t.ds.encode(w.x[k*T*F:(k+1)*T*F], samples[s+k], w.idleFor(t.ds))
					ys[s+k] = samples[s+k].y
				}
				t.m.forward(&w.tape, w.x, n, T)
				for k := range n {
					z[s+k] = float64(w.tape.logit[k])
				}
			}
		})
	}
	wg.Wait()
	return z, ys
}

func (t *trainer) loss(samples []sample, T, F int) float64 {
	z, ys := t.logits(samples, T, F)
	var s float64
	for i := range z {
		s += bce(z[i], ys[i])
	}
	return s / float64(len(z))
}

// bce is the binary cross-entropy of logit z, computed stably.
func bce(z float64, y bool) float64 {
	// log(1+exp(-|z|)) + max(z,0) - z*y
	l := math.Log1p(math.Exp(-math.Abs(z))) + max(z, 0)
	if y {
		l -= z
	}
	return l
}

func growF(s []float32, n int) []float32 {
	if cap(s) < n {
		return make([]float32, n)
	}
	return s[:n]
}

// adam is the Adam optimiser with global-norm gradient clipping.
type adam struct {
	lr, b1, b2, eps float64
	clip            float64
	step            int
	m, v            [][]float32
}

func newAdam(model *lstm, lr float64) *adam {
	a := &adam{lr: lr, b1: 0.9, b2: 0.999, eps: 1e-8, clip: 1}
	for _, p := range model.params() {
		a.m = append(a.m, make([]float32, len(p)))
		a.v = append(a.v, make([]float32, len(p)))
	}
	return a
}

func (a *adam) restore(m, v [][]float32, step int) error {
	if len(m) != len(a.m) || len(v) != len(a.v) {
		return fmt.Errorf("checkpoint optimiser state has the wrong shape")
	}
	for i := range m {
		if len(m[i]) != len(a.m[i]) || len(v[i]) != len(a.v[i]) {
			return fmt.Errorf("checkpoint optimiser tensor %d has the wrong size", i)
		}
	}
	a.m, a.v, a.step = m, v, step
	return nil
}

// update applies grad (gradient of the mean loss) to model.
func (a *adam) update(model *lstm, grad *lstm) {
	a.step++
	gs := grad.params()
	var norm float64
	for _, g := range gs {
		for _, v := range g {
			norm += float64(v) * float64(v)
		}
	}
	norm = math.Sqrt(norm)
	scale := 1.0
	if norm > a.clip {
		scale = a.clip / norm
	}
	bc1 := 1 - math.Pow(a.b1, float64(a.step))
	bc2 := 1 - math.Pow(a.b2, float64(a.step))
	lr := float32(a.lr * math.Sqrt(bc2) / bc1)
	b1, b2, eps := float32(a.b1), float32(a.b2), float32(a.eps)
	for k, p := range model.params() {
		m, v, g := a.m[k], a.v[k], gs[k]
		for j := range p {
			gj := g[j] * float32(scale)
			m[j] = b1*m[j] + (1-b1)*gj
			v[j] = b2*v[j] + (1-b2)*gj*gj
			p[j] -= lr * m[j] / (float32(math.Sqrt(float64(v[j]))) + eps)
		}
	}
}

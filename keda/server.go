package keda

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"

	"github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// AppKey is the ScaledObject trigger metadata key naming the application.
const AppKey = "app"

// Server answers KEDA's ExternalScaler calls from a Registry.
type Server struct {
	externalscaler.UnimplementedExternalScalerServer
	reg  *Registry
	log  *slog.Logger
	done chan struct{}
	once sync.Once
}

// NewServer is a scaler answering from reg.
func NewServer(reg *Registry, log *slog.Logger) *Server {
	if log == nil {
		log = slog.Default()
	}
	return &Server{reg: reg, log: log, done: make(chan struct{})}
}

// Register adds the scaler to g.
func (s *Server) Register(g *grpc.Server) { externalscaler.RegisterExternalScalerServer(g, s) }

// Close ends every open StreamIsActive, so a graceful stop does not wait
// for KEDA to hang up.
func (s *Server) Close() { s.once.Do(func() { close(s.done) }) }

func appOf(ref *externalscaler.ScaledObjectRef) (string, error) {
	app := strings.TrimSpace(ref.GetScalerMetadata()[AppKey])
	if app == "" {
		return "", status.Errorf(codes.InvalidArgument, "ScaledObject %s/%s: trigger metadata %q is missing: name the application the prediction loop runs for",
			ref.GetNamespace(), ref.GetName(), AppKey)
	}
	return app, nil
}

// MetricName is app's metric: its live warm windows.
func MetricName(app string) string {
	var b strings.Builder
	b.WriteString("forewarm-warm-")
	for _, c := range strings.ToLower(app) {
		if c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' {
			b.WriteRune(c)
		} else {
			b.WriteByte('-') // metric names are DNS-label-like
		}
	}
	return b.String()
}

// IsActive is whether app has a live warm window.
func (s *Server) IsActive(_ context.Context, ref *externalscaler.ScaledObjectRef) (*externalscaler.IsActiveResponse, error) {
	app, err := appOf(ref)
	if err != nil {
		return nil, err
	}
	st := s.reg.State(app)
	if st.Live > 0 {
		s.reg.Told(app, st.Seq)
	}
	return &externalscaler.IsActiveResponse{Result: st.Live > 0}, nil
}

// StreamIsActive sends app's state at once, then each change: on the
// registry's notification and at a window's expiry.
func (s *Server) StreamIsActive(ref *externalscaler.ScaledObjectRef, stream externalscaler.ExternalScaler_StreamIsActiveServer) error {
	app, err := appOf(ref)
	if err != nil {
		return err
	}
	ctx := stream.Context()
	first, last, lastSeq := true, false, uint64(0)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		changed := s.reg.Changed() // before the state, so no change is missed
		st := s.reg.State(app)
		active := st.Live > 0
		// A window opened since the last "true" is sent too, so the
		// driver's shadow learns that KEDA heard of it.
		if first || active != last || active && st.Seq != lastSeq {
			if err := stream.Send(&externalscaler.IsActiveResponse{Result: active}); err != nil {
				return err
			}
			if active {
				s.reg.Told(app, st.Seq)
			}
			first, last, lastSeq = false, active, st.Seq
		}
		timer.Reset(time.Hour)
		if active {
			timer.Reset(max(time.Millisecond, st.NextExpiry.Sub(s.reg.Now())))
		}
		select {
		case <-changed:
		case <-timer.C:
		case <-ctx.Done():
			return nil
		case <-s.done:
			return nil
		}
	}
}

// GetMetricSpec is app's one metric, target 1: KEDA asks for one replica
// per live window.
func (s *Server) GetMetricSpec(_ context.Context, ref *externalscaler.ScaledObjectRef) (*externalscaler.GetMetricSpecResponse, error) {
	app, err := appOf(ref)
	if err != nil {
		return nil, err
	}
	return &externalscaler.GetMetricSpecResponse{MetricSpecs: []*externalscaler.MetricSpec{
		{MetricName: MetricName(app), TargetSize: 1, TargetSizeFloat: 1}}}, nil
}

// GetMetrics is app's live windows.
func (s *Server) GetMetrics(_ context.Context, req *externalscaler.GetMetricsRequest) (*externalscaler.GetMetricsResponse, error) {
	app, err := appOf(req.GetScaledObjectRef())
	if err != nil {
		return nil, err
	}
	n := s.reg.State(app).Live
	return &externalscaler.GetMetricsResponse{MetricValues: []*externalscaler.MetricValue{
		{MetricName: MetricName(app), MetricValue: int64(n), MetricValueFloat: float64(n)}}}, nil
}

// Serve serves s on a new gRPC server over ln (plain gRPC: a
// cluster-internal port). The returned stop ends the streams and stops
// the server, waiting at most five seconds for unary calls.
func Serve(s *Server, ln net.Listener) (stop func()) {
	g := grpc.NewServer()
	s.Register(g)
	go func() {
		if err := g.Serve(ln); err != nil {
			s.log.Error("KEDA scaler stopped", "err", err)
		}
	}()
	return func() {
		s.Close()
		done := make(chan struct{})
		go func() { g.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			g.Stop()
		}
	}
}

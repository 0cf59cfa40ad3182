package keda

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/kedacore/keda/v2/pkg/scalers/externalscaler"
	"github.com/stretchr/testify/require"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
)

// startScaler serves a scaler over reg on loopback and returns KEDA's own
// generated client of it.
func startScaler(t *testing.T, reg *Registry) externalscaler.ExternalScalerClient {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	stop := Serve(NewServer(reg, nil), ln)
	t.Cleanup(stop)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	return externalscaler.NewExternalScalerClient(conn)
}

func ref(app string) *externalscaler.ScaledObjectRef {
	return &externalscaler.ScaledObjectRef{Name: "web", Namespace: "shop", ScalerMetadata: map[string]string{AppKey: app}}
}

func TestScalerAnswersFromTheRegistry(t *testing.T) {
	clk := newFakeClock()
	reg := NewRegistry(clk.Now)
	c := startScaler(t, reg)
	ctx := context.Background()

	act, err := c.IsActive(ctx, ref("shop-web"))
	require.NoError(t, err)
	require.False(t, act.Result)

	spec, err := c.GetMetricSpec(ctx, ref("shop-web"))
	require.NoError(t, err)
	require.Len(t, spec.MetricSpecs, 1)
	require.Equal(t, "forewarm-warm-shop-web", spec.MetricSpecs[0].MetricName)
	require.EqualValues(t, 1, spec.MetricSpecs[0].TargetSize)
	require.EqualValues(t, 1, spec.MetricSpecs[0].TargetSizeFloat)

	metrics := func() int64 {
		m, err := c.GetMetrics(ctx, &externalscaler.GetMetricsRequest{ScaledObjectRef: ref("shop-web"), MetricName: spec.MetricSpecs[0].MetricName})
		require.NoError(t, err)
		require.Len(t, m.MetricValues, 1)
		require.Equal(t, spec.MetricSpecs[0].MetricName, m.MetricValues[0].MetricName)
		require.Equal(t, float64(m.MetricValues[0].MetricValue), m.MetricValues[0].MetricValueFloat)
		return m.MetricValues[0].MetricValue
	}
	require.EqualValues(t, 0, metrics())

	require.NoError(t, reg.Open("shop-web", "l1", clk.Now().Add(time.Minute)))
	require.NoError(t, reg.Open("shop-web", "l2", clk.Now().Add(2*time.Minute)))
	act, err = c.IsActive(ctx, ref("shop-web"))
	require.NoError(t, err)
	require.True(t, act.Result)
	require.EqualValues(t, 2, metrics(), "one replica per live window")
	_, told, _ := reg.toldOf("l2")
	require.True(t, told, "an IsActive answer true tells KEDA of the windows")

	other, err := c.IsActive(ctx, ref("other"))
	require.NoError(t, err)
	require.False(t, other.Result)

	clk.Add(time.Minute)
	require.EqualValues(t, 1, metrics(), "l1 expired")
	_, err = reg.Close("l2")
	require.NoError(t, err)
	act, err = c.IsActive(ctx, ref("shop-web"))
	require.NoError(t, err)
	require.False(t, act.Result)
	require.EqualValues(t, 0, metrics())
}

func TestScalerRefusesAMissingAppKey(t *testing.T) {
	c := startScaler(t, NewRegistry(nil))
	ctx := context.Background()
	noApp := &externalscaler.ScaledObjectRef{Name: "web", Namespace: "shop", ScalerMetadata: map[string]string{"scalerAddress": "x:1"}}
	check := func(err error) {
		t.Helper()
		require.Equal(t, codes.InvalidArgument, status.Code(err), "%v", err)
		require.Contains(t, status.Convert(err).Message(), `"app"`)
		require.Contains(t, status.Convert(err).Message(), "shop/web")
	}
	_, err := c.IsActive(ctx, noApp)
	check(err)
	_, err = c.GetMetricSpec(ctx, noApp)
	check(err)
	_, err = c.GetMetrics(ctx, &externalscaler.GetMetricsRequest{ScaledObjectRef: noApp})
	check(err)
	s, err := c.StreamIsActive(ctx, noApp)
	require.NoError(t, err)
	_, err = s.Recv()
	check(err)
}

func TestStreamPushesEveryChange(t *testing.T) {
	reg := NewRegistry(nil) // the real clock: expiries fire on their own
	c := startScaler(t, reg)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := c.StreamIsActive(ctx, ref("a"))
	require.NoError(t, err)

	type push struct {
		active bool
		at     time.Time
	}
	pushes := make(chan push, 16)
	errs := make(chan error, 1)
	go func() {
		for {
			r, err := s.Recv()
			if err != nil {
				errs <- err
				return
			}
			pushes <- push{r.Result, time.Now()}
		}
	}()
	next := func(what string) push {
		t.Helper()
		select {
		case p := <-pushes:
			return p
		case <-time.After(5 * time.Second):
			t.Fatalf("no push for %s within 5 s", what)
		}
		return push{}
	}

	require.False(t, next("the current state").active, "the current state at once")

	start := time.Now()
	require.NoError(t, reg.Open("a", "l1", time.Now().Add(time.Hour)))
	p := next("the open")
	require.True(t, p.active)
	openLatency := p.at.Sub(start)

	start = time.Now()
	_, err = reg.Close("l1")
	require.NoError(t, err)
	p = next("the close")
	require.False(t, p.active)
	closeLatency := p.at.Sub(start)

	// An expiry is pushed with no call at all.
	require.NoError(t, reg.Open("a", "l2", time.Now().Add(300*time.Millisecond)))
	require.True(t, next("the second open").active)
	expiry := time.Now().Add(300 * time.Millisecond)
	p = next("the expiry")
	require.False(t, p.active)
	expiryLatency := p.at.Sub(expiry)

	// Another app's change is not pushed to this stream.
	require.NoError(t, reg.Open("b", "b1", time.Now().Add(time.Hour)))
	select {
	case p := <-pushes:
		t.Fatalf("pushed %v for another app's window", p.active)
	case <-time.After(200 * time.Millisecond):
	}

	t.Logf("push latency: open %v, close %v, expiry %v after it", openLatency, closeLatency, expiryLatency)
	// Generous bounds (the contract is within a second); the order and
	// values above are the real assertions.
	require.Less(t, openLatency, time.Second)
	require.Less(t, closeLatency, time.Second)
	require.Less(t, expiryLatency, time.Second)

	cancel()
	select {
	case err := <-errs:
		require.Equal(t, codes.Canceled, status.Code(err))
	case <-time.After(5 * time.Second):
		t.Fatal("the stream did not end with its context")
	}
}

func TestStopEndsOpenStreams(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	stop := Serve(NewServer(NewRegistry(nil), nil), ln)
	conn, err := grpc.NewClient(ln.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	require.NoError(t, err)
	defer conn.Close()
	s, err := externalscaler.NewExternalScalerClient(conn).StreamIsActive(context.Background(), ref("a"))
	require.NoError(t, err)
	_, err = s.Recv()
	require.NoError(t, err)
	begin := time.Now()
	stop()
	require.Less(t, time.Since(begin), 4*time.Second, "a stop must not wait for KEDA to hang up")
	_, err = s.Recv()
	require.Error(t, err)
}

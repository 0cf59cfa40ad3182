package gateway_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forewarm/forewarm/gateway"
	"github.com/forewarm/forewarm/store"
)

// An application served elsewhere (a Kubernetes Service): its requests
// are counted for the loops and passed on with their path and query;
// without any host agent or agent trust.
func TestUpstreamRequestsAreCountedAndPassedOn(t *testing.T) {
	var mu sync.Mutex
	var got []string
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.URL.RequestURI()+" "+r.Header.Get("X-Forwarded-Host"))
		mu.Unlock()
		io.WriteString(w, "from the service")
	}))
	defer up.Close()
	u, _ := url.Parse(up.URL + "/base")
	var batches []store.ArrivalBatch
	cfg := gateway.Config{ID: "gw-test", Bin: time.Second, Upstreams: map[string]*url.URL{"shop": u},
		Arrivals: func(_ context.Context, b store.ArrivalBatch) error {
			mu.Lock()
			batches = append(batches, b)
			mu.Unlock()
			return nil
		}}
	g, err := gateway.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(g)
	defer srv.Close()
	for range 3 {
		resp, err := http.Get(srv.URL + "/shop/cart/items?id=7")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "from the service" {
			t.Fatalf("answer %d %q", resp.StatusCode, b)
		}
	}
	if resp, err := http.Get(srv.URL + "/other/x"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Fatalf("unknown app: %v %v", resp, err)
	}
	if err := g.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	if len(got) != 3 || got[0] != "/base/cart/items?id=7 "+srv.Listener.Addr().String() {
		t.Errorf("the service saw %q, want /base/cart/items?id=7 three times", got)
	}
	n := 0
	for _, b := range batches {
		for _, r := range b.Rows {
			if r.App == "shop" {
				n += int(r.Requests)
			}
		}
	}
	if n != 3 {
		t.Errorf("arrivals counted %d requests of shop, want 3 (batches %+v)", n, batches)
	}
	mu.Unlock()

	// A dead upstream is the gateway's bad_gateway, naming the app.
	up.Close()
	g2, err := gateway.New(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv2 := httptest.NewServer(g2)
	defer srv2.Close()
	resp, err := http.Get(srv2.URL + "/shop/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadGateway || !strings.Contains(string(b), `"code":"bad_gateway"`) || !strings.Contains(string(b), `"app":"shop"`) {
		t.Errorf("dead upstream: %d %s", resp.StatusCode, b)
	}
	_ = g2.Close(context.Background())
}

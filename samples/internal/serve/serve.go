// Package serve runs a sample's HTTP server until SIGTERM or SIGINT and
// then shuts it down gracefully: it stops accepting, lets the requests in
// flight finish (at most Grace) and closes idle connections, including those
// a client opened and never sent a request on, which net/http's Shutdown
// would otherwise wait five seconds for.
package serve

import (
	"context"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"
)

// Grace bounds how long the requests in flight have after SIGTERM; it is
// well inside a spec's stop_grace (default 5s).
const Grace = 3 * time.Second

// Listen listens on 127.0.0.1:$PORT (8080 when PORT is unset): a sample
// never listens on another address.
func Listen() (net.Listener, error) {
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	return net.Listen("tcp", net.JoinHostPort("127.0.0.1", port))
}

// Run serves h on ln until SIGTERM or SIGINT, then shuts down.
func Run(ln net.Listener, h http.Handler) error {
	var mu sync.Mutex
	fresh := map[net.Conn]time.Time{} // connections that have sent no request yet
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		IdleTimeout:       60 * time.Second,
		ConnState: func(c net.Conn, s http.ConnState) {
			mu.Lock()
			defer mu.Unlock()
			if s == http.StateNew {
				fresh[c] = time.Now()
			} else {
				delete(fresh, c)
			}
		},
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}

	shutdown, cancel := context.WithTimeout(context.Background(), Grace)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Shutdown(shutdown) }()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case err := <-done:
			if err != nil {
				log.Printf("shutdown: %v; closing what is left", err)
				srv.Close()
			}
			return nil
		case <-tick.C:
			// A connection that has not sent a byte for 100ms after the
			// listener closed is one its client keeps spare: close it.
			mu.Lock()
			for c, since := range fresh {
				if time.Since(since) > 100*time.Millisecond {
					c.Close()
					delete(fresh, c)
				}
			}
			mu.Unlock()
		}
	}
}

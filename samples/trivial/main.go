// Command trivial is the smallest sample application: GET or POST / answers
// "ok" at once and GET /healthz answers 200. It starts in a few milliseconds
// and costs next to nothing per request, so a benchmark of the path in
// front of it (a gateway, an agent's proxy) measures that path.
//
//	PORT=8080 trivial
//
// The instance listens on 127.0.0.1:$PORT only and shuts down gracefully on
// SIGTERM or SIGINT.
package main

import (
	"io"
	"log"
	"net/http"

	"github.com/forewarm/forewarm/samples/internal/serve"
)

var (
	okBody     = []byte("ok\n")
	healthBody = []byte(`{"ok":true}` + "\n")
)

func main() {
	log.SetFlags(0)
	log.SetPrefix("trivial: ")
	mux := http.NewServeMux()
	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut:
		default:
			w.Header().Set("Allow", "GET, HEAD, POST, PUT")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		// Read what the client sent (at most 1 MiB) so the connection can
		// be reused.
		io.Copy(io.Discard, io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "3")
		w.Write(okBody)
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(healthBody)
	})

	ln, err := serve.Listen()
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("listening on %s", ln.Addr())
	if err := serve.Run(ln, mux); err != nil {
		log.Fatal(err)
	}
}

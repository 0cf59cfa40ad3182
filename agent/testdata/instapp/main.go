// Command instapp is the test application of the agent's process-instance
// tests: a small HTTP server on 127.0.0.1:$PORT with endpoints that
// allocate memory, crash, sleep, echo and spawn a child.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"
)

var kept [][]byte

func main() {
	startDelay := flag.Duration("start-delay", 0, "wait this long before listening")
	readyPath := flag.String("ready-path", "/healthz", "readiness path")
	ignoreTerm := flag.Bool("ignore-term", false, "ignore SIGTERM")
	shadowStatus := flag.Int("shadow-status", 200, "status of /shadow")
	child := flag.Bool("child", false, "only sleep (a spawned child)")
	host := flag.String("host", "127.0.0.1", "address to listen on (0.0.0.0 inside a test's network namespace)")
	flag.Parse()
	if *child {
		for {
			time.Sleep(time.Hour)
		}
	}
	if *ignoreTerm {
		signal.Ignore(syscall.SIGTERM)
	}
	fmt.Println("instapp starting, pid", os.Getpid())
	time.Sleep(*startDelay)

	mux := http.NewServeMux()
	mux.HandleFunc(*readyPath, func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("/shadow", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.WriteHeader(*shadowStatus)
		fmt.Fprintf(w, "shadow %s %s %q", r.Method, r.Header.Get("Content-Type"), b)
	})
	mux.HandleFunc("/echo/", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Echo-Method", r.Method)
		w.Header().Set("X-Echo-Path", r.URL.Path)
		w.Header().Set("X-Echo-Query", r.URL.RawQuery)
		w.Header().Set("X-Saw-Authorization", strconv.FormatBool(r.Header.Get("Authorization") != ""))
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(b)
	})
	mux.HandleFunc("/status", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		w.WriteHeader(code)
		fmt.Fprintf(w, "status %d from the instance", code)
	})
	mux.HandleFunc("/alloc", func(w http.ResponseWriter, r *http.Request) {
		mb, _ := strconv.Atoi(r.URL.Query().Get("mb"))
		b := make([]byte, mb<<20)
		for i := 0; i < len(b); i += 4096 {
			b[i] = 1
		}
		kept = append(kept, b)
		fmt.Fprintf(w, "allocated %d MB\n", mb)
	})
	mux.HandleFunc("/exit", func(w http.ResponseWriter, r *http.Request) {
		code, _ := strconv.Atoi(r.URL.Query().Get("code"))
		os.Exit(code)
	})
	mux.HandleFunc("/sleep", func(w http.ResponseWriter, r *http.Request) {
		ms, _ := strconv.Atoi(r.URL.Query().Get("ms"))
		time.Sleep(time.Duration(ms) * time.Millisecond)
		fmt.Fprintln(w, "slept")
	})
	mux.HandleFunc("/whoami", func(w http.ResponseWriter, r *http.Request) {
		wd, _ := os.Getwd()
		_ = json.NewEncoder(w).Encode(map[string]any{
			"uid": os.Getuid(), "gid": os.Getgid(), "pid": os.Getpid(), "pgid": syscall.Getpgrp(), "wd": wd,
			"scratch": os.Getenv("FOREWARM_SCRATCH"), "app": os.Getenv("FOREWARM_APP"),
			"instance": os.Getenv("FOREWARM_INSTANCE"), "port": os.Getenv("PORT"), "home": os.Getenv("HOME"),
			"path": os.Getenv("PATH"), "greeting": os.Getenv("GREETING"),
		})
	})
	// spawn starts a child in a session of its own: it leaves the process
	// group, and Pdeathsig does not reach it.
	mux.HandleFunc("/spawn", func(w http.ResponseWriter, r *http.Request) {
		cmd := exec.Command(os.Args[0], "--child")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
		if err := cmd.Start(); err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		go func() { _ = cmd.Wait() }()
		fmt.Fprint(w, cmd.Process.Pid)
	})
	mux.HandleFunc("/write", func(w http.ResponseWriter, r *http.Request) {
		err := os.WriteFile(os.Getenv("FOREWARM_SCRATCH")+"/written", []byte("x"), 0o600)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		fmt.Fprintln(w, "written")
	})
	fmt.Fprintln(os.Stderr, "instapp listening on port", os.Getenv("PORT"))
	if err := http.ListenAndServe(*host+":"+os.Getenv("PORT"), mux); err != nil {
		fmt.Fprintln(os.Stderr, "instapp:", err)
		os.Exit(3)
	}
}

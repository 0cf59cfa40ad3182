// Package browser drives Debian's headless Chromium to look at pages the
// way an operator would: the rendered DOM and a screenshot. It is used by
// the Web UI tests; the flags keep Chromium off the (closed) network.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"
)

// Path is the Chromium binary the scripts install (deploy/local/install.sh browser).
func Path() (string, error) {
	for _, name := range []string{os.Getenv("CHROMIUM"), "chromium", "chromium-browser"} {
		if name == "" {
			continue
		}
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("chromium not found on PATH (install it with deploy/local/install.sh browser)")
}

// Page loads url and lets its scripts run for budget of virtual time.
type Page struct {
	URL    string
	Budget time.Duration // virtual time for the page's scripts (default 15 s)
	Width  int           // window size for screenshots (default 1400x900)
	Height int
}

func (p Page) args(profile string) []string {
	budget := p.Budget
	if budget == 0 {
		budget = 15 * time.Second
	}
	w, h := p.Width, p.Height
	if w == 0 {
		w, h = 1400, 900
	}
	return []string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + profile,
		"--virtual-time-budget=" + strconv.FormatInt(budget.Milliseconds(), 10),
		fmt.Sprintf("--window-size=%d,%d", w, h),
	}
}

func (p Page) run(ctx context.Context, extra ...string) ([]byte, error) {
	bin, err := Path()
	if err != nil {
		return nil, err
	}
	profile, err := os.MkdirTemp("", "forewarm-chromium-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(profile)
	args := append(p.args(profile), extra...)
	args = append(args, p.URL)
	cmd := exec.CommandContext(ctx, bin, args...)
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("chromium on %s: %w; stderr tail: %s", p.URL, err, stderr.tail())
	}
	return out, nil
}

// DOM returns the page's rendered DOM.
func (p Page) DOM(ctx context.Context) (string, error) {
	out, err := p.run(ctx, "--dump-dom")
	return string(out), err
}

// Screenshot saves a PNG of the page to file.
func (p Page) Screenshot(ctx context.Context, file string) error {
	abs, err := filepath.Abs(file)
	if err != nil {
		return err
	}
	if _, err := p.run(ctx, "--screenshot="+abs); err != nil {
		return err
	}
	if st, err := os.Stat(abs); err != nil || st.Size() == 0 {
		return fmt.Errorf("chromium wrote no screenshot to %s", abs)
	}
	return nil
}

// limitedBuffer keeps the last few KB of a stream (Chromium is chatty).
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	l.b = append(l.b, p...)
	if len(l.b) > 4096 {
		l.b = l.b[len(l.b)-4096:]
	}
	return len(p), nil
}

func (l *limitedBuffer) tail() string { return string(l.b) }

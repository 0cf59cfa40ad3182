// Package browser drives Debian's headless Chromium (through the DevTools
// protocol, with chromedp) to look at pages the way an operator would: wait
// until a text appears, read the page's text, take a screenshot. It is used
// by the Web UI tests; the flags keep Chromium off the (closed) network.
package browser

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/chromedp/chromedp"
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

// Browser is one headless Chromium with a fresh profile.
type Browser struct {
	ctx    context.Context
	cancel context.CancelFunc
}

// Start launches Chromium; Close ends it.
func Start(ctx context.Context, width, height int) (*Browser, error) {
	bin, err := Path()
	if err != nil {
		return nil, err
	}
	profile, err := os.MkdirTemp("", "forewarm-chromium-")
	if err != nil {
		return nil, err
	}
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(profile),
		chromedp.WindowSize(width, height),
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelBrowser := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil {
		cancelBrowser()
		cancelAlloc()
		os.RemoveAll(profile)
		return nil, fmt.Errorf("start chromium: %w", err)
	}
	return &Browser{ctx: bctx, cancel: func() { cancelBrowser(); cancelAlloc(); os.RemoveAll(profile) }}, nil
}

// Close ends the browser and removes its profile.
func (b *Browser) Close() { b.cancel() }

// WaitForText opens url (or stays on the current page when url is "") and waits until the page's visible text contains
// every one of want (the page keeps running its scripts meanwhile), then
// returns that text. The text of the page's frames counts too (the Web UI
// renders Markdown, such as a workflow's current details, in one). On
// timeout the error quotes the start of the text.
func (b *Browser) WaitForText(url string, within time.Duration, want ...string) (string, error) {
	ctx, cancel := context.WithTimeout(b.ctx, within)
	defer cancel()
	if url != "" {
		if err := chromedp.Do(ctx, chromedp.Navigate(url)); err != nil {
			return "", fmt.Errorf("open %s: %w", url, err)
		}
	}
	var text string
	for {
		t, err := chromedp.Run(ctx, chromedp.Evaluate[string](pageText))
		if err == nil {
			text = t
		}
		if err == nil && containsAll(text, want) {
			return text, nil
		}
		select {
		case <-ctx.Done():
			return text, fmt.Errorf("page %q did not show %q within %v; it shows: %.300q", url, want, within, text)
		case <-time.After(500 * time.Millisecond):
		}
	}
}

// pageText is the visible text of the page and of its same-origin frames.
const pageText = `(() => {
	const parts = [document.body ? document.body.innerText : ""];
	for (const f of document.querySelectorAll("iframe")) {
		try { if (f.contentDocument && f.contentDocument.body) parts.push(f.contentDocument.body.innerText); } catch (e) {}
	}
	return parts.join("\n");
})()`

// Click clicks the first button, link or tab whose text is label, as an
// operator would to open a tab of the page.
func (b *Browser) Click(label string) error {
	ctx, cancel := context.WithTimeout(b.ctx, 10*time.Second)
	defer cancel()
	js := fmt.Sprintf(`(() => {
		const el = Array.from(document.querySelectorAll('button, a, [role=tab]')).find(e => e.innerText.trim() === %q);
		if (!el) return false;
		el.click();
		return true;
	})()`, label)
	ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](js))
	if err != nil {
		return fmt.Errorf("click %q: %w", label, err)
	}
	if !ok {
		return fmt.Errorf("no button, link or tab labelled %q on the page", label)
	}
	return nil
}

// Screenshot saves a PNG of the current page to file.
func (b *Browser) Screenshot(file string) error {
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100)) // quality 100 gives a PNG, lower a JPEG
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return os.WriteFile(file, png, 0o644)
}

func containsAll(s string, want []string) bool {
	for _, w := range want {
		if !strings.Contains(s, w) {
			return false
		}
	}
	return true
}

package main

import (
	"io"
	"strings"
	"testing"
)

// --upstream names the app and an http(s) URL; a mistake names the flag.
// With upstreams only, no agent credential is asked for.
func TestUpstreamFlags(t *testing.T) {
	s, err := parse([]string{"--upstream", "shop=http://shop.apps.svc:80", "--upstream", "cart=https://cart.apps.svc/api", "--spool", "off"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ups, err := s.upstreams()
	if err != nil || len(ups) != 2 || ups["cart"].Path != "/api" || ups["shop"].Host != "shop.apps.svc:80" {
		t.Fatalf("upstreams %v, %v", ups, err)
	}
	for _, c := range []struct{ arg, want string }{
		{"shop", "want app=url"},
		{"shop=ftp://x", "must be http:// or https://"},
		{"shop=http://", "with a host"},
		{"a b=http://x", "--upstream"},
	} {
		_, err := parse([]string{"--upstream", c.arg, "--spool", "off"}, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "--upstream") {
			t.Errorf("--upstream %q: %v, want an error naming the flag and %q", c.arg, err, c.want)
		}
	}
	if _, err := parse([]string{"--upstream", "a=http://x", "--upstream", "a=http://y", "--spool", "off"}, io.Discard); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Errorf("twice: %v", err)
	}
}

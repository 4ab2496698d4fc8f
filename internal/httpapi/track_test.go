package httpapi

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

func TestTrackRecordsPageViewsAndSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.pageview("shop", shopOrigin+"/products/42?utm_source=mail&email=a@b.example#top", "", map[string]string{
		"Origin": shopOrigin, "X-Forwarded-For": londonIP,
	})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	m := r.json(t)
	token, _ := m["token"].(string)
	if m["tracked"] != true || token == "" {
		t.Fatalf("body %s", r.body)
	}
	ck := r.cookie("vt_shop")
	if ck == nil || ck.Value != token || !ck.HttpOnly {
		t.Fatalf("identity cookie %+v", ck)
	}
	if got := r.header.Get("Access-Control-Allow-Origin"); got != shopOrigin {
		t.Errorf("Access-Control-Allow-Origin = %q", got)
	}
	id := e.visitorID("shop", token)
	items := e.session("shop", id)
	if len(items) != 2 || !strings.HasPrefix(items[0], "#") {
		t.Fatalf("session items %q", items)
	}
	if !strings.Contains(items[1], "\t"+shopOrigin+"/products/42?utm_source=mail\t") {
		t.Errorf("stored page %q: want the query minimised and the fragment dropped", items[1])
	}

	// A second page 10 s later closes the first page's time.
	e.clock.Advance(10 * time.Second)
	e.mustTrack("shop", shopOrigin+"/cart", token)
	items = e.session("shop", id)
	if len(items) != 3 {
		t.Fatalf("session items %q", items)
	}
	if f := strings.Split(items[1], "\t"); f[1] != "10000" {
		t.Errorf("time on first page = %s ms, want 10000", f[1])
	}
	p := e.current("shop", id)
	if p["np"] != "2" || p["ns"] != "1" || p["br"] != "Chrome" || p["os"] == "" {
		t.Errorf("profile %v", p)
	}
	if got := e.stats("shop")["tracked"]; got != "2" {
		t.Errorf("tracked counter = %q", got)
	}
}

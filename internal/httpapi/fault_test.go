package httpapi

import (
	"net/http"
	"testing"
	"time"
)

// With Redis gone, a page view answers 503 store_unavailable within the track
// timeout, /readyz fails, and both recover once Redis is back.
func TestTrackWithRedisDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *envOptions) { o.trackTimeout, o.storeTimeout = 150*time.Millisecond, 150*time.Millisecond })
	token := e.mustTrack("shop", shopOrigin+"/", "")
	e.redis.Stop()

	start := time.Now()
	r := e.pageview("shop", shopOrigin+"/cart", token, nil)
	elapsed := time.Since(start)
	if got, want := r.status, http.StatusServiceUnavailable; got != want {
		t.Fatalf("status %d, want %d: %s", got, want, r.body)
	}
	if got, want := r.errorCode(t), "store_unavailable"; got != want {
		t.Errorf("code %q, want %q", got, want)
	}
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After on 503")
	}
	// Generous bound: the budget is 150 ms; a hung request would take seconds.
	if elapsed > 2*time.Second {
		t.Errorf("503 took %s", elapsed)
	}
	if got := e.do(req{method: http.MethodGet, path: "/readyz"}).status; got != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down = %d", got)
	}

	e.redis.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = e.pageview("shop", shopOrigin+"/cart", "", nil)
		if r.status == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.status != http.StatusOK {
		t.Fatalf("after Redis came back: status %d: %s", r.status, r.body)
	}
	if got := e.do(req{method: http.MethodGet, path: "/readyz"}).status; got != http.StatusOK {
		t.Errorf("/readyz after recovery = %d", got)
	}
}

package httpapi

import (
	"net/http"
	"testing"
)

// HEAD on /healthz, /readyz, /v1/widget.js and / answers like GET without a
// body, not 405 (issue 18).
func TestHead(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	for _, path := range []string{"/healthz", "/readyz", "/v1/widget.js", "/"} {
		// The same Accept-Encoding for both: Go's client asks GETs for gzip by itself.
		gz := map[string]string{"Accept-Encoding": "gzip"}
		get := e.do(req{method: http.MethodGet, path: path, headers: gz})
		head := e.do(req{method: http.MethodHead, path: path, headers: gz})
		if head.status != get.status || head.status != http.StatusOK {
			t.Errorf("HEAD %s = %d, GET = %d, want both 200", path, head.status, get.status)
		}
		if len(head.body) != 0 {
			t.Errorf("HEAD %s has a body of %d bytes", path, len(head.body))
		}
		for _, h := range []string{"Content-Type", "Cache-Control", "ETag"} {
			if head.header.Get(h) != get.header.Get(h) {
				t.Errorf("HEAD %s %s = %q, GET's %q", path, h, head.header.Get(h), get.header.Get(h))
			}
		}
	}
}

// PATCH and DELETE of the live list are 405 in the API's error shape with
// Allow: GET, never a visitor called "live"; a trailing slash is 404, never a
// redirect (issue 18).
func TestMethodNotAllowedAndTrailingSlash(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	for _, key := range []string{shopPrivacyKey, ""} {
		for _, m := range []string{http.MethodPatch, http.MethodDelete} {
			h := map[string]string{}
			if key != "" {
				h["Authorization"] = "Bearer " + key
			}
			r := e.do(req{method: m, path: "/v1/sites/shop/visitors/live", headers: h})
			if r.status != http.StatusMethodNotAllowed || r.errorCode(t) != "method_not_allowed" || r.header.Get("Allow") != http.MethodGet {
				t.Errorf("%s live (key %v): %d Allow %q %s, want 405 method_not_allowed, Allow: GET", m, key != "", r.status, r.header.Get("Allow"), r.body)
			}
		}
	}
	r := e.do(req{method: http.MethodPut, path: "/v1/track", body: `{}`})
	if r.status != http.StatusMethodNotAllowed || r.errorCode(t) != "method_not_allowed" {
		t.Errorf("PUT /v1/track: %d %s, want 405 method_not_allowed", r.status, r.body)
	}
	for _, rq := range []req{{method: http.MethodPost, path: "/v1/track/", body: `{}`}, {method: http.MethodGet, path: "/healthz/"}, {method: http.MethodGet, path: "/v1/sites/shop/stats/"}} {
		r := e.do(rq)
		if r.status != http.StatusNotFound || r.errorCode(t) != "not_found" {
			t.Errorf("%s %s: %d %s, want 404 not_found", rq.method, rq.path, r.status, r.body)
		}
	}
}

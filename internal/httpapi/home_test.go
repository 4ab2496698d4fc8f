package httpapi

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// GET / says what this is and links the demo (with the demo site), the
// console, the API description and /healthz (issue 18).
func TestHomePage(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	for _, demo := range []bool{false, true} {
		h, err := New(Options{Service: e.fake, Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), Demo: demo})
		if err != nil {
			t.Fatal(err)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
		body := w.Body.String()
		if w.Code != http.StatusOK || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/html") {
			t.Fatalf("demo %v: GET / = %d %s, want 200 text/html", demo, w.Code, w.Header().Get("Content-Type"))
		}
		for _, link := range []string{`href="/console"`, `href="/v1/openapi.yaml"`, `href="/healthz"`} {
			if !strings.Contains(body, link) {
				t.Errorf("demo %v: GET / has no %s:\n%s", demo, link, body)
			}
		}
		if got := strings.Contains(body, `href="/demo"`); got != demo {
			t.Errorf("demo %v: link to /demo %v", demo, got)
		}
		if !strings.Contains(body, "visitord") || w.Header().Get("Content-Security-Policy") != pageCSP {
			t.Errorf("demo %v: GET / does not name the service or lacks the page CSP", demo)
		}
	}
}

// GET /v1/openapi.yaml serves api/openapi.yaml as it is, revalidated by ETag.
func TestOpenAPIServed(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	want, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	r := e.do(req{method: http.MethodGet, path: "/v1/openapi.yaml"})
	if r.status != http.StatusOK || !bytes.Equal(r.body, want) || r.header.Get("Content-Type") != "application/yaml" {
		t.Fatalf("GET /v1/openapi.yaml = %d %s (%d bytes), want 200 application/yaml with api/openapi.yaml", r.status, r.header.Get("Content-Type"), len(r.body))
	}
	again := e.do(req{method: http.MethodGet, path: "/v1/openapi.yaml", headers: map[string]string{"If-None-Match": r.header.Get("ETag")}})
	if again.status != http.StatusNotModified {
		t.Errorf("GET with If-None-Match = %d, want 304", again.status)
	}
}

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

// The Bearer scheme name is case-insensitive (RFC 7235 §2.1); other schemes
// are refused.
func TestBearerSchemeCase(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"Bearer " + shopOperatorKey, http.StatusOK},
		{"bearer " + shopOperatorKey, http.StatusOK},
		{"BEARER " + shopOperatorKey, http.StatusOK},
		{"bEaReR  " + shopOperatorKey + " ", http.StatusOK},
		{"Basic " + shopOperatorKey, http.StatusUnauthorized},
		{"Bearer", http.StatusUnauthorized},
		{shopOperatorKey, http.StatusUnauthorized},
	} {
		r := e.do(req{method: http.MethodGet, path: "/v1/sites/shop/stats", headers: map[string]string{"Authorization": tc.auth}})
		if r.status != tc.want {
			t.Errorf("Authorization %q: %d %s, want %d", strings.Replace(tc.auth, shopOperatorKey, "<key>", 1), r.status, r.body, tc.want)
		}
	}
}

// errorMessage is the message of an error response.
func errorMessage(t testing.TB, r resp) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// Error messages are one line naming the field; a JSON null for a field that
// is not nullable (none in a request is) is 400 naming it (issue 18).
func TestErrorMessagesAndNulls(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	shop := map[string]string{"Origin": shopOrigin}
	priv := map[string]string{"Authorization": "Bearer " + shopPrivacyKey}
	for _, tc := range []struct {
		name, method, path, body string
		headers                  map[string]string
		code, field              string // field: what the message must name
	}{
		{name: "track without site", method: http.MethodPost, path: "/v1/track", body: `{"type":"pageview"}`, code: "invalid_request", field: "site is required"},
		{name: "track body an array", method: http.MethodPost, path: "/v1/track", body: `[]`, code: "invalid_request", field: "the body must be a JSON object"},
		{name: "track site a number", method: http.MethodPost, path: "/v1/track", body: `{"site":5}`, code: "invalid_request", field: "site must be a string"},
		{name: "track body null", method: http.MethodPost, path: "/v1/track", body: `null`, code: "invalid_request", field: "the body must not be null"},
		{name: "track site null", method: http.MethodPost, path: "/v1/track", body: `{"site":null,"url":"https://shop.example/"}`, headers: shop, code: "invalid_request", field: "site must not be null"},
		{name: "track title null", method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","url":"https://shop.example/","title":null}`, headers: shop, code: "invalid_request", field: "title must not be null"},
		{name: "track url null", method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"pageview","url":null}`, headers: shop, code: "invalid_request", field: "url must not be null"},
		{name: "track without url", method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"pageview"}`, headers: shop, code: "invalid_request", field: "url"},
		{name: "consent analytics null", method: http.MethodPut, path: "/v1/consent", body: `{"site":"shop","analytics":null,"marketing":false,"policy_version":"2026-11"}`, headers: shop, code: "invalid_request", field: "analytics must not be null"},
		{name: "consent without fields", method: http.MethodPut, path: "/v1/consent", body: `{"site":"shop"}`, headers: shop, code: "invalid_request", field: "analytics and policy_version are required"},
		{name: "chat contact name null", method: http.MethodPost, path: "/v1/chats", body: `{"site":"shop","contact":{"name":null,"email":"a@mail.example"}}`, headers: shop, code: "invalid_request", field: "contact.name must not be null"},
		{name: "chat contact a string", method: http.MethodPost, path: "/v1/chats", body: `{"site":"shop","contact":"Ann"}`, headers: shop, code: "invalid_request", field: "contact must be an object"},
		{name: "retention sessions null", method: http.MethodPut, path: "/v1/sites/shop/retention", body: `{"sessions":null,"profiles":395,"chats":90,"consents":1095,"audit":365}`, headers: priv, code: "invalid_request", field: "sessions must not be null"},
		{name: "live within garbage", method: http.MethodGet, path: "/v1/sites/shop/visitors/live?within=soon", headers: priv, code: "invalid_request", field: "within"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(req{method: tc.method, path: tc.path, body: tc.body, headers: tc.headers})
			if r.status != http.StatusBadRequest || r.errorCode(t) != tc.code {
				t.Fatalf("%d %s, want 400 %s", r.status, r.body, tc.code)
			}
			msg := errorMessage(t, r)
			if strings.ContainsAny(msg, "\n\r") || strings.Contains(msg, "  ") || strings.HasPrefix(msg, "invalid request") {
				t.Errorf("message %q: want one line without the code's words or empty names", msg)
			}
			if !strings.Contains(msg, tc.field) {
				t.Errorf("message %q does not say %q", msg, tc.field)
			}
		})
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

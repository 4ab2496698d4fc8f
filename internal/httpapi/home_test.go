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

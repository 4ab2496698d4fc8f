package httpapi

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// With VISITORD_PPROF the profiles are served on the metrics listener; without,
// they are not. /metrics is served there either way.
func TestPProf(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{true, false} {
		h := NewMetrics(prometheus.NewRegistry(), on)
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
			if got, want := w.Code == http.StatusOK, on; got != want {
				t.Errorf("pprof %v: GET %s = %d", on, path, w.Code)
			}
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		if w.Code != http.StatusOK {
			t.Errorf("pprof %v: GET /metrics = %d, want 200", on, w.Code)
		}
	}
}

// The public listener serves neither /metrics nor /debug/pprof: they are on
// VISITORD_METRICS_ADDR only (issue 18).
func TestMetricsNotOnPublicListener(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	for _, path := range []string{"/metrics", "/debug/pprof/", "/debug/pprof/heap"} {
		r := e.do(req{method: http.MethodGet, path: path})
		if r.status != http.StatusNotFound || r.errorCode(t) != "not_found" {
			t.Errorf("public GET %s = %d %s, want 404 not_found", path, r.status, r.body)
		}
		if strings.Contains(string(r.body), "visitord_http_requests_total") {
			t.Errorf("public GET %s shows metrics", path)
		}
	}
}

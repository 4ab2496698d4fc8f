package httpapi

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// seriesCount is the number of series the registry holds.
func seriesCount(tb testing.TB, reg *prometheus.Registry) int {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	n := 0
	for _, mf := range mfs {
		n += len(mf.GetMetric())
	}
	return n
}

// junk sends n requests with made-up methods and paths to the public listener.
func junk(tb testing.TB, e *env, from, n int) {
	tb.Helper()
	for i := from; i < from+n; i++ {
		method := fmt.Sprintf("JUNK%d", i)
		path := fmt.Sprintf("/x/%d/%s", i, strings.Repeat("y", i%7))
		if i%3 == 0 {
			method, path = http.MethodGet, fmt.Sprintf("/v1/sites/shop/visitors/live/%d", i)
		}
		if i%5 == 0 {
			path = "/v1/track"
		}
		hr, err := http.NewRequest(method, e.srv.URL+path, nil)
		if err != nil {
			tb.Fatal(err)
		}
		res, err := e.client.Do(hr)
		if err != nil {
			tb.Fatal(err)
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
}

// Made-up methods and paths create no series: the route label is a template or
// "unmatched", the method label a known method or "other" (issue 18).
func TestMetricsLabelsBounded(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	junk(t, e, 0, 100)
	before := seriesCount(t, e.reg)
	junk(t, e, 100, 2000)
	after := seriesCount(t, e.reg)
	w := httptest.NewRecorder()
	NewMetrics(e.reg, false).ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	t.Logf("series after 100 junk requests: %d; after 2,100: %d; /metrics %d bytes", before, after, w.Body.Len())
	if after != before {
		t.Errorf("2,000 more junk requests grew the series from %d to %d", before, after)
	}
}

package httpapi

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// With VISITORD_PPROF the profiles are served; without, they are not.
func TestPProf(t *testing.T) {
	e := newEnv(t)
	for _, on := range []bool{true, false} {
		h, err := New(Options{Service: e.svc, Logger: slog.New(slog.DiscardHandler), Registry: prometheus.NewRegistry(), PProf: on})
		if err != nil {
			t.Fatal(err)
		}
		for _, path := range []string{"/debug/pprof/", "/debug/pprof/cmdline", "/debug/pprof/heap"} {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
			if got, want := w.Code == http.StatusOK, on; got != want {
				t.Errorf("pprof %v: GET %s = %d", on, path, w.Code)
			}
		}
	}
}

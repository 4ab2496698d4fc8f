package httpapi

import (
	"context"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewMetrics returns the handler of the private metrics listener
// (VISITORD_METRICS_ADDR): GET /metrics from reg and, with withPProf,
// /debug/pprof/. Neither is ever served on the public listener.
func NewMetrics(reg *prometheus.Registry, withPProf bool) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	if withPProf {
		mux.HandleFunc("/debug/pprof/", pprof.Index)
		mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	}
	return mux
}

type statusResponse struct {
	Status string `json:"status"`
}

func (a *api) healthz(c *gin.Context) {
	c.JSON(http.StatusOK, statusResponse{Status: "ok"})
}

func (a *api) readyz(c *gin.Context) {
	// A second at most, and no more than any other request's store budget.
	ctx, cancel := context.WithTimeout(c.Request.Context(), min(time.Second, a.storeTimeout))
	defer cancel()
	if err := a.ready(ctx); err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, statusResponse{Status: "ok"})
}

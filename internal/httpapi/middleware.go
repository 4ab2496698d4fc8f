package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	requests *prometheus.CounterVec
	latency  *prometheus.HistogramVec
	hits     *prometheus.CounterVec
}

func newMetrics(reg *prometheus.Registry) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "visitord_http_requests_total", Help: "HTTP requests by route template (or unmatched), method (a known one, else other) and status.",
		}, []string{"route", "method", "status"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "visitord_http_request_duration_seconds", Help: "HTTP request latency by route template.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}, []string{"route"}),
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "visitord_track_total",
			Help: "Tracker calls by type (pageview, heartbeat, leave) and outcome (tracked, dnt, gpc, no_consent, bot, no_session, rate_limited, rejected).",
		}, []string{"type", "outcome"}),
	}
	reg.MustRegister(m.requests, m.latency, m.hits)
	return m
}

const siteKey = "visitord.site"

// routeOf is the route template of the request, never its raw path.
func routeOf(c *gin.Context) string {
	if r := c.FullPath(); r != "" {
		return r
	}
	return "unmatched"
}

// methodOf is the request's method if it is a known one, else "other": a
// made-up method must not create a metric series (issue 18).
func methodOf(c *gin.Context) string {
	switch m := c.Request.Method; m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions, http.MethodConnect, http.MethodTrace:
		return m
	}
	return "other"
}

// observe counts and logs every request by its route template, status, latency
// and site: never the raw path, query, IP or token.
func (a *api) observe(c *gin.Context) {
	start := time.Now()
	c.Next()
	end := time.Now()
	elapsed := end.Sub(start)
	route, method, status := routeOf(c), methodOf(c), c.Writer.Status()
	a.metrics.requests.WithLabelValues(route, method, statusText(status)).Inc()
	a.metrics.latency.WithLabelValues(route).Observe(elapsed.Seconds())
	site, _ := c.Get(siteKey)
	siteID, _ := site.(string)
	a.access.request(c.Request.Context(), end, method, route, status, float64(elapsed.Microseconds())/1000, siteID)
}

// statusText is strconv.Itoa(status) without an allocation for the statuses
// the API answers.
func statusText(status int) string {
	switch status {
	case http.StatusOK:
		return "200"
	case http.StatusCreated:
		return "201"
	case http.StatusNoContent:
		return "204"
	}
	return strconv.Itoa(status)
}

// recover turns a panic into a 500 in the API's error shape.
func (a *api) recover(c *gin.Context) {
	defer func() {
		if v := recover(); v != nil {
			if err, ok := v.(error); ok && errors.Is(err, http.ErrAbortHandler) {
				panic(v)
			}
			a.fail(c, panicError{v})
		}
	}()
	c.Next()
}

type panicError struct{ v any }

func (p panicError) Error() string { return "panic: " + slog.AnyValue(p.v).String() }

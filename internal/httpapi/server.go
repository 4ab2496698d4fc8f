// Package httpapi is visitord's HTTP API: the only importer of Gin. routes.go
// lists every route; handlers bind and validate, call the domain and render.
package httpapi

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/visitord/visitord/internal/visitor"
)

// MaxBodyBytes is the largest request body accepted (413 above).
const MaxBodyBytes = 16 << 10

// DefaultStoreTimeout bounds the store work of a request other than a page
// view when Options.StoreTimeout is zero.
const DefaultStoreTimeout = 2 * time.Second

// Options are the HTTP API's dependencies and settings.
type Options struct {
	// Service is the domain: *visitor.Service, or a fake of it in tests.
	Service Service
	Logger  *slog.Logger
	// AccessLog, when not nil, receives the access log's line of every
	// request, built by hand as slog.NewJSONHandler(AccessLog, nil) would write
	// it; nil sends those lines through Logger. It may be Logger's writer when
	// that is safe for concurrent writes (an *os.File is).
	AccessLog io.Writer
	// Registry receives the API's metrics; NewMetrics serves it on the
	// metrics listener.
	Registry *prometheus.Registry
	// TrustedProxies are the peers whose X-Forwarded-For is believed.
	TrustedProxies []netip.Prefix
	// CookieSecure sets Secure; SameSite=None; Partitioned on the identity cookie.
	CookieSecure bool
	// TrackTimeout is the store's time budget of a page view.
	TrackTimeout time.Duration
	// StoreTimeout is the store's time budget of any other request, and of
	// each read of a live stream; zero is DefaultStoreTimeout.
	StoreTimeout time.Duration
	// Ready reports whether the store is reachable, for /readyz.
	Ready func(context.Context) error
	// Demo serves the demo shop on /demo, for the built-in demo site.
	Demo bool
	// OpenAPI is api/openapi.yaml, served at /v1/openapi.yaml.
	OpenAPI []byte
	// Limiter applies the limits of chats, consent, /v1/me and API keys,
	// shared by every pod; nil applies none (tests that do not care).
	Limiter visitor.RateLimiter
	// RateLimitTimeout bounds one check of Limiter, past which the request
	// goes on unlimited; zero is DefaultRateLimitTimeout.
	RateLimitTimeout time.Duration
	// PageViews limits track calls per identity or IP block in this process;
	// nil applies none.
	PageViews *PageViewLimiter
	// Streams holds the live-list streams, which Streams.Close ends at shutdown;
	// nil makes a set with the default options that nothing closes.
	Streams *Streams
}

type api struct {
	svc          Service
	sites        *visitor.Sites
	log          *slog.Logger
	access       *accessLog
	metrics      *metrics
	cookieSecure bool
	trackTimeout time.Duration
	storeTimeout time.Duration
	ready        func(context.Context) error
	limiter      visitor.RateLimiter
	limitTimeout time.Duration
	pageViews    *PageViewLimiter
	limited      *prometheus.CounterVec
	streams      *Streams
}

var ginMode sync.Once

// New returns the HTTP handler of the whole API.
func New(o Options) (http.Handler, error) {
	// SetMode writes Gin's globals: once, so that handlers built in parallel
	// do not race.
	ginMode.Do(func() { gin.SetMode(gin.ReleaseMode) })
	a := &api{
		svc: o.Service, sites: o.Service.Sites(), log: o.Logger, access: newAccessLog(o.Logger, o.AccessLog), metrics: newMetrics(o.Registry),
		cookieSecure: o.CookieSecure, trackTimeout: o.TrackTimeout, storeTimeout: o.StoreTimeout, ready: o.Ready,
		limiter: o.Limiter, limitTimeout: o.RateLimitTimeout, pageViews: o.PageViews, limited: newLimitMetrics(o.Registry),
		streams: o.Streams,
	}
	if a.storeTimeout <= 0 {
		a.storeTimeout = DefaultStoreTimeout
	}
	if a.limitTimeout <= 0 {
		a.limitTimeout = DefaultRateLimitTimeout
	}
	if a.streams == nil {
		a.streams = NewStreams(StreamOptions{})
	}
	a.streams.attach(o.Service, o.Logger, o.Registry, a.storeTimeout)
	r := gin.New()
	r.HandleMethodNotAllowed = true
	// /v1/track/ is not /v1/track: a 404 in the API's shape, not a redirect the
	// contract does not describe.
	r.RedirectTrailingSlash = false
	r.ForwardedByClientIP = true
	r.RemoteIPHeaders = []string{"X-Forwarded-For"}
	proxies := make([]string, 0, len(o.TrustedProxies))
	for _, p := range o.TrustedProxies {
		proxies = append(proxies, p.String())
	}
	if len(proxies) == 0 {
		proxies = nil
	}
	if err := r.SetTrustedProxies(proxies); err != nil {
		return nil, err
	}
	r.Use(a.observe, a.recover)
	r.NoRoute(func(c *gin.Context) { a.fail(c, errNoRoute) })
	r.NoMethod(func(c *gin.Context) { a.fail(c, errNoMethod) })
	a.routes(r, o)
	return r, nil
}

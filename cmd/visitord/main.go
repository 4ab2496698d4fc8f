// Command visitord recognises browser visitors, records what they do on a site
// in Redis with time-to-live, and gives chat operators the visitor's context,
// under Do Not Track, Global Privacy Control and consent.
package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/visitord/visitord/api"
	"github.com/visitord/visitord/internal/config"
	"github.com/visitord/visitord/internal/device"
	"github.com/visitord/visitord/internal/devredis"
	"github.com/visitord/visitord/internal/geo"
	"github.com/visitord/visitord/internal/httpapi"
	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/visitor"
	"github.com/visitord/visitord/internal/webhook"
)

// version is set at build time with -ldflags '-X main.version=…'.
var version = "dev"

// Bounds of the service's background work and shutdown.
const (
	shutdownTimeout = 15 * time.Second
	sweepEvery      = 30 * time.Second
	retentionEvery  = 5 * time.Second
	// accessLogEvery bounds how long an access log line waits in its batch.
	accessLogEvery = 200 * time.Millisecond
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "visitord:", err)
		os.Exit(1)
	}
}

// run is visitord's entry point: subcommands, or serve until ctx is cancelled.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "hash-key":
			return hashKey(stdout)
		case "version":
			_, err := fmt.Fprintln(stdout, version)
			return err
		case "subject":
			return subject(ctx, args[1:], getenv, stdout, stderr)
		case "serve":
		default:
			return fmt.Errorf("unknown command %q (commands: serve, hash-key, subject, version)", args[0])
		}
	}
	return serve(ctx, getenv, stderr, nil)
}

// hashKey prints a new random API key and the sha256 the sites file holds.
func hashKey(stdout io.Writer) error {
	key, sum := config.NewAPIKey()
	_, err := fmt.Fprintf(stdout, "key:    %s\nsha256: %s\n", key, sum)
	return err
}

// app is the wired service: the composition root's product.
type app struct {
	cfg     config.Config
	svc     *visitor.Service
	store   *redisstore.Store
	sealer  *visitor.Sealer
	closers []func()
}

func (a *app) close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
}

// open loads the configuration and opens Redis and GeoIP. listen, when not nil,
// is called before the sites are fixed, so the demo site follows the real port.
func open(ctx context.Context, getenv func(string) string, log *slog.Logger, listen func(config.Config) (string, error)) (*app, error) {
	cfg, err := config.Load(getenv)
	if err != nil {
		return nil, fmt.Errorf("configuration: %w", err)
	}
	a := &app{cfg: cfg}
	ok := false
	defer func() {
		if !ok {
			a.close()
		}
	}()
	redisURL := cfg.RedisURL
	if cfg.Dev {
		dev, err := devredis.Start()
		if err != nil {
			return nil, fmt.Errorf("embedded redis: %w", err)
		}
		a.closers = append(a.closers, dev.Close)
		log.Warn("DEVELOPMENT MODE: VISITORD_REDIS_URL is not set, so data lives in an embedded in-memory Redis; nothing survives a restart",
			slog.String("redis", dev.Addr()))
		redisURL = dev.URL()
	}
	rdb, err := redisstore.Connect(redisURL)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, func() { rdb.Close() })
	for _, name := range cfg.Generated {
		log.Warn("a random secret was made for this start only: tokens and data written now are unreadable after a restart", slog.String("variable", name))
	}
	var locator visitor.Locator
	if cfg.GeoIPDB != "" {
		l, err := geo.Open(cfg.GeoIPDB)
		if err != nil {
			return nil, fmt.Errorf("VISITORD_GEOIP_DB: %w", err)
		}
		a.closers = append(a.closers, func() { l.Close() })
		locator = l
	} else {
		log.Info("no geolocation: VISITORD_GEOIP_DB is not set")
	}
	if listen != nil {
		addr, err := listen(cfg)
		if err != nil {
			return nil, err
		}
		if err := a.cfg.Listening(addr); err != nil {
			return nil, err
		}
	}
	ids := make([]string, 0, len(a.cfg.Sites))
	for _, s := range a.cfg.Sites {
		ids = append(ids, s.ID)
	}
	a.store = redisstore.New(rdb, redisstore.WithMinReplicas(cfg.MinReplicas), redisstore.WithSites(ids...))
	if err := a.store.LoadScripts(ctx); err != nil {
		// Not fatal: Redis may come later; /readyz says so and scripts load on first use.
		log.Warn("redis not reachable at start", slog.String("error", err.Error()))
	}
	sites, err := visitor.NewSites(a.cfg.Sites)
	if err != nil {
		return nil, err
	}
	signer, err := visitor.NewSigner(cfg.CookieSecrets)
	if err != nil {
		return nil, fmt.Errorf("VISITORD_COOKIE_SECRET: %w", err)
	}
	hasher, err := visitor.NewHasher(cfg.IndexKey)
	if err != nil {
		return nil, fmt.Errorf("VISITORD_INDEX_KEY: %w", err)
	}
	if a.sealer, err = visitor.NewSealer(cfg.DataKeys); err != nil {
		return nil, fmt.Errorf("VISITORD_DATA_KEY: %w", err)
	}
	a.svc = visitor.NewService(visitor.Deps{Sites: sites, Store: a.store, Signer: signer, Hasher: hasher, Sealer: a.sealer,
		Devices: device.NewParser(16384), Locator: locator},
		visitor.WithRetentionBounds(cfg.RetentionMin, cfg.RetentionMax), visitor.WithAuditMinDays(cfg.AuditMinDays))
	if err := a.svc.RefreshRetention(ctx); err != nil {
		log.Warn("retention overrides not loaded at start", slog.String("error", err.Error()))
	}
	ok = true
	return a, nil
}

// serve runs the service; ready, when not nil, receives the listening address.
func serve(ctx context.Context, getenv func(string) string, stderr io.Writer, ready chan<- string) error {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	gcDefaults(getenv, cgroupMemoryLimit(os.DirFS("/"))).apply(log)
	var ln, mln net.Listener
	closeListeners := func() {
		for _, l := range []net.Listener{ln, mln} {
			if l != nil {
				l.Close()
			}
		}
	}
	a, err := open(ctx, getenv, log, func(cfg config.Config) (string, error) {
		l, err := net.Listen("tcp", cfg.Addr)
		if err != nil {
			return "", fmt.Errorf("VISITORD_ADDR: %w", err)
		}
		ln = l
		if mln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			return "", fmt.Errorf("VISITORD_METRICS_ADDR: %w", err)
		}
		return l.Addr().String(), nil
	})
	if err != nil {
		closeListeners()
		return err
	}
	defer a.close()
	cfg := a.cfg
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "visitord_site_flush_failures_total",
			Help: "Flush scripts of buffered site-level data (live set, counters, subject index) that failed; each is tried again."},
			func() float64 { return float64(a.store.FlushFailures()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "visitord_site_flush_dropped_total",
			Help: "Buffered live entries, subject-index entries and counts given up after their flush failed for minutes."},
			func() float64 { return float64(a.store.FlushDropped()) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "visitord_redis_pipeline_rejected_total",
			Help: "Page views answered 503 at once because the Redis auto-pipeliner held its queue of unanswered scripts (Redis stopped answering)."},
			func() float64 { return float64(a.store.PipelineRejected()) }),
	)
	streams := httpapi.NewStreams(httpapi.StreamOptions{})
	// Closed when serve returns, after the drain: every line is written.
	access := newLineBatcher(stderr, accessLogEvery)
	defer access.Close()
	handler, err := httpapi.New(httpapi.Options{
		Service: a.svc, Logger: log, AccessLog: access, Registry: reg, TrustedProxies: cfg.TrustedProxies,
		CookieSecure: cfg.CookieSecure, TrackTimeout: cfg.TrackTimeout, Ready: a.store.Ping, OpenAPI: api.OpenAPI,
		Demo: cfg.DemoSite, Limiter: redisstore.NewRateLimiter(a.store), PageViews: httpapi.NewPageViewLimiter(),
		Streams: streams,
	})
	if err != nil {
		closeListeners()
		return fmt.Errorf("VISITORD_TRUSTED_PROXIES: %w", err)
	}
	targets := map[string]webhook.Target{}
	for _, site := range cfg.Sites {
		if site.Webhook.URL != "" {
			targets[site.ID] = webhook.Target{URL: site.Webhook.URL, Secret: site.Webhook.Secret}
		}
	}
	dispatcher := webhook.NewDispatcher(redisstore.NewWebhookQueue(a.store, a.sealer), targets, log, reg)
	bg, stopBackground := context.WithCancel(context.Background())
	done := make(chan struct{}, 4)
	go func() { dispatcher.Run(bg); done <- struct{}{} }()
	go func() { every(bg, sweepEvery, func() { sweep(bg, a.svc, log) }); done <- struct{}{} }()
	go func() { a.svc.RetentionLoop(bg, owner(), retentionEvery, log); done <- struct{}{} }()
	// Site-level data of page views is buffered and flushed every
	// DefaultFlushEvery; stopped after the drain, it flushes once more.
	go func() { a.store.RunFlusher(bg, redisstore.DefaultFlushEvery, log); done <- struct{}{} }()
	defer func() {
		stopBackground()
		for range 4 {
			<-done
		}
	}()
	srv := &http.Server{
		Handler: handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 15 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 32 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// The metrics listener is private (a pod port Prometheus scrapes): /metrics
	// and pprof never reach the public one. No write timeout: a CPU profile
	// streams for its whole duration.
	msrv := &http.Server{
		Handler: httpapi.NewMetrics(reg, cfg.PProf), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 120 * time.Second,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// Live streams never go idle by themselves: shutdown ends them at once, so
	// that draining waits only for ordinary requests.
	srv.RegisterOnShutdown(streams.Close)
	log.Info("visitord listening", slog.String("addr", ln.Addr().String()), slog.String("version", version), slog.Int("sites", len(cfg.Sites)))
	log.Info("metrics listening", slog.String("addr", mln.Addr().String()), slog.Bool("pprof", cfg.PProf))
	if cfg.DemoSite {
		printDemo(stderr, ln.Addr().String(), cfg)
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	go func() { errc <- msrv.Serve(mln) }()
	select {
	case err := <-errc:
		sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
		defer cancel()
		_ = srv.Shutdown(sctx)
		_ = msrv.Shutdown(sctx)
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", slog.Duration("bound", shutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	// Scrapes during the drain still see its counts; the metrics listener closes last.
	if merr := msrv.Shutdown(sctx); err == nil {
		err = merr
	}
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}

// every runs f every d until ctx is done.
func every(ctx context.Context, d time.Duration, f func()) {
	t := time.NewTicker(d)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			f()
		}
	}
}

// sweep finishes erasures that a crash interrupted.
func sweep(ctx context.Context, svc *visitor.Service, log *slog.Logger) {
	n, err := svc.SweepErasures(ctx)
	if err != nil && ctx.Err() == nil {
		log.Warn("erasure sweep", slog.String("error", err.Error()))
	}
	if n > 0 {
		log.Info("erasure sweep finished interrupted erasures", slog.Int("count", n))
	}
}

// owner names this process for locks it takes.
func owner() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails (Go ≥ 1.24)
	host, _ := os.Hostname()
	return host + "-" + hex.EncodeToString(b)
}

// printDemo tells a developer how to try the built-in demo site.
func printDemo(w io.Writer, addr string, cfg config.Config) {
	_, port, _ := net.SplitHostPort(addr)
	base := "http://localhost:" + port
	fmt.Fprintf(w, `
  visitord is running with the built-in demo site "demo" (opt-out consent).
  Demo shop: %s/demo    Operator console: %s/console (paste the operator key, site demo)
  Development API keys for this start (the sites file would hold their sha256):
    operator: %s
    privacy:  %s
  Record a page view:
    curl -i -X POST %s/v1/track -H 'Content-Type: application/json' \
      -A 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36' \
      -d '{"site":"demo","type":"pageview","url":"%s/products/42?utm_source=newsletter","title":"Blue mug"}'

`, base, base, cfg.DevKeys[visitor.RoleOperator], cfg.DevKeys[visitor.RolePrivacy], base, base)
}

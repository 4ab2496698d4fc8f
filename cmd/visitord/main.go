// Command visitord recognises browser visitors, records what they do on a site
// in Redis with time-to-live, and gives chat operators the visitor's context,
// under Do Not Track, Global Privacy Control and consent.
package main

import (
	"context"
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
	"github.com/redis/go-redis/v9"

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

// shutdownTimeout bounds how long in-flight requests may drain on SIGTERM.
const shutdownTimeout = 15 * time.Second

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "visitord:", err)
		os.Exit(1)
	}
}

// run is visitord's composition root: subcommands, or load the configuration,
// open Redis and GeoIP, build the service and serve until ctx is cancelled.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) > 0 {
		switch args[0] {
		case "hash-key":
			return hashKey(stdout)
		case "version":
			_, err := fmt.Fprintln(stdout, version)
			return err
		case "serve":
		default:
			return fmt.Errorf("unknown command %q (commands: serve, hash-key, version)", args[0])
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

// serve runs the service; ready, when not nil, receives the listening address.
func serve(ctx context.Context, getenv func(string) string, stderr io.Writer, ready chan<- string) error {
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	cfg, err := config.Load(getenv)
	if err != nil {
		return fmt.Errorf("configuration: %w", err)
	}
	var rdb redis.UniversalClient
	if cfg.Dev {
		dev, err := devredis.Start()
		if err != nil {
			return fmt.Errorf("embedded redis: %w", err)
		}
		defer dev.Close()
		log.Warn("DEVELOPMENT MODE: VISITORD_REDIS_URL is not set, so data lives in an embedded in-memory Redis; nothing survives a restart",
			slog.String("redis", dev.Addr()))
		rdb = redis.NewClient(&redis.Options{Addr: dev.Addr()})
	} else {
		if rdb, err = redisstore.Connect(cfg.RedisURL); err != nil {
			return err
		}
	}
	defer rdb.Close()
	for _, name := range cfg.Generated {
		log.Warn("a random secret was made for this start only: tokens and data written now are unreadable after a restart", slog.String("variable", name))
	}
	var locator visitor.Locator
	if cfg.GeoIPDB != "" {
		l, err := geo.Open(cfg.GeoIPDB)
		if err != nil {
			return fmt.Errorf("VISITORD_GEOIP_DB: %w", err)
		}
		defer l.Close()
		locator = l
	} else {
		log.Info("no geolocation: VISITORD_GEOIP_DB is not set")
	}
	store := redisstore.New(rdb, redisstore.WithMinReplicas(cfg.MinReplicas))
	if err := store.LoadScripts(ctx); err != nil {
		// Not fatal: Redis may come later; /readyz says so and scripts load on first use.
		log.Warn("redis not reachable at start", slog.String("error", err.Error()))
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		return fmt.Errorf("VISITORD_ADDR: %w", err)
	}
	defer ln.Close()
	if err := cfg.Listening(ln.Addr().String()); err != nil {
		return err
	}
	sites, err := visitor.NewSites(cfg.Sites)
	if err != nil {
		return err
	}
	signer, err := visitor.NewSigner(cfg.CookieSecrets)
	if err != nil {
		return fmt.Errorf("VISITORD_COOKIE_SECRET: %w", err)
	}
	hasher, err := visitor.NewHasher(cfg.IndexKey)
	if err != nil {
		return fmt.Errorf("VISITORD_INDEX_KEY: %w", err)
	}
	sealer, err := visitor.NewSealer(cfg.DataKeys)
	if err != nil {
		return fmt.Errorf("VISITORD_DATA_KEY: %w", err)
	}
	svc := visitor.NewService(sites, store, signer, hasher, sealer, device.NewParser(16384), locator)
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	handler, err := httpapi.New(httpapi.Options{
		Service: svc, Logger: log, Registry: reg, TrustedProxies: cfg.TrustedProxies,
		CookieSecure: cfg.CookieSecure, TrackTimeout: cfg.TrackTimeout, Ready: store.Ping, PProf: cfg.PProf,
	})
	if err != nil {
		return fmt.Errorf("VISITORD_TRUSTED_PROXIES: %w", err)
	}
	targets := map[string]webhook.Target{}
	for _, site := range cfg.Sites {
		if site.Webhook.URL != "" {
			targets[site.ID] = webhook.Target{URL: site.Webhook.URL, Secret: site.Webhook.Secret}
		}
	}
	dispatcher := webhook.NewDispatcher(redisstore.NewWebhookQueue(store, sealer), targets, log, reg)
	dctx, stopDispatcher := context.WithCancel(context.Background())
	dispatched := make(chan struct{})
	go func() { defer close(dispatched); dispatcher.Run(dctx) }()
	defer func() { stopDispatcher(); <-dispatched }()
	srv := &http.Server{
		Handler: handler, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second,
		WriteTimeout: 15 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 32 << 10,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	log.Info("visitord listening", slog.String("addr", ln.Addr().String()), slog.String("version", version), slog.Int("sites", len(cfg.Sites)))
	if cfg.DemoSite {
		printDemo(stderr, ln.Addr().String(), cfg)
	}
	if ready != nil {
		ready <- ln.Addr().String()
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down: draining in-flight requests", slog.Duration("bound", shutdownTimeout))
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	return nil
}

// printDemo tells a developer how to try the built-in demo site.
func printDemo(w io.Writer, addr string, cfg config.Config) {
	_, port, _ := net.SplitHostPort(addr)
	base := "http://localhost:" + port
	fmt.Fprintf(w, `
  visitord is running with the built-in demo site "demo" (opt-out consent).
  Development API keys for this start (the sites file would hold their sha256):
    operator: %s
    privacy:  %s
  Record a page view:
    curl -i -X POST %s/v1/track -H 'Content-Type: application/json' \
      -A 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36' \
      -d '{"site":"demo","type":"pageview","url":"%s/products/42?utm_source=newsletter","title":"Blue mug"}'

`, cfg.DevKeys[visitor.RoleOperator], cfg.DevKeys[visitor.RolePrivacy], base, base)
}

package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
)

// floorBody is what the floor decodes: DESIGN.md's Performance section defines
// the floor as a bare Gin handler that decodes the JSON body, sends one MULTI of
// HSET (8 fields), EXPIRE and ZADD on a site index, sets a cookie and answers 204.
type floorBody struct {
	Site     string `json:"site"`
	Type     string `json:"type"`
	URL      string `json:"url"`
	Title    string `json:"title"`
	Referrer string `json:"referrer"`
}

// serveFloor runs the floor on ln against Redis at redisAddr until ctx ends.
func serveFloor(ctx context.Context, ln net.Listener, redisAddr string) error {
	rdb := redis.NewClient(&redis.Options{Addr: redisAddr, PoolSize: 128})
	defer rdb.Close()
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	var n atomic.Uint64
	r.POST("/v1/track", func(c *gin.Context) {
		b, err := io.ReadAll(c.Request.Body)
		if err != nil {
			c.Status(http.StatusBadRequest)
			return
		}
		var body floorBody
		if err := json.Unmarshal(b, &body); err != nil {
			c.Status(http.StatusBadRequest)
			return
		}
		id := strconv.FormatUint(n.Add(1), 36)
		now := time.Now()
		key := "floor:" + body.Site + ":" + id
		ua := c.Request.UserAgent()
		pipe := rdb.TxPipeline()
		pipe.HSet(c.Request.Context(), key, "site", body.Site, "url", body.URL, "title", body.Title,
			"referrer", body.Referrer, "browser", ua, "version", "1", "os", "x", "time", now.UnixMilli())
		pipe.Expire(c.Request.Context(), key, 24*time.Hour)
		pipe.ZAdd(c.Request.Context(), "floor:idx:"+body.Site, redis.Z{Score: float64(now.UnixMilli()), Member: id})
		if _, err := pipe.Exec(c.Request.Context()); err != nil {
			c.Status(http.StatusServiceUnavailable)
			return
		}
		http.SetCookie(c.Writer, &http.Cookie{Name: "vt_" + body.Site, Value: id, Path: "/", HttpOnly: true, MaxAge: 3600})
		c.Status(http.StatusNoContent)
	})
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		return err
	}
	return nil
}

// serveRuntimeMetrics serves the Go runtime's metrics of the floor process on
// ln, as visitord does on its metrics listener, so that both report heap
// allocations the same way.
func serveRuntimeMetrics(ctx context.Context, ln net.Listener) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector())
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { <-ctx.Done(); srv.Close() }()
	_ = srv.Serve(ln)
}

package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"math"
	"strings"
	"sync"
	"testing"
	"time"
)

// slogLine is what slog.NewJSONHandler writes for the access log's record.
func slogLine(tb testing.TB, t time.Time, method, route string, status int, latencyMS float64, site string) string {
	tb.Helper()
	var buf bytes.Buffer
	r := slog.NewRecord(t, slog.LevelInfo, "request", 0)
	r.AddAttrs(slog.String("method", method), slog.String("route", route), slog.Int("status", status),
		slog.Float64("latency_ms", latencyMS), slog.String("site", site))
	if err := slog.NewJSONHandler(&buf, nil).Handle(context.Background(), r); err != nil {
		tb.Fatal(err)
	}
	return buf.String()
}

// The hand-built access log line is byte for byte the line slog's JSON
// handler writes for the same fields (issue 20).
func TestAccessLineMatchesSlog(t *testing.T) {
	t.Parallel()
	berlin := time.FixedZone("CET", 3600)
	base := time.Date(2026, 11, 29, 11, 6, 15, 123456789, time.UTC)
	tests := []struct {
		name    string
		t       time.Time
		method  string
		route   string
		status  int
		latency float64
		site    string
	}{
		{name: "page view", t: base, method: "POST", route: "/v1/track", status: 200, latency: 1.234, site: "shop"},
		{name: "no site", t: base, method: "GET", route: "/healthz", status: 200, latency: 0.012, site: ""},
		{name: "whole second", t: base.Truncate(time.Second), method: "POST", route: "/v1/track", status: 503, latency: 150.001, site: "shop"},
		{name: "trailing zeros in the nanoseconds", t: base.Truncate(time.Millisecond), method: "OPTIONS", route: "/v1/track", status: 204, latency: 0, site: "shop"},
		{name: "local zone", t: base.In(berlin), method: "other", route: "unmatched", status: 404, latency: 12345.678, site: ""},
		{name: "monotonic reading", t: time.Now(), method: "DELETE", route: "/v1/visitors/:id", status: 202, latency: 0.001, site: "a-site-0"},
		{name: "tiny latency", t: base, method: "GET", route: "/", status: 200, latency: 1e-7, site: "x"},
		{name: "huge latency", t: base, method: "GET", route: "/", status: 200, latency: 1e21, site: "x"},
		{name: "negative latency", t: base, method: "GET", route: "/", status: 200, latency: -2.5e-9, site: "x"},
		{name: "NaN latency", t: base, method: "GET", route: "/", status: 200, latency: math.NaN(), site: "x"},
		{name: "infinite latency", t: base, method: "GET", route: "/", status: 200, latency: math.Inf(1), site: "x"},
		{name: "quote and backslash", t: base, method: "GET", route: `/a"b\c`, status: 200, latency: 1, site: `"\`},
		{name: "control characters", t: base, method: "GET", route: "/\x00\x01\t\n\r\x1f\x7f", status: 200, latency: 1, site: "\b\f"},
		{name: "HTML is not escaped", t: base, method: "GET", route: "/<a>&", status: 200, latency: 1, site: "<>&"},
		{name: "invalid UTF-8", t: base, method: "GET", route: "/\xff\xfe", status: 200, latency: 1, site: "a\xc3"},
		{name: "line separators", t: base, method: "GET", route: "/\u2028\u2029", status: 200, latency: 1, site: "é日本\U0001F600"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := string(appendAccessLine(nil, tt.t, tt.method, tt.route, tt.status, tt.latency, tt.site))
			if want := slogLine(t, tt.t, tt.method, tt.route, tt.status, tt.latency, tt.site); got != want {
				t.Errorf("hand-built line differs from slog's:\n got  %s want %s", got, want)
			}
		})
	}
}

func FuzzAccessLine(f *testing.F) {
	f.Add("POST", "/v1/track", 200, int64(1234), "shop", int64(1764414375123456789))
	f.Add("GET", "/\u2028\xff\"", 404, int64(0), "\x00<", int64(0))
	f.Fuzz(func(t *testing.T, method, route string, status int, micros int64, site string, unixNano int64) {
		ts := time.Unix(0, unixNano)
		if y := ts.Year(); y < 0 || y >= 10000 {
			t.Skip("slog refuses years outside 0–9999; a clock never gives one")
		}
		latency := float64(micros) / 1000
		got := string(appendAccessLine(nil, ts, method, route, status, latency, site))
		if want := slogLine(t, ts, method, route, status, latency, site); got != want {
			t.Errorf("hand-built line differs from slog's:\n got  %s want %s", got, want)
		}
	})
}

// Written to a writer or through the logger, the access log line holds the
// same fields; concurrent requests each write one whole line.
func TestAccessLogWriterAndLogger(t *testing.T) {
	t.Parallel()
	var viaLogger bytes.Buffer
	logged := newAccessLog(slog.New(slog.NewJSONHandler(&viaLogger, nil)), nil)
	logged.request(context.Background(), time.Now(), "POST", "/v1/track", 200, 1.5, "shop")

	w := &lockedBuffer{}
	written := newAccessLog(slog.New(slog.DiscardHandler), w)
	var wg sync.WaitGroup
	for range 50 {
		wg.Go(func() { written.request(context.Background(), time.Now(), "POST", "/v1/track", 200, 1.5, "shop") })
	}
	wg.Wait()

	fields := func(line string) map[string]any {
		t.Helper()
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("not a JSON line: %v: %q", err, line)
		}
		if _, err := time.Parse(time.RFC3339Nano, m["time"].(string)); err != nil {
			t.Errorf("time: %v", err)
		}
		delete(m, "time")
		return m
	}
	want := fields(viaLogger.String())
	lines := strings.Split(strings.TrimSuffix(w.String(), "\n"), "\n")
	if got := len(lines); got != 50 {
		t.Fatalf("%d lines, want 50:\n%s", got, w.String())
	}
	for _, l := range lines {
		got := fields(l)
		if len(got) != len(want) {
			t.Fatalf("fields %v, want %v", got, want)
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s = %v, want %v", k, got[k], v)
			}
		}
	}
}

// The hand-built line allocates nothing.
func TestAccessLogAllocations(t *testing.T) {
	l := newAccessLog(nil, discardWriter{})
	now := time.Now()
	if n := testing.AllocsPerRun(100, func() {
		l.request(context.Background(), now, "POST", "/v1/track", 200, 1.234, "shop")
	}); n != 0 {
		t.Errorf("%v allocations per line, want 0", n)
	}
}

func BenchmarkAccessLog(b *testing.B) {
	for _, bm := range []struct {
		name string
		l    *accessLog
	}{
		{"slog", newAccessLog(slog.New(slog.NewJSONHandler(discardWriter{}, nil)), nil)},
		{"hand-built", newAccessLog(nil, discardWriter{})},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			ctx := context.Background()
			for b.Loop() {
				bm.l.request(ctx, time.Now(), "POST", "/v1/track", 200, 1.234, "shop")
			}
		})
	}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

type discardWriter struct{}

func (discardWriter) Write(p []byte) (int, error) { return len(p), nil }

package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/redistest"
)

const (
	chromeUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36"
	// startTimeout bounds how long serve may take to listen or to stop.
	startTimeout = 20 * time.Second
)

// syncBuffer is serve's stderr: written by the server's goroutines, read by the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func mapEnv(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// instance is one running serve.
type instance struct {
	addr    string // the public listener
	metrics string // the metrics listener (VISITORD_METRICS_ADDR)
	stderr  *syncBuffer
	cancel  context.CancelFunc
	errc    chan error

	once sync.Once
	err  error
}

// start runs serve with env until stop (or the test's end) and returns once it
// listens. Without VISITORD_METRICS_ADDR in env the metrics listener takes a
// free loopback port too; its address comes from the "metrics listening" log line.
func start(tb testing.TB, env map[string]string) *instance {
	tb.Helper()
	if _, ok := env["VISITORD_METRICS_ADDR"]; !ok {
		env = maps.Clone(env)
		env["VISITORD_METRICS_ADDR"] = "127.0.0.1:0"
	}
	ctx, cancel := context.WithCancel(context.Background())
	in := &instance{stderr: &syncBuffer{}, cancel: cancel, errc: make(chan error, 1)}
	ready := make(chan string, 1)
	go func() { in.errc <- serve(ctx, mapEnv(env), in.stderr, ready) }()
	select {
	case in.addr = <-ready:
	case err := <-in.errc:
		cancel()
		tb.Fatalf("serve returned before listening: %v\nstderr:\n%s", err, in.stderr)
	case <-time.After(startTimeout):
		cancel()
		tb.Fatalf("serve did not listen within %s\nstderr:\n%s", startTimeout, in.stderr)
	}
	tb.Cleanup(func() { _ = in.stop(tb) })
	for _, l := range logLines(tb, in.stderr.String()) {
		if l["msg"] == "metrics listening" {
			in.metrics, _ = l["addr"].(string)
		}
	}
	if in.metrics == "" {
		tb.Fatalf("no metrics listening log line with the bound address:\n%s", in.stderr)
	}
	return in
}

// stop cancels serve's context and returns what serve returned.
func (in *instance) stop(tb testing.TB) error {
	tb.Helper()
	in.once.Do(func() {
		in.cancel()
		select {
		case in.err = <-in.errc:
		case <-time.After(startTimeout):
			in.err = errors.New("serve did not return after its context was cancelled")
		}
	})
	return in.err
}

// recordingClient is an HTTP client that remembers the local addresses of its
// connections: the client IP and port the server sees.
type recordingClient struct {
	*http.Client
	mu    sync.Mutex
	local []string
}

func newRecordingClient() *recordingClient {
	rc := &recordingClient{}
	d := &net.Dialer{Timeout: 5 * time.Second}
	tr := &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, addr)
		if err == nil {
			rc.mu.Lock()
			rc.local = append(rc.local, c.LocalAddr().String())
			rc.mu.Unlock()
		}
		return c, err
	}}
	rc.Client = &http.Client{Transport: tr, Timeout: 10 * time.Second}
	return rc
}

func (rc *recordingClient) localAddrs() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.local...)
}

type trackAnswer struct {
	Tracked bool   `json:"tracked"`
	Token   string `json:"token"`
	Reason  string `json:"reason"`
}

func post(tb testing.TB, c *http.Client, url, body string, header map[string]string) (*http.Response, []byte) {
	tb.Helper()
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := c.Do(req)
	if err != nil {
		tb.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp, b
}

func get(tb testing.TB, c *http.Client, url string) (int, string) {
	tb.Helper()
	resp, err := c.Get(url)
	if err != nil {
		tb.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// logLines decodes every JSON line of stderr; other lines (the demo text) are skipped.
func logLines(tb testing.TB, stderr string) []map[string]any {
	tb.Helper()
	var lines []map[string]any
	for l := range strings.SplitSeq(stderr, "\n") {
		if !strings.HasPrefix(l, "{") {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(l), &m); err != nil {
			tb.Errorf("stderr line is not JSON: %v\n%s", err, l)
			continue
		}
		m["_raw"] = l
		lines = append(lines, m)
	}
	return lines
}

// checkLogsClean fails tb if a JSON log line carries a client address, a raw
// path or query, a token or a full User-Agent (invariant 8).
func checkLogsClean(tb testing.TB, stderr string, clientAddrs []string, forbidden ...string) {
	tb.Helper()
	var requests int
	for _, l := range logLines(tb, stderr) {
		raw := l["_raw"].(string)
		for _, a := range clientAddrs {
			if strings.Contains(raw, a) {
				tb.Errorf("log line carries the client address %s: %s", a, raw)
			}
		}
		for _, f := range forbidden {
			if f != "" && strings.Contains(raw, f) {
				tb.Errorf("log line carries %q: %s", f, raw)
			}
		}
		if l["msg"] != "request" {
			continue
		}
		requests++
		if strings.Contains(raw, "127.0.0.1") {
			tb.Errorf("request log carries an IP: %s", raw)
		}
		for _, k := range []string{"ip", "client_ip", "remote_addr", "path", "query", "url", "token", "user_agent"} {
			if _, ok := l[k]; ok {
				tb.Errorf("request log has a %q attribute: %s", k, raw)
			}
		}
	}
	if requests == 0 {
		tb.Errorf("no access log line in stderr:\n%s", stderr)
	}
}

// devRedisAddr is the embedded Redis's address, from the development-mode warning.
func devRedisAddr(tb testing.TB, stderr string) string {
	tb.Helper()
	for _, l := range logLines(tb, stderr) {
		if msg, _ := l["msg"].(string); strings.Contains(msg, "DEVELOPMENT MODE") {
			if a, _ := l["redis"].(string); a != "" {
				return a
			}
		}
	}
	tb.Fatalf("no DEVELOPMENT MODE warning with the embedded Redis's address in stderr:\n%s", stderr)
	return ""
}

// demoCurl is the page view the development banner tells the developer to send.
type demoCurl struct{ url, ua, body string }

func parseDemoCurl(tb testing.TB, stderr string) demoCurl {
	tb.Helper()
	var d demoCurl
	for _, f := range []struct {
		re  *regexp.Regexp
		dst *string
	}{
		{regexp.MustCompile(`curl -i -X POST (\S+)`), &d.url},
		{regexp.MustCompile(`-A '([^']+)'`), &d.ua},
		{regexp.MustCompile(`-d '([^']+)'`), &d.body},
	} {
		m := f.re.FindStringSubmatch(stderr)
		if m == nil {
			tb.Fatalf("stderr has no %s in the demo curl:\n%s", f.re, stderr)
		}
		*f.dst = m[1]
	}
	if !strings.Contains(stderr, "-H 'Content-Type: application/json'") {
		tb.Errorf("the demo curl sends no JSON Content-Type:\n%s", stderr)
	}
	return d
}

func TestServeDevMode(t *testing.T) {
	t.Parallel()
	in := start(t, map[string]string{"VISITORD_ADDR": "127.0.0.1:0", "VISITORD_DEMO_ORIGINS": "http://devbox.lan:8080"})
	base := "http://" + in.addr
	client := newRecordingClient()

	// The development banner: loud warnings, the demo curl and the dev keys.
	out := in.stderr.String()
	for _, want := range []string{
		"DEVELOPMENT MODE",
		`"variable":"VISITORD_COOKIE_SECRET"`, `"variable":"VISITORD_DATA_KEY"`, `"variable":"VISITORD_INDEX_KEY"`,
		"VISITORD_GEOIP_DB is not set",
		`built-in demo site "demo"`,
		"curl -i -X POST ",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("stderr lacks %q:\n%s", want, out)
		}
	}
	keys := map[string]string{}
	for _, role := range []string{"operator", "privacy"} {
		m := regexp.MustCompile(`(?m)^\s+` + role + `:\s+(\S+)$`).FindStringSubmatch(out)
		if m == nil || len(m[1]) < 32 {
			t.Errorf("stderr has no %s dev key:\n%s", role, out)
			continue
		}
		keys[role] = m[1]
	}
	if keys["operator"] != "" && keys["operator"] == keys["privacy"] {
		t.Error("the operator and privacy dev keys are equal")
	}

	// The printed curl, sent as printed, records a page view.
	curl := parseDemoCurl(t, out)
	if _, port, _ := net.SplitHostPort(in.addr); !strings.Contains(curl.url, ":"+port+"/") {
		t.Errorf("demo curl posts to %s, not to the listening port %s", curl.url, port)
	}
	var pageURL struct {
		URL string `json:"url"`
	}
	if err := json.Unmarshal([]byte(curl.body), &pageURL); err != nil {
		t.Fatalf("the demo curl's body is not JSON: %v: %s", err, curl.body)
	}
	resp, body := post(t, client.Client, curl.url, curl.body, map[string]string{"User-Agent": curl.ua})
	var ans trackAnswer
	if resp.StatusCode != http.StatusOK {
		t.Errorf("demo curl: status %d, want 200: %s (page url %s)", resp.StatusCode, body, pageURL.URL)
	} else if err := json.Unmarshal(body, &ans); err != nil || !ans.Tracked || ans.Token == "" {
		t.Errorf("demo curl answered %s, want tracked:true with a token", body)
	}
	if ans.Tracked {
		var cookie *http.Cookie
		for _, c := range resp.Cookies() {
			if c.Name == "vt_demo" {
				cookie = c
			}
		}
		switch {
		case cookie == nil:
			t.Errorf("no vt_demo cookie; Set-Cookie %q", resp.Header.Values("Set-Cookie"))
		case cookie.Value != ans.Token || !cookie.HttpOnly || !cookie.Secure || cookie.SameSite != http.SameSiteNoneMode || !cookie.Partitioned:
			t.Errorf("vt_demo cookie %q: want the token, HttpOnly; Secure; SameSite=None; Partitioned (VISITORD_COOKIE_SECURE defaults to true)", resp.Header.Values("Set-Cookie"))
		}

		// Read back what the embedded Redis holds.
		rdb := redis.NewClient(&redis.Options{Addr: devRedisAddr(t, out)})
		defer rdb.Close()
		// The counter is site-level data, flushed by the pod every
		// redisstore.DefaultFlushEvery: wait for it a few flushes at most.
		var values map[string]string
		var stored, counted bool
		for deadline := time.Now().Add(20 * redisstore.DefaultFlushEvery); ; {
			values = redistest.DumpValues(t, rdb)
			for k, v := range values {
				if strings.HasPrefix(k, "v:{demo:") && strings.Contains(k, ":s:") &&
					strings.Contains(v, strings.Split(pageURL.URL, "?")[0]+"?utm_source=newsletter") && strings.Contains(v, "Blue mug") {
					stored = true
				}
				if strings.HasPrefix(k, "st:{demo:") && strings.Contains(v, "tracked=1") {
					counted = true
				}
			}
			if counted || time.Now().After(deadline) {
				break
			}
			time.Sleep(redisstore.DefaultFlushEvery / 10)
		}
		if !stored || !counted {
			t.Errorf("stored page view %v, tracked counter %v; Redis holds:\n%v", stored, counted, values)
		}
		// cfg: keys (retention overrides, the job's flag, the data layout's
		// version) are invariant 3's only exception.
		redistest.AssertAllKeysHaveTTL(t, rdb, func(k string) bool { return strings.HasPrefix(k, "cfg:") })
	}

	if code, b := get(t, client.Client, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s, want 200", code, b)
	}
	if code, b := get(t, client.Client, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s, want 200", code, b)
	}
	if code, _ := get(t, client.Client, base+"/metrics"); code != http.StatusNotFound {
		t.Errorf("public /metrics: %d, want 404 (metrics are on VISITORD_METRICS_ADDR only)", code)
	}
	code, metrics := get(t, client.Client, "http://"+in.metrics+"/metrics")
	if code != http.StatusOK || !strings.Contains(metrics, "visitord_track_total") {
		t.Errorf("/metrics: %d, want 200 with visitord_track_total:\n%s", code, metrics)
	}
	if !strings.Contains(metrics, `visitord_track_total{outcome="tracked",type="pageview"} 1`) {
		t.Errorf("/metrics does not count the tracked page view:\n%s", grepLines(metrics, "visitord_track_total"))
	}

	// The demo accepts every loopback form on the real port, and the extra
	// origins of VISITORD_DEMO_ORIGINS (issue 18).
	_, port, _ := net.SplitHostPort(in.addr)
	for _, origin := range []string{"http://localhost:" + port, "http://127.0.0.1:" + port, "http://[::1]:" + port, "http://devbox.lan:8080"} {
		resp, body := post(t, client.Client, base+"/v1/track", `{"site":"demo","type":"pageview","url":"`+origin+`/demo"}`,
			map[string]string{"Origin": origin, "User-Agent": curl.ua})
		if resp.StatusCode != http.StatusOK {
			t.Errorf("page view from %s: %d %s, want 200", origin, resp.StatusCode, body)
		}
	}
	if code, page := get(t, client.Client, base+"/"); code != http.StatusOK || !strings.Contains(page, `href="/demo"`) || !strings.Contains(page, `href="/v1/openapi.yaml"`) {
		t.Errorf("GET /: %d, want 200 linking the demo and the API description:\n%s", code, page)
	}

	// Graceful shutdown: serve returns nil and stops listening.
	if err := in.stop(t); err != nil {
		t.Fatalf("serve after cancel = %v, want nil", err)
	}
	for _, addr := range []string{in.addr, in.metrics} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after shutdown", addr)
		}
	}

	checkLogsClean(t, in.stderr.String(), client.localAddrs(), ans.Token, "/products/42", "utm_source", "newsletter", "Blue mug", "Chrome/120")
}

func grepLines(s, sub string) string {
	var out []string
	for l := range strings.SplitSeq(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// prodEnv is a production environment on srv with valid secrets and the sites file at sites.
func prodEnv(srv *redistest.Server, sites string) map[string]string {
	return map[string]string{
		"VISITORD_ADDR":          "127.0.0.1:0",
		"VISITORD_REDIS_URL":     srv.URL(),
		"VISITORD_COOKIE_SECRET": strings.Repeat("c", 32) + "," + strings.Repeat("d", 32),
		"VISITORD_DATA_KEY":      "k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)),
		"VISITORD_INDEX_KEY":     base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32)),
		"VISITORD_SITES":         sites,
	}
}

func writeSites(tb testing.TB, yaml string) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "sites.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

// oneKeySites writes a production sites file of the opt-out site shop with one
// API key, keyID of role, whose plain value is key.
func oneKeySites(tb testing.TB, keyID, role, key string) string {
	tb.Helper()
	sum := sha256.Sum256([]byte(key))
	return writeSites(tb, `
sites:
  - id: shop
    origins: ["https://shop.example"]
    consent: opt-out
    legal_text: "We record the pages you visit to help our chat team."
    controller: {name: "Shop Ltd", contact: "privacy@shop.example"}
    keys:
      - {id: `+keyID+`, role: `+role+`, sha256: "`+hex.EncodeToString(sum[:])+`"}
`)
}

func TestServeRealRedis(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	sites := oneKeySites(t, "agent-1", "operator", "agent-key")
	in := start(t, prodEnv(srv, sites))
	base := "http://" + in.addr
	client := newRecordingClient()

	out := in.stderr.String()
	for _, unwanted := range []string{"DEVELOPMENT MODE", "random secret", "curl "} {
		if strings.Contains(out, unwanted) {
			t.Errorf("production stderr contains %q:\n%s", unwanted, out)
		}
	}

	resp, body := post(t, client.Client, base+"/v1/track",
		`{"site":"shop","type":"pageview","url":"https://shop.example/products/42?utm_source=news&email=someone%40mail.example#top","title":"Blue mug"}`,
		map[string]string{"Origin": "https://shop.example", "User-Agent": chromeUA})
	var ans trackAnswer
	if err := json.Unmarshal(body, &ans); err != nil || resp.StatusCode != http.StatusOK || !ans.Tracked || ans.Token == "" {
		t.Fatalf("track: %d %s, want 200 tracked:true with a token", resp.StatusCode, body)
	}
	var cookie *http.Cookie
	for _, c := range resp.Cookies() {
		if c.Name == "vt_shop" {
			cookie = c
		}
	}
	if cookie == nil || cookie.Value != ans.Token {
		t.Errorf("Set-Cookie %q, want vt_shop holding the token", resp.Header.Values("Set-Cookie"))
	}
	if got, want := resp.Header.Get("Access-Control-Allow-Origin"), "https://shop.example"; got != want {
		t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, want)
	}

	values := redistest.DumpValues(t, rdb)
	var stored bool
	for k, v := range values {
		if strings.HasPrefix(k, "v:{shop:") && strings.Contains(k, ":s:") &&
			strings.Contains(v, "https://shop.example/products/42?utm_source=news") && strings.Contains(v, "Blue mug") {
			stored = true
		}
		if strings.Contains(v, "someone") || strings.Contains(v, "#top") || strings.Contains(v, ans.Token) {
			t.Errorf("key %s holds the dropped query, the fragment or the token: %s", k, v)
		}
	}
	if !stored {
		t.Errorf("the page view is not in Redis:\n%v", values)
	}
	redistest.AssertAllKeysHaveTTL(t, rdb, func(k string) bool { return strings.HasPrefix(k, "cfg:") })

	// The token signed by the first secret comes back through the header.
	resp, body = post(t, client.Client, base+"/v1/track",
		`{"site":"shop","type":"pageview","url":"https://shop.example/cart"}`,
		map[string]string{"Origin": "https://shop.example", "User-Agent": chromeUA, "X-Visitor-Token": ans.Token})
	var again trackAnswer
	if err := json.Unmarshal(body, &again); err != nil || resp.StatusCode != http.StatusOK || !again.Tracked || again.Token != ans.Token {
		t.Errorf("second page view: %d %s, want tracked with the same token", resp.StatusCode, body)
	}

	if code, b := get(t, client.Client, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz: %d %s, want 200", code, b)
	}
	if code, b := get(t, client.Client, base+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz: %d %s, want 200", code, b)
	}
	if code, _ := get(t, client.Client, base+"/metrics"); code != http.StatusNotFound {
		t.Errorf("public /metrics: %d, want 404 (metrics are on VISITORD_METRICS_ADDR only)", code)
	}
	code, m := get(t, client.Client, "http://"+in.metrics+"/metrics")
	if code != http.StatusOK || !strings.Contains(m, `visitord_track_total{outcome="tracked",type="pageview"} 2`) {
		t.Errorf("/metrics: %d, want 200 counting 2 tracked page views:\n%s", code, grepLines(m, "visitord_track_total"))
	}
	for _, counter := range []string{"visitord_site_flush_failures_total 0", "visitord_site_flush_dropped_total 0", "visitord_redis_pipeline_rejected_total 0"} {
		if !strings.Contains(m, counter) {
			t.Errorf("/metrics lacks %q:\n%s", counter, grepLines(m, "visitord_"))
		}
	}

	// Redis gone: the process lives, readiness says no.
	srv.Stop()
	if code, _ := get(t, client.Client, base+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz with Redis down: %d, want 200", code)
	}
	if code, b := get(t, client.Client, base+"/readyz"); code != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down: %d %s, want 503", code, b)
	}

	if err := in.stop(t); err != nil {
		t.Fatalf("serve after cancel = %v, want nil", err)
	}
	checkLogsClean(t, in.stderr.String(), client.localAddrs(), ans.Token, "/products/42", "utm_source", "someone", "Blue mug", "Chrome/120",
		strings.Repeat("c", 32))
}

func TestRunStartupErrors(t *testing.T) {
	t.Parallel()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	badSites := writeSites(t, "sites:\n  - id: shop\n    origins: [\"https://shop.example\"]\n    consent: sometimes\n")
	bareSites := writeSites(t, "sites:\n  - id: shop\n    origins: [\"https://shop.example\"]\n")
	prodSites := writeSites(t, "sites:\n  - id: shop\n    origins: [\"https://shop.example\"]\n"+
		"    legal_text: \"We record the pages you visit.\"\n    controller: {name: \"Shop Ltd\", contact: \"privacy@shop.example\"}\n")
	secrets := map[string]string{
		"VISITORD_COOKIE_SECRET": strings.Repeat("c", 32),
		"VISITORD_DATA_KEY":      "k1:" + base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{1}, 32)),
		"VISITORD_INDEX_KEY":     base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{2}, 32)),
	}
	with := func(base map[string]string, kv ...string) map[string]string {
		m := map[string]string{"VISITORD_ADDR": "127.0.0.1:0", "VISITORD_METRICS_ADDR": "127.0.0.1:0"}
		for k, v := range base {
			m[k] = v
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	tests := []struct {
		name string
		env  map[string]string
		want []string
	}{
		{name: "redis url without secrets", env: with(nil, "VISITORD_REDIS_URL", "redis://127.0.0.1:1/0"),
			want: []string{"VISITORD_COOKIE_SECRET", "VISITORD_DATA_KEY", "VISITORD_INDEX_KEY"}},
		{name: "bad redis url", env: with(secrets, "VISITORD_REDIS_URL", "mysql://127.0.0.1:1/0", "VISITORD_SITES", prodSites), want: []string{"VISITORD_REDIS_URL"}},
		// Production never falls back to the demo site (issue 18).
		{name: "redis url without sites file", env: with(secrets, "VISITORD_REDIS_URL", "redis://127.0.0.1:1/0"), want: []string{"VISITORD_SITES"}},
		{name: "redis url with a site without legal text", env: with(secrets, "VISITORD_REDIS_URL", "redis://127.0.0.1:1/0", "VISITORD_SITES", bareSites),
			want: []string{"VISITORD_SITES", `site "shop"`, "legal_text", "controller.name", "controller.contact"}},
		{name: "bad sites file", env: with(nil, "VISITORD_SITES", badSites), want: []string{"VISITORD_SITES", `site "shop"`, "consent"}},
		{name: "missing sites file", env: with(nil, "VISITORD_SITES", filepath.Join(t.TempDir(), "nope.yaml")), want: []string{"VISITORD_SITES"}},
		{name: "missing geoip database", env: with(nil, "VISITORD_GEOIP_DB", filepath.Join(t.TempDir(), "missing.mmdb")), want: []string{"VISITORD_GEOIP_DB"}},
		{name: "address not host:port", env: with(nil, "VISITORD_ADDR", "8080"), want: []string{"VISITORD_ADDR"}},
		{name: "address in use", env: with(nil, "VISITORD_ADDR", busy.Addr().String()), want: []string{"VISITORD_ADDR"}},
		{name: "metrics address in use", env: with(nil, "VISITORD_METRICS_ADDR", busy.Addr().String()), want: []string{"VISITORD_METRICS_ADDR"}},
		{name: "bad track timeout", env: with(nil, "VISITORD_TRACK_TIMEOUT", "soon"), want: []string{"VISITORD_TRACK_TIMEOUT"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A start that wrongly succeeds serves until this deadline, then fails below.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stdout, stderr syncBuffer
			err := run(ctx, nil, mapEnv(tt.env), &stdout, &stderr)
			if err == nil {
				t.Fatalf("run = nil, want a startup error naming %v\nstderr:\n%s", tt.want, stderr.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not name %q", err, w)
				}
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) || strings.Contains(stderr.String(), s) {
					t.Errorf("a secret is echoed: error %q, stderr %s", err, stderr.String())
				}
			}
		})
	}
}

func TestRunHashKey(t *testing.T) {
	t.Parallel()
	var stdout, stderr syncBuffer
	if err := run(context.Background(), []string{"hash-key"}, mapEnv(nil), &stdout, &stderr); err != nil {
		t.Fatalf("run hash-key: %v", err)
	}
	m := regexp.MustCompile(`(?m)^key:\s+(\S+)\nsha256:\s+([0-9a-f]{64})$`).FindStringSubmatch(stdout.String())
	if m == nil {
		t.Fatalf("hash-key printed %q, want a key and its sha256", stdout.String())
	}
	sum := sha256.Sum256([]byte(m[1]))
	if got, want := m[2], hex.EncodeToString(sum[:]); got != want {
		t.Errorf("printed sha256 %s, want sha256(key) = %s", got, want)
	}
	if stderr.String() != "" {
		t.Errorf("hash-key wrote to stderr: %q", stderr.String())
	}

	var again syncBuffer
	if err := run(context.Background(), []string{"hash-key"}, mapEnv(nil), &again, io.Discard); err != nil {
		t.Fatal(err)
	}
	if again.String() == stdout.String() {
		t.Error("two hash-key runs printed the same key")
	}
}

func TestRunCommands(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
		wantOut string
	}{
		{name: "unknown command", args: []string{"frobnicate"}, wantErr: "frobnicate"},
		{name: "flag-looking command", args: []string{"--help-me"}, wantErr: "--help-me"},
		{name: "version", args: []string{"version"}, wantOut: version + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var stdout syncBuffer
			err := run(ctx, tt.args, mapEnv(nil), &stdout, io.Discard)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("run(%q) = %v, want an error naming %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("run(%q): %v", tt.args, err)
			}
			if got := stdout.String(); got != tt.wantOut {
				t.Errorf("stdout = %q, want %q", got, tt.wantOut)
			}
		})
	}
}

// Shutdown ends an open live stream at once, so that serve returns within the
// drain bound instead of waiting on a response that never ends.
func TestServeShutdownEndsLiveStreams(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	sites := oneKeySites(t, "agent-1", "operator", "agent-key")
	in := start(t, prodEnv(srv, sites))
	rq, err := http.NewRequest(http.MethodGet, "http://"+in.addr+"/v1/sites/shop/visitors/live/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	rq.Header.Set("Authorization", "Bearer agent-key")
	res, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if ct := res.Header.Get("Content-Type"); res.StatusCode != http.StatusOK || ct != "text/event-stream" {
		t.Fatalf("stream: %d %s", res.StatusCode, ct)
	}
	// The first event is the (empty) live list.
	br := bufio.NewReader(res.Body)
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("stream ended before its snapshot: %v", err)
		}
		if strings.HasPrefix(line, "event: snapshot") {
			break
		}
	}
	ended := make(chan error, 1)
	go func() { _, err := io.Copy(io.Discard, br); ended <- err }()
	if err := in.stop(t); err != nil {
		t.Fatalf("serve: %v", err)
	}
	select {
	case <-ended:
	case <-time.After(startTimeout):
		t.Fatal("the stream did not end at shutdown")
	}
}

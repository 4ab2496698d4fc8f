package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/geoip"
	"github.com/visitord/visitord/internal/config"
	"github.com/visitord/visitord/internal/device"
	"github.com/visitord/visitord/internal/geo"
	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// Test fixtures shared by the handler tests.
const (
	chromeUA    = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36"
	iphoneUA    = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1"
	googlebotUA = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	shopOrigin  = "https://shop.example"
	blogOrigin  = "https://blog.example"
	// londonIP is in the GeoIP fixture: GB, ENG, London, Europe/London.
	londonIP = "81.2.69.160"
)

// testSites is the sites file of the handler tests: one site per consent mode
// and a second tenant for isolation tests.
const testSites = `
sites:
  - id: shop
    origins: ["https://shop.example"]
    consent: opt-out
    redact_paths: ["^/reset/", "^/orders/[0-9]+"]
    keep_query: [utm_source, utm_medium, utm_campaign]
    policy_version: "2026-11"
    legal_text: "We record the pages you visit to help our chat team."
    keys:
      - {id: agent-1, role: operator, sha256: "933174a2b21fc9af707473cd8a34d704c75c44d34c15073977611508c0d94f01"}
      - {id: dpo, role: privacy, sha256: "9b98b2e892e32b76693355ee5ffe2e7a6b98b001059abbc172169dd1e75e4660"}
  - id: optin
    origins: ["https://optin.example"]
    consent: opt-in
    consent_valid_days: 30
    policy_version: "v2"
    legal_text: "Analytics only with your consent."
    ip: full
  - id: onchat
    origins: ["https://chat.example"]
    consent: on-chat
  - id: blog
    origins: ["https://blog.example"]
    consent: opt-out
    ip: drop
    keep_title: false
    session_timeout: 10m
    session_max: 1h
    keys:
      - {id: blog-agent, role: operator, sha256: "f42b4fb64fccedc404554cddb43cd7c6e9dd28730936e97218d3e05e79c41869"}
`

// API keys of testSites, in clear.
const (
	shopOperatorKey = "op-shop-key-0123456789abcdef"
	shopPrivacyKey  = "privacy-shop-key-0123456789abc"
	blogOperatorKey = "op-blog-key-0123456789abcdef"
)

// clock is a settable clock shared by the service under test.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// syncBuffer collects the service's logs across goroutines.
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

// env is the HTTP API on httptest over either the whole stack (newEnv: a
// real redis-server, the fixture GeoIP database, the service with a pinned
// clock), for the end-to-end tests, or a fake of the domain (newFakeEnv in
// service_test.go), for the transport tests.
type env struct {
	t      testing.TB
	srv    *httptest.Server
	redis  *redistest.Server // nil when built by newEnvOnClient
	rdb    redis.UniversalClient
	clock  *clock
	logs   *syncBuffer
	sites  *visitor.Sites
	hasher *visitor.Hasher
	signer *visitor.Signer
	svc    *visitor.Service // nil over a fake (newFakeEnv)
	fake   *fakeService     // nil over Redis (newEnv)
	reg    *prometheus.Registry
	client *http.Client
}

type envOptions struct {
	sites          string
	trustedProxies []netip.Prefix
	cookieSecure   bool
	secrets        [][]byte
	trackTimeout   time.Duration
	storeTimeout   time.Duration
	demo           bool
	limiter        visitor.RateLimiter
	pageViews      *PageViewLimiter
	streams        *Streams
}

var (
	testIndexKey = bytes.Repeat([]byte("i"), 32)
	testSecret   = bytes.Repeat([]byte("s"), 32)
	testDataKey  = bytes.Repeat([]byte("d"), 32)
)

// openAPISpec is api/openapi.yaml, as package api embeds it for the binary.
func openAPISpec(tb testing.TB) []byte {
	tb.Helper()
	b, err := os.ReadFile(specPath)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

func newEnv(t testing.TB, opts ...func(*envOptions)) *env {
	t.Helper()
	o := envOptions{sites: testSites, secrets: [][]byte{testSecret}, trackTimeout: 2 * time.Second}
	for _, f := range opts {
		f(&o)
	}
	rs := redistest.Start(t)
	return newEnvOn(t, rs, o)
}

func newEnvOn(t testing.TB, rs *redistest.Server, o envOptions) *env {
	t.Helper()
	e := newEnvOnClient(t, rs.Client(t), o)
	e.redis = rs
	return e
}

// newEnvOnClient builds the stack on any Redis client: a single node, a
// Sentinel failover client or a Cluster client.
func newEnvOnClient(t testing.TB, rdb redis.UniversalClient, o envOptions) *env {
	t.Helper()
	sites, err := config.ParseSites([]byte(o.sites), func(string) string { return "" }, 1, 1825)
	if err != nil {
		t.Fatalf("sites: %v", err)
	}
	siteSet, err := visitor.NewSites(sites)
	if err != nil {
		t.Fatal(err)
	}
	dbPath := filepath.Join(t.TempDir(), "city.mmdb")
	if err := geoip.WriteFixtureFile(dbPath); err != nil {
		t.Fatal(err)
	}
	loc, err := geo.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { loc.Close() })
	signer, hasher, sealer := testKeys(t, o.secrets)
	store := redisstore.New(rdb)
	if err := store.LoadScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now().UTC().Truncate(time.Millisecond)}
	svc := visitor.NewService(visitor.Deps{Sites: siteSet, Store: store, Signer: signer, Hasher: hasher, Sealer: sealer, Devices: device.NewParser(1024), Locator: loc}, visitor.WithClock(clk.Now))
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	h, err := New(Options{
		Service: svc, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: reg, TrustedProxies: o.trustedProxies, CookieSecure: o.cookieSecure,
		TrackTimeout: o.trackTimeout, StoreTimeout: o.storeTimeout, Ready: store.Ping, OpenAPI: openAPISpec(t),
		Demo: o.demo, Limiter: o.limiter, PageViews: o.pageViews, Streams: o.streams,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e := &env{
		t: t, srv: srv, rdb: rdb, clock: clk, logs: logs, sites: siteSet, hasher: hasher,
		signer: signer, svc: svc, reg: reg, client: srv.Client(),
	}
	// Invariant 3 after every test: whatever it wrote, no key lacks a TTL.
	t.Cleanup(func() {
		if !t.Failed() {
			e.assertTTLs()
		}
	})
	return e
}

// req is one request of a test.
type req struct {
	method  string
	path    string
	body    string
	ctype   string // "" means application/json when there is a body
	headers map[string]string
	cookies []*http.Cookie
}

// resp is a response read whole.
type resp struct {
	status  int
	header  http.Header
	body    []byte
	cookies []*http.Cookie
}

func (r resp) json(t testing.TB) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("response is not JSON: %v: %s", err, r.body)
	}
	return m
}

// errorCode is the code of an error response, "" for any other.
func (r resp) errorCode(t testing.TB) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	code, _ := e["code"].(string)
	return code
}

// cookie returns the named cookie the response set, or nil.
func (r resp) cookie(name string) *http.Cookie {
	for _, c := range r.cookies {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (e *env) do(rq req) resp {
	e.t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	hr, err := http.NewRequest(rq.method, e.srv.URL+rq.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if rq.body != "" {
		ct := rq.ctype
		if ct == "" {
			ct = "application/json"
		}
		hr.Header.Set("Content-Type", ct)
	}
	hr.Header.Set("User-Agent", chromeUA)
	for k, v := range rq.headers {
		hr.Header.Set(k, v)
	}
	for _, c := range rq.cookies {
		hr.AddCookie(c)
	}
	res, err := e.client.Do(hr)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b, cookies: res.Cookies()}
}

// pageview tracks a page view of site with the given token ("" for none) and headers.
func (e *env) pageview(site, url, token string, headers map[string]string) resp {
	e.t.Helper()
	h := map[string]string{}
	for k, v := range headers {
		h[k] = v
	}
	if token != "" {
		h[tokenHeader] = token
	}
	b, _ := json.Marshal(map[string]string{"site": site, "type": "pageview", "url": url, "title": "A page"})
	return e.do(req{method: http.MethodPost, path: "/v1/track", body: string(b), headers: h})
}

// hit sends a heartbeat or leave of site with token.
func (e *env) hit(site, typ, token string) resp {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"site": site, "type": typ})
	return e.do(req{method: http.MethodPost, path: "/v1/track", body: string(b), headers: map[string]string{tokenHeader: token}})
}

// mustTrack tracks a page view and returns the token it answers with.
func (e *env) mustTrack(site, url, token string) string {
	e.t.Helper()
	r := e.pageview(site, url, token, nil)
	m := r.json(e.t)
	if r.status != http.StatusOK || m["tracked"] != true {
		e.t.Fatalf("pageview of %s: status %d, body %s", url, r.status, r.body)
	}
	return m["token"].(string)
}

// visitorID returns the visitor id a token carries.
func (e *env) visitorID(site, token string) string {
	e.t.Helper()
	tok, ok := e.signer.Verify(token, site, e.clock.Now())
	if !ok || tok.Kind != visitor.KindID {
		e.t.Fatalf("token %q is not a valid identity of %s", token, site)
	}
	return tok.VisitorID
}

// actor is the privacy team of site, for reads through the domain of sites
// without a privacy key in testSites.
func (e *env) actor(site string) visitor.Actor {
	e.t.Helper()
	s, err := e.sites.Get(site)
	if err != nil {
		e.t.Fatal(err)
	}
	return visitor.Actor{Site: s, KeyID: "test", Role: visitor.RolePrivacy}
}

// export reads everything stored of a visitor through the domain's export.
func (e *env) export(site, visitorID string) visitor.Export {
	e.t.Helper()
	x, err := e.svc.ExportVisitor(context.Background(), e.actor(site), visitorID)
	if err != nil {
		e.t.Fatalf("export of a visitor of %s: %v", site, err)
	}
	return x
}

// live lists the pseudonyms live on site within the default window, through
// the domain.
func (e *env) live(site string) []string {
	e.t.Helper()
	page, err := e.svc.Live(context.Background(), e.actor(site), 0, "", 0)
	if err != nil {
		e.t.Fatal(err)
	}
	out := []string{}
	for _, v := range page.Visitors {
		out = append(out, v.Pseudonym)
	}
	return out
}

// stats reads a site's counters of the clock's day through the domain, as
// decimal strings.
func (e *env) stats(site string) map[string]string {
	e.t.Helper()
	m, err := e.svc.Stats(context.Background(), e.actor(site), e.clock.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]string{}
	for k, n := range m {
		if n != 0 {
			out[k] = strconv.FormatInt(n, 10)
		}
	}
	return out
}

// session lists a visitor's current session as the store once kept it, read
// through the export: a header item "#<start ms>\t<referrer>", then one item
// "<start ms>\t<duration ms>\t<url>\t<title>" per stored page.
func (e *env) session(site, visitorID string) []string {
	e.t.Helper()
	x := e.export(site, visitorID)
	if x.Profile == nil {
		return nil
	}
	for _, s := range x.Sessions {
		if s.ID != x.Profile.CurrentSession {
			continue
		}
		items := []string{fmt.Sprintf("#%d\t%s", s.Start.UnixMilli(), s.Referrer)}
		for _, p := range s.Pages {
			items = append(items, fmt.Sprintf("%d\t%d\t%s\t%s", p.Start.UnixMilli(), p.Duration.Milliseconds(), p.URL, p.Title))
		}
		return items
	}
	return nil
}

// keys lists every key in Redis.
func (e *env) keys() []string {
	e.t.Helper()
	return redistest.Keys(e.t, e.rdb)
}

// assertTTLs proves invariant 3 over everything the test wrote.
func (e *env) assertTTLs() {
	e.t.Helper()
	redistest.AssertAllKeysHaveTTL(e.t, e.rdb, func(k string) bool { return strings.HasPrefix(k, "cfg:") })
}

// assertLogsClean proves the logs hold none of the given strings (IPs, tokens, paths).
func (e *env) assertLogsClean(secrets ...string) {
	e.t.Helper()
	logs := e.logs.String()
	for _, s := range secrets {
		if s != "" && strings.Contains(logs, s) {
			e.t.Errorf("logs contain %q:\n%s", s, logs)
		}
	}
}

// operatorGet sends an operator request with a Bearer key.
func (e *env) operatorGet(path, key string) resp {
	e.t.Helper()
	h := map[string]string{}
	if key != "" {
		h["Authorization"] = "Bearer " + key
	}
	return e.do(req{method: http.MethodGet, path: path, headers: h})
}

// startChat posts a chat start of site with token ("" for none) and returns the response.
func (e *env) startChat(site, token, name, email, url string, headers map[string]string) resp {
	e.t.Helper()
	h := map[string]string{}
	for k, v := range headers {
		h[k] = v
	}
	if token != "" {
		h[tokenHeader] = token
	}
	b, _ := json.Marshal(map[string]any{"site": site, "contact": map[string]string{"name": name, "email": email},
		"marketing_opt_in": false, "url": url})
	return e.do(req{method: http.MethodPost, path: "/v1/chats", body: string(b), headers: h})
}

// testKeys builds the signer, hasher and sealer of the tests' secrets.
func testKeys(t testing.TB, secrets [][]byte) (*visitor.Signer, *visitor.Hasher, *visitor.Sealer) {
	t.Helper()
	signer, err := visitor.NewSigner(secrets)
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := visitor.NewHasher(testIndexKey)
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := visitor.NewSealer([]visitor.DataKey{{ID: "k1", Key: testDataKey}})
	if err != nil {
		t.Fatal(err)
	}
	return signer, hasher, sealer
}

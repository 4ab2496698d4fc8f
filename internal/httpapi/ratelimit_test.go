package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/visitord/visitord/internal/config"
	"github.com/visitord/visitord/internal/device"
	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// limitSites are two tenants with small limits per IP block and minute: 30
// new visitors, 5 chats and 3 consent (and /v1/me) requests.
const limitSites = `
sites:
  - id: shop
    origins: ["https://shop.example"]
    consent: opt-out
    policy_version: "2026-11"
    rate_limit: {new_visitors_per_minute: 30, chats_per_minute: 5, consent_per_minute: 3}
  - id: blog
    origins: ["https://blog.example"]
    consent: opt-out
    policy_version: "2026-11"
    rate_limit: {new_visitors_per_minute: 30, chats_per_minute: 5, consent_per_minute: 3}
`

// Client addresses of the rate-limit tests, sent as X-Forwarded-For by the
// trusted loopback proxy. ipA2 is in ipA's /24.
const (
	ipA  = "203.0.113.10"
	ipA2 = "203.0.113.99"
	ipB  = "198.51.100.20"
)

// newLimitEnv is the whole stack with the Redis limiter and the page-view
// limiter on (pinned to the env's clock), and loopback as a trusted proxy.
// checkTTLs asserts invariant 3 after the test, as newEnvOn does.
func newLimitEnv(t testing.TB, rs *redistest.Server, checkTTLs bool) *env {
	t.Helper()
	return newLimitEnvWith(t, rs, limitSites, checkTTLs)
}

// newLimitEnvWith is newLimitEnv over the sites file sitesYAML.
func newLimitEnvWith(t testing.TB, rs *redistest.Server, sitesYAML string, checkTTLs bool) *env {
	t.Helper()
	return newLimitEnvOpts(t, rs, sitesYAML, checkTTLs, nil)
}

// newLimitEnvOpts is newLimitEnvWith whose Options tune changes before the
// handler is built (nil: none).
func newLimitEnvOpts(t testing.TB, rs *redistest.Server, sitesYAML string, checkTTLs bool, tune func(*Options)) *env {
	t.Helper()
	sites, err := config.ParseSites([]byte(sitesYAML), func(string) string { return "" }, 1, 1825)
	if err != nil {
		t.Fatalf("sites: %v", err)
	}
	siteSet, err := visitor.NewSites(sites)
	if err != nil {
		t.Fatal(err)
	}
	signer, hasher, sealer := testKeys(t, [][]byte{testSecret})
	rdb := rs.Client(t)
	store := redisstore.New(rdb)
	if err := store.LoadScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	clk := &clock{t: time.Now().UTC().Truncate(time.Millisecond)}
	svc := visitor.NewService(visitor.Deps{Sites: siteSet, Store: store, Signer: signer, Hasher: hasher, Sealer: sealer, Devices: device.NewParser(1024)}, visitor.WithClock(clk.Now))
	pageViews := NewPageViewLimiter()
	pageViews.now = clk.Now
	logs := &syncBuffer{}
	reg := prometheus.NewRegistry()
	o := Options{
		Service: svc, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: reg, TrackTimeout: 2 * time.Second, Ready: store.Ping,
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")},
		Limiter:        redisstore.NewRateLimiter(store), PageViews: pageViews,
	}
	if tune != nil {
		tune(&o)
	}
	h, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e := &env{
		t: t, srv: srv, redis: rs, rdb: rdb, clock: clk, logs: logs, sites: siteSet, hasher: hasher,
		signer: signer, svc: svc, reg: reg, client: srv.Client(),
	}
	if checkTTLs {
		t.Cleanup(func() {
			if !t.Failed() {
				e.assertTTLs()
			}
		})
	}
	return e
}

// from is the header set of a widget request of site's origin from ip.
func from(site, ip string) map[string]string {
	return map[string]string{"Origin": "https://" + site + ".example", "X-Forwarded-For": ip}
}

// assertRateLimited checks a 429 in the API's error shape with a Retry-After
// of whole seconds in [1, maxSeconds].
func assertRateLimited(t *testing.T, r resp, maxSeconds int) {
	t.Helper()
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != "rate_limited" {
		t.Fatalf("status %d, body %s; want 429 rate_limited", r.status, r.body)
	}
	s, err := strconv.Atoi(r.header.Get("Retry-After"))
	if err != nil || s < 1 || s > maxSeconds {
		t.Errorf("Retry-After %q, want whole seconds in [1, %d]", r.header.Get("Retry-After"), maxSeconds)
	}
}

// rateKeys are the rate-limit keys in Redis.
func (e *env) rateKeys() []string {
	e.t.Helper()
	var out []string
	for _, k := range e.keys() {
		if strings.HasPrefix(k, "rate:") {
			out = append(out, k)
		}
	}
	return out
}

var chatKeyPattern = regexp.MustCompile(`^ch:\{[a-z0-9-]+:[^}]+\}$`)

// chatCount counts the chat records of site in Redis.
func (e *env) chatCount(site string) int {
	e.t.Helper()
	n := 0
	for _, k := range e.keys() {
		if chatKeyPattern.MatchString(k) && strings.HasPrefix(k, "ch:{"+site+":") {
			n++
		}
	}
	return n
}

func TestChatRateLimit(t *testing.T) {
	t.Parallel()
	e := newLimitEnv(t, redistest.Start(t), true)
	chat := func(site, ip string) resp {
		t.Helper()
		return e.startChat(site, "", "Ada", "ada@math.example", "https://"+site+".example/help", from(site, ip))
	}
	for i := range 5 {
		if r := chat("shop", ipA); r.status != http.StatusCreated {
			t.Fatalf("chat %d: status %d, body %s; want 201", i+1, r.status, r.body)
		}
	}
	r := chat("shop", ipA)
	// 5 a minute refill one every 12 s.
	assertRateLimited(t, r, 12)
	if c := r.cookie(cookieName("shop")); c != nil {
		t.Errorf("a refused chat set a cookie: %v", c)
	}
	if got, want := e.chatCount("shop"), 5; got != want {
		t.Errorf("chats stored after the refused one: %d, want %d", got, want)
	}

	for _, tc := range []struct {
		name, site, ip string
		want           int
	}{
		{name: "same ip block", site: "shop", ip: ipA2, want: http.StatusTooManyRequests},
		{name: "another ip", site: "shop", ip: ipB, want: http.StatusCreated},
		{name: "another site", site: "blog", ip: ipA, want: http.StatusCreated},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if r := chat(tc.site, tc.ip); r.status != tc.want {
				t.Errorf("status %d, body %s; want %d", r.status, r.body, tc.want)
			}
		})
	}

	// The counter is named by the keyed hash of the truncated IP only, and expires.
	want := "rate:" + visitor.RateLimitKey(e.hasher, "shop", visitor.LimitChat, visitor.BlockSubject(netip.MustParseAddr(ipA)))
	keys := e.rateKeys()
	found := false
	for _, k := range keys {
		found = found || k == want
		for _, leak := range []string{ipA, ipA2, ipB, "203.0.113", "198.51.100", "/24"} {
			if strings.Contains(k, leak) {
				t.Errorf("rate-limit key %q holds %q", k, leak)
			}
		}
	}
	if !found {
		t.Fatalf("rate-limit keys %q, want %q among them", keys, want)
	}
	ttl, err := e.rdb.TTL(context.Background(), want).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > time.Minute {
		t.Errorf("TTL of %s = %v, want in (0, 1m]", want, ttl)
	}
}

func TestConsentRateLimit(t *testing.T) {
	t.Parallel()
	e := newLimitEnv(t, redistest.Start(t), true)
	consent := func(site, ip string) resp {
		t.Helper()
		b, _ := json.Marshal(map[string]any{"site": site, "analytics": true, "marketing": false, "policy_version": "2026-11"})
		return e.do(req{method: http.MethodPut, path: "/v1/consent", body: string(b), headers: from(site, ip)})
	}
	me := func(method, site, ip string) resp {
		t.Helper()
		return e.do(req{method: method, path: "/v1/me?site=" + site, headers: from(site, ip)})
	}
	for i := range 3 {
		if r := consent("shop", ipA); r.status != http.StatusOK {
			t.Fatalf("consent %d: status %d, body %s; want 200", i+1, r.status, r.body)
		}
	}
	// 3 a minute refill one every 20 s.
	assertRateLimited(t, consent("shop", ipA), 20)
	if r := consent("shop", ipB); r.status != http.StatusOK {
		t.Errorf("consent from another IP: status %d, body %s; want 200", r.status, r.body)
	}
	if r := consent("blog", ipA); r.status != http.StatusOK {
		t.Errorf("consent on another site: status %d, body %s; want 200", r.status, r.body)
	}

	// /v1/me has a budget of its own (consent_per_minute), shared by GET and DELETE.
	for i, method := range []string{http.MethodGet, http.MethodDelete, http.MethodGet} {
		if r := me(method, "shop", ipA); r.status == http.StatusTooManyRequests {
			t.Fatalf("/v1/me request %d (%s): 429 within the limit", i+1, method)
		}
	}
	assertRateLimited(t, me(http.MethodDelete, "shop", ipA), 20)
	assertRateLimited(t, me(http.MethodGet, "shop", ipA), 20)
	if r := me(http.MethodGet, "shop", ipB); r.status == http.StatusTooManyRequests {
		t.Errorf("/v1/me from another IP: 429")
	}
	for _, k := range e.rateKeys() {
		if strings.Contains(k, "203.0.113") || strings.Contains(k, "198.51.100") {
			t.Errorf("rate-limit key %q holds an IP", k)
		}
	}
}

func TestPageViewRateLimit(t *testing.T) {
	t.Parallel()
	e := newLimitEnv(t, redistest.Start(t), true)
	view := func(token, ip string) resp {
		t.Helper()
		return e.pageview("shop", "https://shop.example/", token, from("shop", ip))
	}
	// Without a token, a page view is a new visitor: shop allows 30 a minute
	// per IP block.
	for i := range 30 {
		if r := view("", ipA); r.status != http.StatusOK {
			t.Fatalf("page view %d: status %d, body %s; want 200", i+1, r.status, r.body)
		}
	}
	// 30 a minute refill one every 2 s.
	assertRateLimited(t, view("", ipA2), 2)
	if got, want := e.stats("shop")["tracked"], "30"; got != want {
		t.Errorf("tracked counter %q, want %q: a refused page view was counted", got, want)
	}
	if r := view("", ipB); r.status != http.StatusOK {
		t.Errorf("another IP block: status %d, body %s; want 200", r.status, r.body)
	}
	if r := e.pageview("blog", "https://blog.example/", "", from("blog", ipA)); r.status != http.StatusOK {
		t.Errorf("another site: status %d, body %s; want 200", r.status, r.body)
	}

	// A visitor with a token is counted by identity, not by the spent block:
	// page views, heartbeats and leaves share its 120 a minute.
	token := view("", ipB).json(t)["token"].(string)
	hb := func() resp {
		return e.do(req{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"heartbeat"}`,
			headers: map[string]string{"Origin": shopOrigin, "X-Forwarded-For": ipA, tokenHeader: token}})
	}
	for i := range visitor.IdentityHitsPerMinute {
		var r resp
		if i%2 == 0 {
			r = view(token, ipA)
		} else {
			r = hb()
		}
		if r.status != http.StatusOK {
			t.Fatalf("call %d of the identity: status %d, body %s; want 200", i+1, r.status, r.body)
		}
	}
	// 120 a minute refill one every 0.5 s: Retry-After rounds up to 1.
	assertRateLimited(t, hb(), 1)
	assertRateLimited(t, view(token, ipB), 1)

	// Two seconds refill one new visitor of the block and four calls of the identity.
	e.clock.Advance(2 * time.Second)
	if r := view("", ipA); r.status != http.StatusOK {
		t.Errorf("new visitor after 2 s: status %d, body %s; want 200", r.status, r.body)
	}
	assertRateLimited(t, view("", ipA), 2)
	for i := range 4 {
		if r := view(token, ipA); r.status != http.StatusOK {
			t.Fatalf("identity's call %d after 2 s: status %d, body %s; want 200", i+1, r.status, r.body)
		}
	}
	assertRateLimited(t, view(token, ipA), 1)
	// The page-view limit lives in the pod: nothing of it is in Redis.
	if keys := e.rateKeys(); len(keys) != 0 {
		t.Errorf("page views wrote rate-limit keys %q", keys)
	}
	e.assertLogsClean(ipA, ipB, "203.0.113", token)
}

func TestRateLimitFailsOpen(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	// Short budgets: the test waits on both with Redis down.
	e := newLimitEnvOpts(t, rs, limitSites, false, func(o *Options) {
		o.RateLimitTimeout, o.StoreTimeout = 100*time.Millisecond, 300*time.Millisecond
	})
	rs.Stop()
	r := e.startChat("shop", "", "Ada", "ada@math.example", "https://shop.example/help", from("shop", ipA))
	// The limiter lets the chat through; the chat itself cannot be stored.
	if r.status != http.StatusServiceUnavailable || r.errorCode(t) != "store_unavailable" {
		t.Fatalf("chat with Redis down: status %d, body %s; want 503 store_unavailable, not 429 or 500", r.status, r.body)
	}
	var warns int
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, `"msg":"rate limit not applied"`) {
			warns++
			if !strings.Contains(l, `"level":"WARN"`) {
				t.Errorf("rate-limit failure logged as %s, want WARN", l)
			}
		}
	}
	if warns != 1 {
		t.Errorf("rate-limit failure logged %d times, want once:\n%s", warns, e.logs.String())
	}
	e.assertLogsClean(ipA, "203.0.113")
}

// newCallerAllocs is what a caller new to the page-view limiter allocates:
// its bucket, otter's node for it and the task that tells the eviction policy.
const newCallerAllocs = 3

func TestPageViewLimiterBounded(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	p := NewPageViewLimiter()
	p.now = func() time.Time { return now }

	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const distinct = 300_000
	for i := range distinct {
		var ok bool
		switch i % 3 {
		case 0: // distinct /24s
			ok, _ = p.AllowBlock("shop", netip.AddrFrom4([4]byte{byte(1 + i>>16), byte(i >> 8), byte(i), 1}), 600)
		case 1: // distinct /48s
			ok, _ = p.AllowBlock("shop", netip.MustParseAddr(fmt.Sprintf("2001:%x:%x::1", 0x100+i>>16, i&0xffff)), 600)
		default: // distinct identities
			ok, _ = p.AllowIdentity("shop", fmt.Sprintf("visitor-%d", i), 120)
		}
		if !ok {
			t.Fatalf("first hit %d refused", i)
		}
	}
	held := p.len()
	if held > MaxLimiterEntries {
		t.Errorf("after %d distinct callers the limiter holds %d entries, want at most %d", distinct, held, MaxLimiterEntries)
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapAlloc) - int64(before.HeapAlloc)
	t.Logf("%d distinct callers: %d entries held, heap grew %d bytes (%d per entry)", distinct, held, grown, grown/int64(max(held, 1)))
	if budget := int64(MaxLimiterEntries) * 320; grown > budget {
		t.Errorf("heap grew %d bytes for %d distinct callers, want at most %d (320 bytes an entry)", grown, distinct, budget)
	}

	// A new caller of a full limiter costs its cache entry and no more: the
	// flood of new callers stays cheap.
	fresh := make([]string, 101)
	for i := range fresh {
		fresh[i] = fmt.Sprintf("fresh-%d", i)
	}
	n := 0
	if allocs := testing.AllocsPerRun(100, func() { p.AllowIdentity("shop", fresh[n], 120); n++ }); allocs > newCallerAllocs {
		t.Errorf("a new caller of a full limiter allocates %v times, want at most %d", allocs, newCallerAllocs)
	}

	// Through a flood of new callers into the full limiter, a caller who keeps
	// calling keeps its bucket: the eviction policy does not give it a fresh
	// budget.
	for i := range 120 {
		if ok, _ := p.AllowIdentity("shop", "steady", 120); !ok {
			t.Fatalf("steady caller's call %d refused within the minute's budget", i+1)
		}
		for j := range 100 {
			p.AllowIdentity("shop", fmt.Sprintf("flood-%d-%d", i, j), 120)
		}
	}
	if ok, _ := p.AllowIdentity("shop", "steady", 120); ok {
		t.Error("steady caller's 121st call within the minute allowed amid a flood of new callers")
	}
}

func TestPageViewLimiterBucket(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	p := NewPageViewLimiter()
	p.now = func() time.Time { return now }
	ip := netip.MustParseAddr("2001:db8:1:2::5")
	const perMinute = 120
	for i := range perMinute {
		if ok, _ := p.AllowBlock("shop", ip, perMinute); !ok {
			t.Fatalf("hit %d refused within the minute's budget", i+1)
		}
		if ok, _ := p.AllowIdentity("shop", "ada", perMinute); !ok {
			t.Fatalf("identity's hit %d refused within the minute's budget", i+1)
		}
	}
	for _, tc := range []struct {
		name   string
		allow  func() (bool, time.Duration)
		wantOK bool
	}{
		{name: "same ip", allow: func() (bool, time.Duration) { return p.AllowBlock("shop", ip, perMinute) }},
		{name: "same /48", allow: func() (bool, time.Duration) {
			return p.AllowBlock("shop", netip.MustParseAddr("2001:db8:1:ffff::1"), perMinute)
		}},
		{name: "same identity", allow: func() (bool, time.Duration) { return p.AllowIdentity("shop", "ada", perMinute) }},
		{name: "another /48", wantOK: true, allow: func() (bool, time.Duration) {
			return p.AllowBlock("shop", netip.MustParseAddr("2001:db8:2::5"), perMinute)
		}},
		{name: "another site", wantOK: true, allow: func() (bool, time.Duration) { return p.AllowBlock("blog", ip, perMinute) }},
		{name: "another identity", wantOK: true, allow: func() (bool, time.Duration) { return p.AllowIdentity("shop", "grace", perMinute) }},
		{name: "identity on another site", wantOK: true, allow: func() (bool, time.Duration) {
			return p.AllowIdentity("blog", "ada", perMinute)
		}},
		{name: "no limit", wantOK: true, allow: func() (bool, time.Duration) { return p.AllowBlock("shop", ip, 0) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ok, retry := tc.allow()
			if ok != tc.wantOK {
				t.Fatalf("Allow = %v, want %v", ok, tc.wantOK)
			}
			if !ok && (retry <= 0 || retry > time.Minute/perMinute) {
				t.Errorf("retryAfter %v, want in (0, %v]", retry, time.Minute/perMinute)
			}
		})
	}
	now = now.Add(time.Minute / perMinute)
	if ok, _ := p.AllowBlock("shop", ip, perMinute); !ok {
		t.Errorf("refused after a refill interval")
	}
	if ok, _ := p.AllowBlock("shop", ip, perMinute); ok {
		t.Errorf("allowed twice after one refill interval")
	}
	// The hot path: a caller already known costs no allocation.
	if n := testing.AllocsPerRun(100, func() { p.AllowIdentity("shop", "ada", perMinute) }); n != 0 {
		t.Errorf("AllowIdentity of a known identity allocates %v times, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { p.AllowBlock("shop", ip, perMinute) }); n != 0 {
		t.Errorf("AllowBlock of a known IP block allocates %v times, want 0", n)
	}
	// A returning visitor's bucket is full again between its page views: it
	// is still a known caller.
	if n := testing.AllocsPerRun(100, func() { now = now.Add(time.Minute); p.AllowIdentity("shop", "ada", perMinute) }); n != 0 {
		t.Errorf("AllowIdentity of a returning identity allocates %v times, want 0", n)
	}
}

// BenchmarkPageViewLimiter measures the page-view limiter's hot path: a known
// identity (0 allocs/op) and a stream of callers ten times the limiter's bound,
// which reuses evicted entries.
func BenchmarkPageViewLimiter(b *testing.B) {
	b.Run("known identity", func(b *testing.B) {
		p := NewPageViewLimiter()
		b.ReportAllocs()
		for b.Loop() {
			p.AllowIdentity("shop", "0123456789abcdef0123456789abcdef", 1<<30)
		}
	})
	b.Run("many identities", func(b *testing.B) {
		p := NewPageViewLimiter()
		ids := make([]string, 10*MaxLimiterEntries)
		for i := range ids {
			ids[i] = fmt.Sprintf("%032x", i)
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			p.AllowIdentity("shop", ids[i%len(ids)], 120)
			i++
		}
		b.ReportMetric(float64(p.len()), "entries")
	})
}

// BenchmarkTrackReturningLimited is BenchmarkTrackReturning with the page-view
// limiter on, as in production: the identity's limit costs no allocation and
// the token is verified once. The pinned clock moves a second a call, so the
// identity stays within its 120 a minute.
func BenchmarkTrackReturningLimited(b *testing.B) {
	e := newLimitEnvWith(b, redistest.Start(b), floodSites, false)
	benchReturning(b, e.srv.Config.Handler, tokenFrom(e, ipB), func() { e.clock.Advance(time.Second) })
}

// The README's limits table lists every limit with the budget the code applies
// under the sites file's defaults.
func TestRateLimitsDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(b), "\n### Rate limits\n")
	if !ok {
		t.Fatal("README.md has no Rate limits section")
	}
	section, _, _ = strings.Cut(section, "\n#")
	routes := map[visitor.LimitKind]string{
		visitor.LimitTrack: "`POST /v1/track`", visitor.LimitConsent: "`PUT /v1/consent`",
		visitor.LimitMe: "`GET\\|DELETE /v1/me`", visitor.LimitChat: "`POST /v1/chats`", visitor.LimitAPI: "operator and privacy routes",
	}
	under := map[visitor.LimitBy]string{visitor.ByIdentity: "identity", visitor.ByIPBlock: "IP block", visitor.ByAPIKey: "API key (per site)"}
	fields := map[visitor.LimitKind]string{
		visitor.LimitTrack: "new_visitors_per_minute", visitor.LimitConsent: "consent_per_minute",
		visitor.LimitMe: "consent_per_minute", visitor.LimitChat: "chats_per_minute",
	}
	defaults := visitor.RateLimit{NewVisitorsPerMinute: config.DefaultNewVisitorsPerMinute,
		ChatsPerMinute: config.DefaultChatsPerMinute, ConsentPerMinute: config.DefaultConsentPerMinute}
	documented := map[visitor.Limit]bool{}
	for line := range strings.SplitSeq(section, "\n") {
		cells := strings.Split(strings.Trim(line, "| "), " | ")
		if len(cells) != 4 || !strings.HasPrefix(line, "| ") {
			continue
		}
		for _, l := range visitor.Limits {
			if !strings.HasPrefix(cells[0], routes[l.Kind]) || cells[1] != under[l.By] {
				continue
			}
			n := l.By == visitor.ByIPBlock || l.Kind == visitor.LimitChat
			want := strconv.Itoa(defaults.PerMinute(l.Kind, l.By))
			if n {
				want = fmt.Sprintf("`rate_limit.%s` (default %d)", fields[l.Kind], defaults.PerMinute(l.Kind, l.By))
			}
			where := "Redis, all pods"
			if l.Kind == visitor.LimitTrack {
				where = "each pod, in process"
			}
			if cells[2] != want || cells[3] != where {
				t.Errorf("README row %q, want limit %q, where %q", line, want, where)
			}
			documented[l] = true
		}
	}
	for _, l := range visitor.Limits {
		if !documented[l] {
			t.Errorf("README's limits table has no row for %s by %s", l.Kind, l.By)
		}
		for _, label := range []string{"`" + string(l.Kind) + "`", "`" + string(l.By) + "`"} {
			if !strings.Contains(section, label) {
				t.Errorf("README's limits section does not name the metric label %s", label)
			}
		}
	}
}

// Concurrent callers of one identity share one budget exactly.
func TestPageViewLimiterConcurrent(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	p := NewPageViewLimiter()
	p.now = func() time.Time { return now }
	var allowed atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 100 {
				if ok, _ := p.AllowIdentity("shop", "ada", visitor.IdentityHitsPerMinute); ok {
					allowed.Add(1)
				}
				p.AllowBlock("shop", netip.MustParseAddr(ipA), 600)
			}
		})
	}
	wg.Wait()
	if got := allowed.Load(); got != visitor.IdentityHitsPerMinute {
		t.Errorf("800 concurrent calls of one identity allowed %d, want %d", got, visitor.IdentityHitsPerMinute)
	}
}

package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

func TestTrackRecordsPageViewsAndSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.pageview("shop", shopOrigin+"/products/42?utm_source=mail&email=a@b.example#top", "", map[string]string{
		"Origin": shopOrigin, "X-Forwarded-For": londonIP,
	})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	m := r.json(t)
	token, _ := m["token"].(string)
	if m["tracked"] != true || token == "" {
		t.Fatalf("body %s", r.body)
	}
	ck := r.cookie("vt_shop")
	if ck == nil || ck.Value != token || !ck.HttpOnly {
		t.Fatalf("identity cookie %+v", ck)
	}
	if got := r.header.Get("Access-Control-Allow-Origin"); got != shopOrigin {
		t.Errorf("Access-Control-Allow-Origin = %q", got)
	}
	id := e.visitorID("shop", token)
	items := e.session("shop", id)
	if len(items) != 2 || !strings.HasPrefix(items[0], "#") {
		t.Fatalf("session items %q", items)
	}
	if !strings.Contains(items[1], "\t"+shopOrigin+"/products/42?utm_source=mail\t") {
		t.Errorf("stored page %q: want the query minimised and the fragment dropped", items[1])
	}

	// A second page 10 s later closes the first page's time.
	e.clock.Advance(10 * time.Second)
	e.mustTrack("shop", shopOrigin+"/cart", token)
	items = e.session("shop", id)
	if len(items) != 3 {
		t.Fatalf("session items %q", items)
	}
	if f := strings.Split(items[1], "\t"); f[1] != "10000" {
		t.Errorf("time on first page = %s ms, want 10000", f[1])
	}
	p := e.current("shop", id)
	if p["np"] != "2" || p["ns"] != "1" || p["br"] != "Chrome" || p["os"] == "" {
		t.Errorf("profile %v", p)
	}
	if got := e.stats("shop")["tracked"]; got != "2" {
		t.Errorf("tracked counter = %q", got)
	}
}

// Fixtures of the privacy tests, beside those of env_test.go.
const (
	curlBotUA    = "curl/8.0"
	originOptin  = "https://optin.example"
	originOnchat = "https://chat.example"
)

// originOf is the origin of each test site.
var originOf = map[string]string{"shop": shopOrigin, "optin": originOptin, "onchat": originOnchat, "blog": blogOrigin}

// trackWith sends a page view of site to url with headers and cookies; unlike
// e.pageview it can carry the identity as a cookie.
func trackWith(e *env, site, url string, headers map[string]string, cookies ...*http.Cookie) resp {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"site": site, "type": "pageview", "url": url, "title": "A page"})
	return e.do(req{method: http.MethodPost, path: "/v1/track", body: string(b), headers: headers, cookies: cookies})
}

// hitWith sends a heartbeat or leave of site with headers.
func hitWith(e *env, site, typ string, headers map[string]string) resp {
	e.t.Helper()
	b, _ := json.Marshal(map[string]string{"site": site, "type": typ})
	return e.do(req{method: http.MethodPost, path: "/v1/track", body: string(b), headers: headers})
}

// identityCookie is the cookie a browser sends back for site.
func identityCookie(site, token string) *http.Cookie {
	return &http.Cookie{Name: cookieName(site), Value: token}
}

// wantRefused fails t unless r answers exactly {"tracked":false,"reason":reason}.
func wantRefused(t testing.TB, r resp, reason string) {
	t.Helper()
	if got, want := r.status, http.StatusOK; got != want {
		t.Fatalf("status %d, want %d: %s", got, want, r.body)
	}
	var got map[string]any
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("body is not JSON: %v: %s", err, r.body)
	}
	if diff := cmp.Diff(map[string]any{"tracked": false, "reason": reason}, got); diff != "" {
		t.Fatalf("body (-want +got):\n%s", diff)
	}
}

// wantNoCookie fails t if r sets any cookie.
func wantNoCookie(t testing.TB, r resp) {
	t.Helper()
	if sc := r.header.Values("Set-Cookie"); len(sc) != 0 {
		t.Fatalf("Set-Cookie %q, want none", sc)
	}
}

// wantExpiredCookie fails t unless r's only cookie expires the named one.
func wantExpiredCookie(t testing.TB, r resp, name string) {
	t.Helper()
	if len(r.cookies) != 1 {
		t.Fatalf("Set-Cookie %q, want exactly one expiring %s", r.header.Values("Set-Cookie"), name)
	}
	ck := r.cookies[0]
	// net/http reads Max-Age=0 (and below) as MaxAge -1.
	expired := ck.MaxAge < 0 || (!ck.Expires.IsZero() && ck.Expires.Before(time.Now()))
	if ck.Name != name || !expired || ck.Path != "/" {
		t.Fatalf("Set-Cookie %q, want %s expired on path /", r.header.Values("Set-Cookie"), name)
	}
}

// nonStatKeys lists every key except the anonymous counters.
func nonStatKeys(e *env) []string {
	e.t.Helper()
	return slices.DeleteFunc(e.keys(), func(k string) bool { return strings.HasPrefix(k, "st:") })
}

// visitorKeys lists the keys of one visitor (profile, sessions, consent).
func visitorKeys(e *env, site, visitorID string) []string {
	e.t.Helper()
	p := e.profileKey(site, visitorID)
	return slices.DeleteFunc(e.keys(), func(k string) bool { return k != p && !strings.HasPrefix(k, p+":") })
}

// statCount reads one counter of site for the clock's day; 0 when absent.
func statCount(e *env, site, field string) int {
	e.t.Helper()
	v, ok := e.stats(site)[field]
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		e.t.Fatalf("counter %s of %s = %q", field, site, v)
	}
	return n
}

// pttl reads a key's time to live.
func pttl(e *env, key string) time.Duration {
	e.t.Helper()
	d, err := e.rdb.PTTL(context.Background(), key).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// liveScore reads a visitor's entry in the site's live set; ok is false without one.
func liveScore(e *env, site, visitorID string) (score float64, ok bool) {
	e.t.Helper()
	vkey := e.hasher.VisitorKey(site, visitorID)
	s, err := e.rdb.ZScore(context.Background(), redisstore.LiveKeyOf(site, vkey), vkey).Result()
	if errors.Is(err, redis.Nil) {
		return 0, false
	}
	if err != nil {
		e.t.Fatal(err)
	}
	return s, true
}

// Invariant 1: a DNT or GPC page view stores nothing, sets no cookie, expires
// an identity cookie it carries (even a foreign one) and is only counted.
func TestTrackDNTAndGPCStoreNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header string
		reason string
		cookie string // identity cookie carried, "" for none
	}{
		{name: "dnt", header: "DNT", reason: "dnt"},
		{name: "gpc", header: "Sec-GPC", reason: "gpc"},
		{name: "dnt with a foreign cookie", header: "DNT", reason: "dnt", cookie: "not-a-token"},
		{name: "gpc with a foreign cookie", header: "Sec-GPC", reason: "gpc", cookie: "not-a-token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			e.mustTrack("shop", shopOrigin+"/", "") // someone else, so the store is not empty
			before := nonStatKeys(e)

			var cookies []*http.Cookie
			if tt.cookie != "" {
				cookies = append(cookies, identityCookie("shop", tt.cookie))
			}
			r := trackWith(e, "shop", shopOrigin+"/products/7", map[string]string{"Origin": shopOrigin, tt.header: "1"}, cookies...)
			wantRefused(t, r, tt.reason)
			if tt.cookie != "" {
				wantExpiredCookie(t, r, "vt_shop")
			} else {
				wantNoCookie(t, r)
			}
			if diff := cmp.Diff(before, nonStatKeys(e)); diff != "" {
				t.Errorf("keys other than counters changed (-before +after):\n%s", diff)
			}
			if got, want := statCount(e, "shop", tt.reason), 1; got != want {
				t.Errorf("counter %s = %d, want %d", tt.reason, got, want)
			}
			if got, want := statCount(e, "shop", "tracked"), 1; got != want {
				t.Errorf("counter tracked = %d, want %d", got, want)
			}
		})
	}
}

// Invariant 1: a DNT page view or heartbeat with a valid identity touches
// nothing of the visitor: no field, no TTL, no live entry; the identity cookie
// it carries is expired.
func TestTrackDNTRefreshesNoTTL(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := e.mustTrack("shop", shopOrigin+"/a", "")
	id := e.visitorID("shop", token)
	pk := e.profileKey("shop", id)
	profile := e.current("shop", id)
	ttlKeys := []string{pk, pk + ":S", pk + ":s:" + profile["sid"]}
	before := map[string]time.Duration{}
	for _, k := range ttlKeys {
		before[k] = pttl(e, k)
	}
	live, ok := liveScore(e, "shop", id)
	if !ok {
		t.Fatal("tracked visitor is not in the live set")
	}
	keys := nonStatKeys(e)

	// The service's clock and Redis's real clock both move on, so a refreshed
	// TTL would be back at its full length.
	e.clock.Advance(time.Hour)
	time.Sleep(100 * time.Millisecond)

	r := trackWith(e, "shop", shopOrigin+"/b", map[string]string{"DNT": "1"}, identityCookie("shop", token))
	wantRefused(t, r, "dnt")
	wantExpiredCookie(t, r, "vt_shop")
	hb := hitWith(e, "shop", "heartbeat", map[string]string{"DNT": "1", tokenHeader: token})
	wantRefused(t, hb, "dnt")
	wantNoCookie(t, hb)

	if diff := cmp.Diff(keys, nonStatKeys(e)); diff != "" {
		t.Errorf("keys other than counters changed (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(profile, e.current("shop", id)); diff != "" {
		t.Errorf("profile changed (-before +after):\n%s", diff)
	}
	if got, want := len(e.session("shop", id)), 2; got != want {
		t.Errorf("session has %d items, want %d", got, want)
	}
	for _, k := range ttlKeys {
		after := pttl(e, k)
		if before[k]-after < 50*time.Millisecond {
			t.Errorf("TTL of %s went from %s to %s: refreshed by a DNT request", k, before[k], after)
		}
	}
	if got, ok := liveScore(e, "shop", id); !ok || got != live {
		t.Errorf("live entry = %v (present %t), want %v", got, ok, live)
	}
	// The heartbeat is not a page view: one dnt count, from the page view.
	if got, want := statCount(e, "shop", "dnt"), 1; got != want {
		t.Errorf("counter dnt = %d, want %d", got, want)
	}
}

// Invariant 1: GPC with a valid identity is an objection: the visitor's
// behaviour data (profile, sessions, session index, live entry) goes at once;
// the consent records stay as proof, with a gpc withdrawal beside them.
func TestTrackGPCDeletesBehaviourKeepsConsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := putConsent(e, "optin", true, false, "v2", map[string]string{"Origin": originOptin})
	if r.status != http.StatusOK {
		t.Fatalf("grant: status %d: %s", r.status, r.body)
	}
	token, _ := r.json(t)["token"].(string)
	id := e.visitorID("optin", token)
	e.mustTrack("optin", originOptin+"/a", token)
	e.clock.Advance(time.Minute)
	e.mustTrack("optin", originOptin+"/b", token)
	e.clock.Advance(31 * time.Minute) // past session_timeout: a second session
	e.mustTrack("optin", originOptin+"/c", token)

	pk := e.profileKey("optin", id)
	sids, err := e.rdb.ZRange(context.Background(), pk+":S", 0, -1).Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(sids) != 2 {
		t.Fatalf("session index %q, want 2 sessions", sids)
	}
	want := []string{pk, pk + ":S", pk + ":c", pk + ":r", pk + ":s:" + sids[0], pk + ":s:" + sids[0] + ":m", pk + ":s:" + sids[1], pk + ":s:" + sids[1] + ":m"}
	slices.Sort(want)
	if diff := cmp.Diff(want, visitorKeys(e, "optin", id)); diff != "" {
		t.Fatalf("visitor keys before GPC (-want +got):\n%s", diff)
	}
	if _, ok := liveScore(e, "optin", id); !ok {
		t.Fatal("tracked visitor is not in the live set")
	}

	e.clock.Advance(time.Minute)
	g := trackWith(e, "optin", originOptin+"/d", map[string]string{"Origin": originOptin, "Sec-GPC": "1"}, identityCookie("optin", token))
	wantRefused(t, g, "gpc")
	wantExpiredCookie(t, g, "vt_optin")

	if diff := cmp.Diff([]string{pk + ":c", pk + ":r"}, visitorKeys(e, "optin", id)); diff != "" {
		t.Errorf("visitor keys after GPC (-want +got):\n%s", diff)
	}
	if _, ok := liveScore(e, "optin", id); ok {
		t.Error("the visitor is still in the live set after GPC")
	}
	// The grant stays as proof; the objection adds a gpc withdrawal cut like
	// an erased record: no visitor id, IP or User-Agent.
	recs := consentRecordsOf(e, "optin", id)
	if len(recs) != 2 || !recs[0].Analytics || recs[0].VisitorID != id {
		t.Fatalf("consent records after GPC = %+v, want the grant and a gpc withdrawal", recs)
	}
	if w := recs[1]; w.Method != "gpc" || w.Analytics || w.Marketing || w.VisitorID != "" || w.IP != "" || w.UserAgent != "" ||
		w.PolicyVersion != "v2" || !w.Time.Equal(e.clock.Now()) {
		t.Errorf("gpc withdrawal record = %+v", w)
	}
	if got, want := statCount(e, "optin", "gpc"), 1; got != want {
		t.Errorf("counter gpc = %d, want %d", got, want)
	}
}

// Invariant 1: when several reasons apply, gpc > dnt > bot > no_consent; each
// refused page view stores nothing, sets no cookie and counts only its reason.
func TestTrackRefusalPrecedence(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		site string
		gpc  bool
		dnt  bool
		ua   string
		want string
	}{
		{name: "gpc over dnt, bot and missing consent", site: "optin", gpc: true, dnt: true, ua: googlebotUA, want: "gpc"},
		{name: "gpc over dnt", site: "shop", gpc: true, dnt: true, ua: chromeUA, want: "gpc"},
		{name: "gpc over bot", site: "shop", gpc: true, ua: curlBotUA, want: "gpc"},
		{name: "gpc over missing consent", site: "optin", gpc: true, ua: chromeUA, want: "gpc"},
		{name: "dnt over bot and missing consent", site: "optin", dnt: true, ua: googlebotUA, want: "dnt"},
		{name: "dnt over bot", site: "shop", dnt: true, ua: googlebotUA, want: "dnt"},
		{name: "dnt over missing consent", site: "onchat", dnt: true, ua: chromeUA, want: "dnt"},
		{name: "bot over missing consent", site: "optin", ua: googlebotUA, want: "bot"},
		{name: "bot over missing chat", site: "onchat", ua: curlBotUA, want: "bot"},
		{name: "missing consent alone", site: "optin", ua: chromeUA, want: "no_consent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			h := map[string]string{"Origin": originOf[tt.site], "User-Agent": tt.ua}
			if tt.gpc {
				h["Sec-GPC"] = "1"
			}
			if tt.dnt {
				h["DNT"] = "1"
			}
			r := trackWith(e, tt.site, originOf[tt.site]+"/pricing", h)
			wantRefused(t, r, tt.want)
			wantNoCookie(t, r)
			if keys := nonStatKeys(e); len(keys) != 0 {
				t.Errorf("keys written: %q", keys)
			}
			if diff := cmp.Diff(map[string]string{tt.want: "1"}, e.stats(tt.site)); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
}

// Invariants 1 and 10: under DNT or GPC the widget sends only a count ping,
// {"site","type":"pageview"} without URL; it is answered and counted.
func TestTrackCountPingWithoutURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		header string
		reason string
	}{
		{name: "dnt", header: "DNT", reason: "dnt"},
		{name: "gpc", header: "Sec-GPC", reason: "gpc"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := e.do(req{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"pageview"}`,
				headers: map[string]string{"Origin": shopOrigin, tt.header: "1"}})
			wantRefused(t, r, tt.reason)
			wantNoCookie(t, r)
			if keys := nonStatKeys(e); len(keys) != 0 {
				t.Errorf("keys written: %q", keys)
			}
			if got, want := statCount(e, "shop", tt.reason), 1; got != want {
				t.Errorf("counter %s = %d, want %d", tt.reason, got, want)
			}
		})
	}
}

// Invariant 9: bots, by User-Agent, are not tracked: nothing stored, no
// cookie, not even for a bot replaying a visitor's identity; they are counted.
func TestTrackBotsNotTracked(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		ua       string
		identity bool
	}{
		{name: "googlebot", ua: googlebotUA},
		{name: "curl", ua: curlBotUA},
		{name: "empty user agent", ua: ""},
		{name: "googlebot with an identity", ua: googlebotUA, identity: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			token := e.mustTrack("shop", shopOrigin+"/", "")
			id := e.visitorID("shop", token)
			profile := e.current("shop", id)
			before := nonStatKeys(e)
			e.clock.Advance(time.Minute)

			// An empty User-Agent header makes net/http send none.
			h := map[string]string{"Origin": shopOrigin, "User-Agent": tt.ua}
			var cookies []*http.Cookie
			if tt.identity {
				cookies = append(cookies, identityCookie("shop", token))
			}
			r := trackWith(e, "shop", shopOrigin+"/crawled", h, cookies...)
			wantRefused(t, r, "bot")
			wantNoCookie(t, r)
			if diff := cmp.Diff(before, nonStatKeys(e)); diff != "" {
				t.Errorf("keys other than counters changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(profile, e.current("shop", id)); diff != "" {
				t.Errorf("profile changed (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]string{"tracked": "1", "bot": "1"}, e.stats("shop")); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
}

// Invariant 10: refused page views are counted per site, per day and reason,
// with no identifier and no URL; tracked ones are counted too; heartbeats and
// leaves are not.
func TestRefusedPageViewsCountedAnonymously(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	const marker = "very-unique-7f3a"
	refused := "/private/" + marker + "?q=" + marker
	token := e.mustTrack("shop", shopOrigin+"/tracked", "")

	views := []struct {
		site    string
		headers map[string]string
		reason  string
	}{
		{"shop", map[string]string{"DNT": "1"}, "dnt"},
		{"shop", map[string]string{"DNT": "1", tokenHeader: token}, "dnt"},
		{"shop", map[string]string{"Sec-GPC": "1"}, "gpc"},
		{"shop", map[string]string{"User-Agent": googlebotUA}, "bot"},
		{"shop", map[string]string{"User-Agent": curlBotUA}, "bot"},
		{"optin", nil, "no_consent"},
		{"optin", map[string]string{"User-Agent": iphoneUA}, "no_consent"},
		{"onchat", nil, "no_consent"},
	}
	for _, v := range views {
		wantRefused(t, trackWith(e, v.site, originOf[v.site]+refused, v.headers), v.reason)
	}
	hits := []struct {
		typ     string
		headers map[string]string
	}{
		{"heartbeat", map[string]string{tokenHeader: token}},
		{"leave", map[string]string{tokenHeader: token}},
		{"heartbeat", map[string]string{tokenHeader: token, "DNT": "1"}},
		{"heartbeat", map[string]string{tokenHeader: token, "Sec-GPC": "0", "User-Agent": googlebotUA}},
		{"heartbeat", nil}, // no identity: no_session
	}
	for _, h := range hits {
		if r := hitWith(e, "shop", h.typ, h.headers); r.status != http.StatusOK {
			t.Fatalf("%s: status %d: %s", h.typ, r.status, r.body)
		}
	}

	day := e.clock.Now().Format(time.DateOnly)
	for site, want := range map[string]map[string]string{
		"shop":   {"tracked": "1", "dnt": "2", "gpc": "1", "bot": "2"},
		"optin":  {"no_consent": "2"},
		"onchat": {"no_consent": "1"},
	} {
		if diff := cmp.Diff(want, e.stats(site)); diff != "" {
			t.Errorf("counters of %s (-want +got):\n%s", site, diff)
		}
		for _, key := range redisstore.StatsKeys(site, e.clock.Now()) {
			if n, _ := e.rdb.Exists(context.Background(), key).Result(); n == 0 {
				continue // counters are spread over shards; not every shard got one
			}
			if d := pttl(e, key); d <= 399*24*time.Hour || d > 400*24*time.Hour {
				t.Errorf("TTL of %s = %s, want 400 days", key, d)
			}
		}
	}
	statKey := regexp.MustCompile(`^st:\{(shop|optin|onchat):[0-9]{2}\}:` + regexp.QuoteMeta(day) + `$`)
	liveKey := regexp.MustCompile(`^lv:\{shop:[0-9]{2}\}$`)
	id := e.visitorID("shop", token)
	for key, value := range redistest.DumpValues(t, e.rdb) {
		if strings.Contains(key, marker) || strings.Contains(value, marker) {
			t.Errorf("key %s holds a refused URL: %q", key, value)
		}
		if strings.Contains(value, "Googlebot") || strings.Contains(value, curlBotUA) || strings.Contains(value, "iPhone") {
			t.Errorf("key %s holds a refused User-Agent: %q", key, value)
		}
		switch {
		case strings.HasPrefix(key, "st:"):
			if !statKey.MatchString(key) {
				t.Errorf("counter key %s: want st:{site:NN}:%s", key, day)
			}
		case liveKey.MatchString(key), key == "sj:{shop}", strings.HasPrefix(key, e.profileKey("shop", id)):
		default:
			t.Errorf("key %s written by a refused or untracked hit", key)
		}
	}
}

// Invariants 2 and 10: a refusal by a visitor without identity is only
// counted: a refusal token, no consent record, no visitor key.
func TestConsentRefusalWithoutIdentityOnlyCounted(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		site   string
		policy string
	}{
		{name: "opt-out", site: "shop", policy: "2026-11"},
		{name: "opt-in", site: "optin", policy: "v2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := putConsent(e, tt.site, false, false, tt.policy, map[string]string{"Origin": originOf[tt.site]})
			if got, want := r.status, http.StatusOK; got != want {
				t.Fatalf("status %d, want %d: %s", got, want, r.body)
			}
			token, _ := r.json(t)["token"].(string)
			tok, ok := e.signer.Verify(token, tt.site, e.clock.Now())
			if !ok || tok.Kind != visitor.KindRefusal {
				t.Fatalf("token %q: want a refusal token of %s", token, tt.site)
			}
			if ck := r.cookie(cookieName(tt.site)); ck == nil || ck.Value != token {
				t.Errorf("cookie %+v, want the refusal token", ck)
			}
			if keys := nonStatKeys(e); len(keys) != 0 {
				t.Errorf("keys written: %q", keys)
			}
			if diff := cmp.Diff(map[string]string{"refusal": "1"}, e.stats(tt.site)); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
		})
	}
}

// sessionPage is one page item of a stored session.
type sessionPage struct {
	start    string
	duration string
	url      string
	title    string
}

// sessionRead reads a stored session: its header item "#<start>\t<referrer>"
// and its pages.
func sessionRead(e *env, key string) (header string, pages []sessionPage) {
	e.t.Helper()
	items, err := e.rdb.LRange(context.Background(), key, 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	if len(items) == 0 || !strings.HasPrefix(items[0], "#") {
		e.t.Fatalf("session %s: items %q, want a header first", key, items)
	}
	for _, it := range items[1:] {
		f := strings.SplitN(it, "\t", 4)
		if len(f) != 4 {
			e.t.Fatalf("session %s: page item %q has %d fields", key, it, len(f))
		}
		pages = append(pages, sessionPage{start: f[0], duration: f[1], url: f[2], title: f[3]})
	}
	return items[0], pages
}

// sessionCurrent reads the visitor's current session.
func sessionCurrent(e *env, site, visitorID string) (sid, header string, pages []sessionPage) {
	e.t.Helper()
	sid = e.current(site, visitorID)["sid"]
	if sid == "" {
		e.t.Fatalf("visitor %s of %s has no current session", visitorID, site)
	}
	header, pages = sessionRead(e, e.profileKey(site, visitorID)+":s:"+sid)
	return sid, header, pages
}

// sessionDurations lists the durations of the current session's pages.
func sessionDurations(e *env, site, visitorID string) []string {
	e.t.Helper()
	_, _, pages := sessionCurrent(e, site, visitorID)
	out := make([]string, len(pages))
	for i, p := range pages {
		out[i] = p.duration
	}
	return out
}

func sessionMS(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// sessionTrack sends a hit and fails unless it is tracked.
func sessionTrack(e *env, site, typ, pageURL, token string) {
	e.t.Helper()
	var r resp
	if typ == "pageview" {
		r = e.pageview(site, pageURL, token, nil)
	} else {
		r = e.hit(site, typ, token)
	}
	if m := r.json(e.t); r.status != http.StatusOK || m["tracked"] != true {
		e.t.Fatalf("%s at %s: status %d, body %s", typ, e.clock.Now().Format(time.TimeOnly), r.status, r.body)
	}
	if r.cookie(cookieName(site)) != nil {
		e.t.Errorf("%s of a returning visitor set the identity cookie again", typ)
	}
}

func sessionOrigin(site string) string {
	switch site {
	case "blog":
		return blogOrigin
	case "optin":
		return "https://optin.example"
	}
	return shopOrigin
}

func TestSessionStartsAfterTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		site    string
		idle    time.Duration
		wantNew bool
	}{
		{name: "shop: 29 minutes idle keeps the session", site: "shop", idle: 29 * time.Minute},
		{name: "shop: 30 minutes idle keeps the session", site: "shop", idle: 30 * time.Minute},
		{name: "shop: past 30 minutes idle starts one", site: "shop", idle: 30*time.Minute + time.Second, wantNew: true},
		{name: "shop: a day idle starts one", site: "shop", idle: 24 * time.Hour, wantNew: true},
		{name: "blog: 9 minutes idle keeps the session", site: "blog", idle: 9 * time.Minute},
		{name: "blog: past its 10 minutes idle starts one", site: "blog", idle: 10*time.Minute + time.Second, wantNew: true},
		{name: "blog: 15 minutes idle starts one", site: "blog", idle: 15 * time.Minute, wantNew: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			origin := sessionOrigin(tt.site)
			token := e.mustTrack(tt.site, origin+"/a", "")
			id := e.visitorID(tt.site, token)
			before := e.current(tt.site, id)
			firstKey := e.profileKey(tt.site, id) + ":s:" + before["sid"]

			e.clock.Advance(tt.idle)
			sessionTrack(e, tt.site, "pageview", origin+"/b", token)
			after := e.current(tt.site, id)
			sid, _, pages := sessionCurrent(e, tt.site, id)
			n, err := e.rdb.ZCard(context.Background(), e.profileKey(tt.site, id)+":S").Result()
			if err != nil {
				t.Fatal(err)
			}

			if !tt.wantNew {
				if sid != before["sid"] || after["ns"] != "1" || after["np"] != "2" || len(pages) != 2 || n != 1 {
					t.Errorf("sid %s→%s, ns %s, np %s, %d pages, %d sessions; want the same session with 2 pages",
						before["sid"], sid, after["ns"], after["np"], len(pages), n)
				}
				return
			}
			if sid == before["sid"] || sid == "" {
				t.Errorf("sid %q after %s idle, want a new one", sid, tt.idle)
			}
			if got, want := after["ns"], "2"; got != want {
				t.Errorf("ns = %s, want %s", got, want)
			}
			if got, want := after["np"], "1"; got != want {
				t.Errorf("np = %s, want %s (pages of the new session)", got, want)
			}
			if got, want := after["ss"], sessionMS(e.clock.Now()); got != want {
				t.Errorf("ss = %s, want %s (the new session starts now)", got, want)
			}
			if len(pages) != 1 || pages[0].url != origin+"/b" {
				t.Errorf("new session's pages %+v, want /b alone", pages)
			}
			if _, old := sessionRead(e, firstKey); len(old) != 1 || old[0].url != origin+"/a" {
				t.Errorf("first session's pages %+v, want /a alone", old)
			}
			if n != 2 {
				t.Errorf("%d sessions in the index, want 2", n)
			}
		})
	}
}

// TestSessionMaxRollsOverWhileActive pins session_max: on blog (1h) page views
// every 5 minutes keep one session for an hour, then the next starts a new one.
func TestSessionMaxRollsOverWhileActive(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	start := e.clock.Now()
	token := e.mustTrack("blog", blogOrigin+"/p/0", "")
	id := e.visitorID("blog", token)
	firstSID := e.current("blog", id)["sid"]
	var rolledAt time.Duration
	for i := 1; i <= 16; i++ {
		e.clock.Advance(5 * time.Minute)
		elapsed := e.clock.Now().Sub(start)
		sessionTrack(e, "blog", "pageview", blogOrigin+"/p/"+strconv.Itoa(i), token)
		p := e.current("blog", id)
		wantNS := "1"
		if elapsed > time.Hour {
			wantNS = "2"
		}
		if p["ns"] != wantNS {
			t.Fatalf("after %s of page views every 5 minutes: ns = %s, want %s", elapsed, p["ns"], wantNS)
		}
		if rolledAt == 0 && p["sid"] != firstSID {
			rolledAt = elapsed
		}
	}
	if rolledAt != 65*time.Minute {
		t.Errorf("new session at %s, want at the first page view past session_max (65m)", rolledAt)
	}
	_, old := sessionRead(e, e.profileKey("blog", id)+":s:"+firstSID)
	if len(old) != 13 {
		t.Fatalf("first session holds %d pages, want 13 (0..60 min)", len(old))
	}
	if got, want := old[12].duration, "300000"; got != want {
		t.Errorf("last page of the first session lasted %s ms, want %s: the rollover closes it", got, want)
	}
	if got := e.current("blog", id)["np"]; got != "4" {
		t.Errorf("np = %s, want 4 (65..80 min)", got)
	}
}

func TestSessionTimeOnPage(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := e.mustTrack("shop", shopOrigin+"/a", "")
	id := e.visitorID("shop", token)
	steps := []struct {
		name    string
		advance time.Duration
		typ     string
		url     string
		want    []string // durations of the session's pages after the step, ms
	}{
		{name: "heartbeat after 20 s", advance: 20 * time.Second, typ: "heartbeat", want: []string{"20000"}},
		{name: "leave after 30 s closes the page", advance: 10 * time.Second, typ: "leave", want: []string{"30000"}},
		{name: "next page view does not overwrite a closed page", advance: 30 * time.Second, typ: "pageview", url: "/b", want: []string{"30000", "0"}},
		{name: "heartbeat on the second page", advance: 15 * time.Second, typ: "heartbeat", want: []string{"30000", "15000"}},
		{name: "page view without leave closes the page at its start", advance: 5 * time.Second, typ: "pageview", url: "/c", want: []string{"30000", "20000", "0"}},
		{name: "leave on the third page", advance: 4 * time.Second, typ: "leave", want: []string{"30000", "20000", "4000"}},
	}
	for _, s := range steps {
		e.clock.Advance(s.advance)
		sessionTrack(e, "shop", s.typ, shopOrigin+s.url, token)
		got := sessionDurations(e, "shop", id)
		if strings.Join(got, ",") != strings.Join(s.want, ",") {
			t.Fatalf("%s: durations %q ms, want %q", s.name, got, s.want)
		}
	}
	p := e.current("shop", id)
	if p["np"] != "3" || p["ns"] != "1" {
		t.Errorf("np %s, ns %s; want 3 pages in 1 session (heartbeat and leave add none)", p["np"], p["ns"])
	}
	if got := e.stats("shop")["tracked"]; got != "3" {
		t.Errorf("tracked counter = %s, want 3 (page views only)", got)
	}
}

func TestSessionTimeOnPageCappedAtTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		site         string
		every        time.Duration
		heartbeats   int
		thenPageview bool
		want         string
	}{
		{name: "blog: heartbeats for 30 minutes", site: "blog", every: 5 * time.Minute, heartbeats: 6, want: "600000"},
		{name: "blog: page view after heartbeats for 30 minutes", site: "blog", every: 5 * time.Minute, heartbeats: 6, thenPageview: true, want: "600000"},
		{name: "blog: under the cap", site: "blog", every: 3 * time.Minute, heartbeats: 3, want: "540000"},
		{name: "shop: heartbeats for an hour", site: "shop", every: 20 * time.Minute, heartbeats: 3, want: "1800000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			origin := sessionOrigin(tt.site)
			token := e.mustTrack(tt.site, origin+"/long-read", "")
			id := e.visitorID(tt.site, token)
			for range tt.heartbeats {
				e.clock.Advance(tt.every)
				sessionTrack(e, tt.site, "heartbeat", "", token)
			}
			if tt.thenPageview {
				e.clock.Advance(time.Second)
				sessionTrack(e, tt.site, "pageview", origin+"/next", token)
			}
			if got := sessionDurations(e, tt.site, id)[0]; got != tt.want {
				t.Errorf("time on page = %s ms, want %s", got, tt.want)
			}
		})
	}
}

// TestSessionHeartbeatAndLeaveNeedASession pins that heartbeat and leave never
// create a visitor or a session: without one they answer no_session and write
// nothing.
func TestSessionHeartbeatAndLeaveNeedASession(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		site  string
		typ   string
		token func(e *env) string
	}{
		{name: "heartbeat without identity", site: "shop", typ: "heartbeat", token: func(*env) string { return "" }},
		{name: "leave without identity", site: "shop", typ: "leave", token: func(*env) string { return "" }},
		{name: "heartbeat with a foreign token", site: "shop", typ: "heartbeat", token: func(*env) string { return "forged.token" }},
		{
			name: "heartbeat after the session expired", site: "shop", typ: "heartbeat",
			token: func(e *env) string {
				tok := e.mustTrack("shop", shopOrigin+"/", "")
				e.clock.Advance(30*time.Minute + time.Second)
				return tok
			},
		},
		{
			name: "leave after the session expired", site: "blog", typ: "leave",
			token: func(e *env) string {
				tok := e.mustTrack("blog", blogOrigin+"/", "")
				e.clock.Advance(10*time.Minute + time.Second)
				return tok
			},
		},
		{
			name: "heartbeat of a consenting visitor who viewed no page", site: "optin", typ: "heartbeat",
			token: func(e *env) string {
				b := `{"site":"optin","analytics":true,"marketing":false,"policy_version":"v2"}`
				r := e.do(req{method: http.MethodPut, path: "/v1/consent", body: b})
				tok, _ := r.json(e.t)["token"].(string)
				if r.status != http.StatusOK || tok == "" {
					e.t.Fatalf("consent: status %d, body %s", r.status, r.body)
				}
				return tok
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			token := tt.token(e)
			before := redistest.DumpValues(t, e.rdb)

			r := e.hit(tt.site, tt.typ, token)
			if r.status != http.StatusOK {
				t.Fatalf("status %d, body %s", r.status, r.body)
			}
			var body map[string]any
			if err := json.Unmarshal(r.body, &body); err != nil {
				t.Fatal(err)
			}
			if len(body) != 2 || body["tracked"] != false || body["reason"] != "no_session" {
				t.Errorf("body %s, want {\"tracked\":false,\"reason\":\"no_session\"}", r.body)
			}
			if sc := identitySetCookie(r, cookieName(tt.site)); sc != "" {
				t.Errorf("Set-Cookie %q", sc)
			}

			after := redistest.DumpValues(t, e.rdb)
			for k, v := range after {
				old, ok := before[k]
				switch {
				case !ok:
					t.Errorf("%s wrote key %q:\n%s", tt.typ, k, v)
				case strings.HasPrefix(k, "lv:"):
					// Derived data: an expired session may leave the live set.
					if len(strings.Split(v, "\n")) > len(strings.Split(old, "\n")) {
						t.Errorf("%s added to the live set: %q → %q", tt.typ, old, v)
					}
				case v != old:
					t.Errorf("%s changed key %q:\n\tbefore %q\n\tafter  %q", tt.typ, k, old, v)
				}
			}
		})
	}
}

// TestSessionStoresMinimisedPage reads back what a page view stored (invariant 5).
func TestSessionStoresMinimisedPage(t *testing.T) {
	t.Parallel()
	longPath := "/" + strings.Repeat("p", 1500)
	tests := []struct {
		name         string
		site         string
		url          string
		title        string
		referrer     string
		wantURL      string
		wantTitle    string
		wantReferrer string
		absent       []string // what no stored value may hold
	}{
		{
			name: "query allow-list and fragment", site: "shop",
			url:     shopOrigin + "/products/42?utm_source=mail&utm_term=x&email=jane%40mail.example#reviews",
			title:   "Blue mug",
			wantURL: shopOrigin + "/products/42?utm_source=mail", wantTitle: "Blue mug",
			absent: []string{"email", "jane", "utm_term", "reviews"},
		},
		{
			name: "default utm_* and keep_title false", site: "blog",
			url:     blogOrigin + "/post?utm_term=x&utm_source=y&id=93817#c",
			title:   "Draft: private notes",
			wantURL: blogOrigin + "/post?utm_term=x&utm_source=y", wantTitle: "",
			absent: []string{"id=93817", "Draft", "private"},
		},
		{
			name: "redacted path", site: "shop",
			url:     shopOrigin + "/orders/98765/invoice?utm_source=mail",
			title:   "Order 98765",
			wantURL: shopOrigin + "/:redacted", wantTitle: "", // a redacted path's title goes with it
			absent: []string{"/orders/", "invoice"},
		},
		{
			name: "external referrer kept as its origin", site: "shop",
			url: shopOrigin + "/", referrer: "https://www.search.example/search?q=jane+doe+address",
			wantURL: shopOrigin + "/", wantTitle: "A page", wantReferrer: "https://www.search.example",
			absent: []string{"jane", "/search"},
		},
		{
			name: "internal referrer kept as its path", site: "shop",
			url: shopOrigin + "/checkout", referrer: shopOrigin + "/cart?coupon=SECRET42#pay",
			wantURL: shopOrigin + "/checkout", wantTitle: "A page", wantReferrer: "/cart",
			absent: []string{"SECRET42", "coupon"},
		},
		{
			name: "internal referrer redacted", site: "shop",
			url: shopOrigin + "/", referrer: shopOrigin + "/reset/tok-5f4e3d",
			wantURL: shopOrigin + "/", wantTitle: "A page", wantReferrer: "/:redacted",
			absent: []string{"tok-5f4e3d", "/reset/"},
		},
		{
			name: "title folded to one line", site: "shop",
			url: shopOrigin + "/", title: "Blue\tmug\nsale\r\n",
			wantURL: shopOrigin + "/", wantTitle: "Blue mug sale",
		},
		{
			name: "title cut to 200 bytes on a character boundary", site: "shop",
			url: shopOrigin + "/", title: strings.Repeat("é", 150),
			wantURL: shopOrigin + "/", wantTitle: strings.Repeat("é", 100),
		},
		{
			name: "url cut to 1 KiB", site: "shop",
			url:     shopOrigin + longPath,
			wantURL: (shopOrigin + longPath)[:1024], wantTitle: "A page",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			title := tt.title
			if title == "" && tt.site != "blog" {
				title = "A page"
			}
			b, _ := json.Marshal(map[string]string{"site": tt.site, "type": "pageview", "url": tt.url, "title": title, "referrer": tt.referrer})
			r := e.do(req{method: http.MethodPost, path: "/v1/track", body: string(b)})
			m := r.json(t)
			if r.status != http.StatusOK || m["tracked"] != true {
				t.Fatalf("status %d, body %s", r.status, r.body)
			}
			id := e.visitorID(tt.site, m["token"].(string))
			_, header, pages := sessionCurrent(e, tt.site, id)
			if got, want := header, "#"+sessionMS(e.clock.Now())+"\t"+tt.wantReferrer; got != want {
				t.Errorf("session header %q, want %q", got, want)
			}
			if len(pages) != 1 {
				t.Fatalf("pages %+v", pages)
			}
			if got := pages[0].url; got != tt.wantURL {
				t.Errorf("stored url %q, want %q", got, tt.wantURL)
			}
			if got := pages[0].title; got != tt.wantTitle {
				t.Errorf("stored title %q, want %q", got, tt.wantTitle)
			}
			p := e.current(tt.site, id)
			if p["rf"] != tt.wantReferrer || p["cu"] != tt.wantURL || p["ct"] != tt.wantTitle {
				t.Errorf("profile rf %q, cu %q, ct %q; want the minimised referrer, url and title", p["rf"], p["cu"], p["ct"])
			}
			if len(pages[0].url) > 1024 || len(pages[0].title) > 200 {
				t.Errorf("url %d bytes, title %d bytes", len(pages[0].url), len(pages[0].title))
			}
			for k, v := range redistest.DumpValues(t, e.rdb) {
				for _, s := range tt.absent {
					if strings.Contains(v, s) {
						t.Errorf("key %q holds %q:\n%s", k, s, v)
					}
				}
			}
		})
	}
}

// TestSessionRejectsURLAndWritesNothing pins that a page view whose URL is not
// the site's (422) or not an http(s) URL (400) writes nothing, for a new or a
// returning visitor.
func TestSessionRejectsURLAndWritesNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		url       string
		returning bool
		status    int
		code      string
	}{
		{name: "other origin", url: "https://evil.example/products/42", status: http.StatusUnprocessableEntity, code: "url_not_in_site"},
		{name: "other site's origin", url: blogOrigin + "/post", status: http.StatusUnprocessableEntity, code: "url_not_in_site"},
		{name: "other scheme", url: "http://shop.example/", status: http.StatusUnprocessableEntity, code: "url_not_in_site"},
		{name: "other origin, returning visitor", url: "https://evil.example/", returning: true, status: http.StatusUnprocessableEntity, code: "url_not_in_site"},
		{name: "ftp", url: "ftp://shop.example/file", status: http.StatusBadRequest, code: "invalid_request"},
		{name: "javascript", url: "javascript:alert(1)", status: http.StatusBadRequest, code: "invalid_request"},
		{name: "relative", url: "/products/42", status: http.StatusBadRequest, code: "invalid_request"},
		{name: "relative, returning visitor", url: "/products/42", returning: true, status: http.StatusBadRequest, code: "invalid_request"},
		{name: "missing", url: "", status: http.StatusBadRequest, code: "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			token := ""
			if tt.returning {
				token = e.mustTrack("shop", shopOrigin+"/", "")
			}
			before := redistest.DumpValues(t, e.rdb)
			e.clock.Advance(time.Minute)

			r := e.pageview("shop", tt.url, token, map[string]string{"Origin": shopOrigin})
			if r.status != tt.status || r.errorCode(t) != tt.code {
				t.Fatalf("status %d, body %s; want %d %s", r.status, r.body, tt.status, tt.code)
			}
			if len(r.cookies) != 0 {
				t.Errorf("cookies set: %v", r.cookies)
			}
			after := redistest.DumpValues(t, e.rdb)
			if len(after) != len(before) {
				t.Errorf("keys %d → %d: %q", len(before), len(after), e.keys())
			}
			for k, v := range after {
				if before[k] != v {
					t.Errorf("key %q changed:\n\tbefore %q\n\tafter  %q", k, before[k], v)
				}
			}
		})
	}
}

// With Redis gone, a page view answers 503 store_unavailable within the track
// timeout, /readyz fails, and both recover once Redis is back.
func TestTrackWithRedisDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *envOptions) { o.trackTimeout, o.storeTimeout = 150*time.Millisecond, 150*time.Millisecond })
	token := e.mustTrack("shop", shopOrigin+"/", "")
	e.redis.Stop()

	start := time.Now()
	r := e.pageview("shop", shopOrigin+"/cart", token, nil)
	elapsed := time.Since(start)
	if got, want := r.status, http.StatusServiceUnavailable; got != want {
		t.Fatalf("status %d, want %d: %s", got, want, r.body)
	}
	if got, want := r.errorCode(t), "store_unavailable"; got != want {
		t.Errorf("code %q, want %q", got, want)
	}
	if r.header.Get("Retry-After") == "" {
		t.Error("no Retry-After on 503")
	}
	// Generous bound: the budget is 150 ms; a hung request would take seconds.
	if elapsed > 2*time.Second {
		t.Errorf("503 took %s", elapsed)
	}
	if got := e.do(req{method: http.MethodGet, path: "/readyz"}).status; got != http.StatusServiceUnavailable {
		t.Errorf("/readyz with Redis down = %d", got)
	}

	e.redis.Restart(t)
	deadline := time.Now().Add(10 * time.Second)
	for {
		r = e.pageview("shop", shopOrigin+"/cart", "", nil)
		if r.status == http.StatusOK || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if r.status != http.StatusOK {
		t.Fatalf("after Redis came back: status %d: %s", r.status, r.body)
	}
	if got := e.do(req{method: http.MethodGet, path: "/readyz"}).status; got != http.StatusOK {
		t.Errorf("/readyz after recovery = %d", got)
	}
}

// FuzzDecodeTrack feeds arbitrary bodies to the track decoder (run with
// go test -run '^$' -fuzz FuzzDecodeTrack ./internal/httpapi/). It never panics;
// a body it accepts names a site and a type; a body it refuses maps to 400
// invalid_json exactly when it is not JSON, else to 400 invalid_request.
func FuzzDecodeTrack(f *testing.F) {
	for _, s := range []string{
		`{"site":"shop","type":"pageview","url":"https://shop.example/a?utm_source=x#f","title":"A","referrer":"https://search.example/"}`,
		`{"site":"shop","type":"heartbeat"}`,
		`{"site":"shop","type":"leave"}`,
		`{"site":"shop","url":"https://shop.example/"}`,
		`{"site":"shop","type":null}`,
		`{"site":"shop","type":"click"}`,
		`{"site":"shop","site":""}`,
		``,
		` `,
		`null`,
		`{}`,
		`[]`,
		`"shop"`,
		`42`,
		`{"site":`,
		`{"site":"shop"}x`,
		`{"site":"shop"}` + "\r\n",
		`{"site":42}`,
		`{"site":["shop"],"url":{"a":[1,2,{"b":null}]}}`,
		`{"site":"shop","title":{"a":{"b":{"c":[[[[]]]]}}}}`,
		`{"site":"shop","url":1e999}`,
		`{"site":"shop","title":"\ud800"}`,
		`{"site":"\u0000"}`,
		"{\"site\":\"\xff\xfe\xfd\",\"type\":\"pageview\"}",
		"{\"site\":\"shop\",\"title\":\"\xc3\x28\"}",
		"\xef\xbb\xbf{\"site\":\"shop\"}",
		`{"site":"shop","url":"` + strings.Repeat("a", 17<<10) + `"}`,
		`{"site":"` + strings.Repeat("s", 16<<10) + `"}`,
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		`{"a":` + strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat("}", 201),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeTrack(b)
		if err == nil {
			if r.Site == "" || r.Type == "" {
				t.Fatalf("decodeTrack(%q) = %+v: accepted without site or type", b, r)
			}
			if !json.Valid(b) {
				t.Fatalf("decodeTrack(%q) accepted a body that is not JSON", b)
			}
			return
		}
		status, code, msg := statusOf(err)
		if status != http.StatusBadRequest || (code != "invalid_json" && code != "invalid_request") {
			t.Fatalf("decodeTrack(%q): %v maps to %d %s, want 400 invalid_json or invalid_request", b, err, status, code)
		}
		if msg == "" {
			t.Fatalf("decodeTrack(%q): %s without a message", b, code)
		}
		if got, want := code == "invalid_json", !json.Valid(b); got != want {
			t.Fatalf("decodeTrack(%q): code %s, but json.Valid = %v", b, code, !want)
		}
	})
}

// errorMessage is the message of an error response.
func errorMessage(t testing.TB, r resp) string {
	t.Helper()
	e, _ := r.json(t)["error"].(map[string]any)
	m, _ := e["message"].(string)
	return m
}

// Error messages are one line naming the field; a JSON null for a field that
// is not nullable (none in a request is) is 400 naming it (issue 18).
func TestErrorMessagesAndNulls(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	shop := map[string]string{"Origin": shopOrigin}
	priv := map[string]string{"Authorization": "Bearer " + shopPrivacyKey}
	for _, tc := range []struct {
		name, method, path, body string
		headers                  map[string]string
		code, field              string // field: what the message must name
	}{
		{name: "track without site", method: http.MethodPost, path: "/v1/track", body: `{"type":"pageview"}`, code: "invalid_request", field: "site is required"},
		{name: "track body an array", method: http.MethodPost, path: "/v1/track", body: `[]`, code: "invalid_request", field: "the body must be a JSON object"},
		{name: "track site a number", method: http.MethodPost, path: "/v1/track", body: `{"site":5}`, code: "invalid_request", field: "site must be a string"},
		{name: "track body null", method: http.MethodPost, path: "/v1/track", body: `null`, code: "invalid_request", field: "the body must not be null"},
		{name: "track site null", method: http.MethodPost, path: "/v1/track", body: `{"site":null,"url":"https://shop.example/"}`, headers: shop, code: "invalid_request", field: "site must not be null"},
		{name: "track title null", method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","url":"https://shop.example/","title":null}`, headers: shop, code: "invalid_request", field: "title must not be null"},
		{name: "track url null", method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"pageview","url":null}`, headers: shop, code: "invalid_request", field: "url must not be null"},
		{name: "track without url", method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"pageview"}`, headers: shop, code: "invalid_request", field: "url"},
		{name: "consent analytics null", method: http.MethodPut, path: "/v1/consent", body: `{"site":"shop","analytics":null,"marketing":false,"policy_version":"2026-11"}`, headers: shop, code: "invalid_request", field: "analytics must not be null"},
		{name: "consent without fields", method: http.MethodPut, path: "/v1/consent", body: `{"site":"shop"}`, headers: shop, code: "invalid_request", field: "analytics and policy_version are required"},
		{name: "chat contact name null", method: http.MethodPost, path: "/v1/chats", body: `{"site":"shop","contact":{"name":null,"email":"a@mail.example"}}`, headers: shop, code: "invalid_request", field: "contact.name must not be null"},
		{name: "chat contact a string", method: http.MethodPost, path: "/v1/chats", body: `{"site":"shop","contact":"Ann"}`, headers: shop, code: "invalid_request", field: "contact must be an object"},
		{name: "retention sessions null", method: http.MethodPut, path: "/v1/sites/shop/retention", body: `{"sessions":null,"profiles":395,"chats":90,"consents":1095,"audit":365}`, headers: priv, code: "invalid_request", field: "sessions must not be null"},
		{name: "live within garbage", method: http.MethodGet, path: "/v1/sites/shop/visitors/live?within=soon", headers: priv, code: "invalid_request", field: "within"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(req{method: tc.method, path: tc.path, body: tc.body, headers: tc.headers})
			if r.status != http.StatusBadRequest || r.errorCode(t) != tc.code {
				t.Fatalf("%d %s, want 400 %s", r.status, r.body, tc.code)
			}
			msg := errorMessage(t, r)
			if strings.ContainsAny(msg, "\n\r") || strings.Contains(msg, "  ") || strings.HasPrefix(msg, "invalid request") {
				t.Errorf("message %q: want one line without the code's words or empty names", msg)
			}
			if !strings.Contains(msg, tc.field) {
				t.Errorf("message %q does not say %q", msg, tc.field)
			}
		})
	}
}

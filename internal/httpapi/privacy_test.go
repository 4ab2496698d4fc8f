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

package httpapi

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/visitor"
)

// opBehindProxy makes the test client a trusted proxy, so X-Forwarded-For
// names the visitor's address.
func opBehindProxy(o *envOptions) {
	o.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
}

// opTrack sends a page view with a referrer and extra headers; it fails the
// test unless the view is tracked and returns the token.
func opTrack(e *env, site, url, referrer, token string, headers map[string]string) string {
	e.t.Helper()
	h := map[string]string{}
	maps.Copy(h, headers)
	if token != "" {
		h[tokenHeader] = token
	}
	b, _ := json.Marshal(map[string]string{"site": site, "type": "pageview", "url": url, "title": "Title of " + url, "referrer": referrer})
	r := e.do(req{method: http.MethodPost, path: "/v1/track", body: string(b), headers: h})
	m := r.json(e.t)
	if r.status != http.StatusOK || m["tracked"] != true {
		e.t.Fatalf("pageview of %s: status %d, body %s", url, r.status, r.body)
	}
	return m["token"].(string)
}

// opGet sends an operator GET with a raw Authorization value ("" for none).
func opGet(e *env, path, authorization string, headers map[string]string, cookies ...*http.Cookie) resp {
	e.t.Helper()
	h := map[string]string{}
	maps.Copy(h, headers)
	if authorization != "" {
		h["Authorization"] = authorization
	}
	return e.do(req{method: http.MethodGet, path: path, headers: h, cookies: cookies})
}

// opFakeChat gives the fake domain of e a chat of shop and returns its id.
func opFakeChat(e *env, name, email, url string) string {
	e.t.Helper()
	id := fmt.Sprintf("chat-%d", len(e.fake.views)+1)
	e.fake.views[id] = visitor.ChatView{ID: id, Start: e.clock.Now(), Contact: visitor.Contact{Name: name, Email: email}, URL: url,
		Trail: []visitor.PageVisit{{URL: url, Title: "Help", Start: e.clock.Now()}}}
	return id
}

// opLive is the live view as the API answers it.
type opLive struct {
	Visitors []struct {
		Pseudonym   string `json:"pseudonym"`
		CurrentPage struct {
			URL   string `json:"url"`
			Title string `json:"title"`
		} `json:"current_page"`
		Pages          int     `json:"pages"`
		SessionSeconds float64 `json:"session_seconds"`
	} `json:"visitors"`
	NextCursor string `json:"next_cursor"`
}

func opDecode[T any](t testing.TB, r resp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// opPseudonyms lists the pseudonyms of a live page, in order.
func opPseudonyms(l opLive) []string {
	out := make([]string, 0, len(l.Visitors))
	for _, v := range l.Visitors {
		out = append(out, v.Pseudonym)
	}
	return out
}

// opPseudonymOf is the pseudonym the live view must show for a shop visitor's
// current session: a per-site keyed hash of its session id, read through the
// privacy team's export.
func opPseudonymOf(e *env, token string) string {
	e.t.Helper()
	x := subjExportOf(e, e.visitorID("shop", token))
	if len(x.Sessions) == 0 {
		e.t.Fatal("the visitor of shop has no session")
	}
	return e.hasher.Short("shop", visitor.PurposePseudonym, x.Sessions[len(x.Sessions)-1].ID)
}

// opChat starts a chat on shop and returns its id.
func opChat(e *env, token, name, email string) string {
	e.t.Helper()
	r := e.startChat("shop", token, name, email, shopOrigin+"/help", nil)
	if r.status != http.StatusCreated {
		e.t.Fatalf("chat start: %d %s", r.status, r.body)
	}
	return r.json(e.t)["chat_id"].(string)
}

// Invariant 7 and the operator routes' auth: a Bearer key of the route's site
// with role operator or privacy; anything else 401 (with WWW-Authenticate) or
// 403; never CORS headers, never cached.
func TestOperatorAuth(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	chatID := opFakeChat(e, "Ada Lovelace", "ada@math.example", shopOrigin+"/pricing")

	routes := []struct {
		name string
		path string
	}{
		{"live", "/v1/sites/shop/visitors/live"},
		{"chat", "/v1/sites/shop/chats/" + chatID},
		{"stats", "/v1/sites/shop/stats"},
	}
	cases := []struct {
		name          string
		authorization string
		status        int
		code          string
	}{
		{name: "no authorization", authorization: "", status: http.StatusUnauthorized, code: "unauthorized"},
		{name: "wrong key", authorization: "Bearer op-shop-key-0123456789abcdeX", status: http.StatusUnauthorized, code: "unauthorized"},
		{name: "empty bearer", authorization: "Bearer ", status: http.StatusUnauthorized, code: "unauthorized"},
		{name: "basic scheme", authorization: "Basic " + base64.StdEncoding.EncodeToString([]byte("agent-1:"+shopOperatorKey)), status: http.StatusUnauthorized, code: "unauthorized"},
		{name: "basic scheme with the key", authorization: "Basic " + shopOperatorKey, status: http.StatusUnauthorized, code: "unauthorized"},
		{name: "key without scheme", authorization: shopOperatorKey, status: http.StatusUnauthorized, code: "unauthorized"},
		{name: "key of another site", authorization: "Bearer " + blogOperatorKey, status: http.StatusForbidden, code: "forbidden"},
		{name: "operator key", authorization: "Bearer " + shopOperatorKey, status: http.StatusOK},
		{name: "privacy key", authorization: "Bearer " + shopPrivacyKey, status: http.StatusOK},
	}
	for _, rt := range routes {
		for _, tc := range cases {
			t.Run(rt.name+"/"+tc.name, func(t *testing.T) {
				r := opGet(e, rt.path, tc.authorization, map[string]string{"Origin": shopOrigin})
				if r.status != tc.status {
					t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
				}
				if tc.code != "" {
					if got := r.errorCode(t); got != tc.code {
						t.Errorf("error code = %q, want %q", got, tc.code)
					}
					for _, leak := range []string{"Ada", "ada@math.example", "/pricing"} {
						if strings.Contains(string(r.body), leak) {
							t.Errorf("refused response contains %q: %s", leak, r.body)
						}
					}
				}
				wantAuth := tc.status == http.StatusUnauthorized
				if got := r.header.Get("WWW-Authenticate"); (got != "") != wantAuth || (wantAuth && !strings.HasPrefix(got, "Bearer")) {
					t.Errorf("WWW-Authenticate = %q, want a Bearer challenge: %v", got, wantAuth)
				}
				if got := r.header.Get("Cache-Control"); got != "no-store" {
					t.Errorf("Cache-Control = %q, want no-store", got)
				}
				for _, h := range []string{"Access-Control-Allow-Origin", "Access-Control-Allow-Credentials"} {
					if got := r.header.Get(h); got != "" {
						t.Errorf("operator route sent %s: %q", h, got)
					}
				}
			})
		}
	}

	t.Run("unknown site", func(t *testing.T) {
		for _, path := range []string{"/v1/sites/nosuch/visitors/live", "/v1/sites/nosuch/chats/" + chatID, "/v1/sites/nosuch/stats"} {
			r := e.operatorGet(path, shopOperatorKey)
			if r.status != http.StatusNotFound || r.errorCode(t) != "unknown_site" {
				t.Errorf("GET %s: %d %s, want 404 unknown_site", path, r.status, r.body)
			}
		}
	})
}

// Invariant 7 from the other side: blog's own key on blog's routes sees
// nothing of shop, not even by a shop chat id.
func TestOperatorTenantIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := e.mustTrack("shop", shopOrigin+"/pricing", "")
	chatID := opChat(e, token, "Ada Lovelace", "ada@math.example")
	r := e.operatorGet("/v1/sites/blog/chats/"+chatID, blogOperatorKey)
	if r.status != http.StatusNotFound || r.errorCode(t) != "not_found" {
		t.Errorf("shop chat on blog: %d %s, want 404 not_found", r.status, r.body)
	}
	live := opDecode[opLive](t, e.operatorGet("/v1/sites/blog/visitors/live", blogOperatorKey))
	if len(live.Visitors) != 0 {
		t.Errorf("blog's live view lists shop's visitors: %+v", live)
	}
	stats := e.operatorGet("/v1/sites/blog/stats", blogOperatorKey).json(t)
	if stats["tracked"] != float64(0) {
		t.Errorf("blog's stats count shop's page views: %v", stats)
	}
	if r := e.operatorGet("/v1/sites/blog/stats", shopOperatorKey); r.status != http.StatusForbidden {
		t.Errorf("shop key on blog: %d, want 403", r.status)
	}
}

// Operator routes ignore cookies: an identity cookie neither authenticates nor
// changes an answer, and none is set.
func TestOperatorIgnoresCookies(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	token := e.mustTrack("shop", shopOrigin+"/a", "")
	e.fake.live = visitor.LivePage{Visitors: []visitor.LiveVisitor{{Pseudonym: "p1", CurrentURL: shopOrigin + "/a"}, {Pseudonym: "p2", CurrentURL: shopOrigin + "/b"}}}
	chatID := opFakeChat(e, "Ada Lovelace", "ada@math.example", shopOrigin+"/help")
	cookie := &http.Cookie{Name: "vt_shop", Value: token}

	for _, path := range []string{"/v1/sites/shop/visitors/live", "/v1/sites/shop/chats/" + chatID, "/v1/sites/shop/stats"} {
		plain := e.operatorGet(path, shopOperatorKey)
		withCookie := opGet(e, path, "Bearer "+shopOperatorKey, map[string]string{"Origin": shopOrigin}, cookie)
		if plain.status != http.StatusOK || withCookie.status != http.StatusOK {
			t.Fatalf("GET %s: %d / %d", path, plain.status, withCookie.status)
		}
		if diff := cmp.Diff(plain.json(t), withCookie.json(t)); diff != "" {
			t.Errorf("GET %s: a vt_shop cookie changed the answer (-without +with):\n%s", path, diff)
		}
		if len(withCookie.cookies) != 0 {
			t.Errorf("GET %s set cookies: %v", path, withCookie.cookies)
		}
		if r := opGet(e, path, "", nil, cookie); r.status != http.StatusUnauthorized {
			t.Errorf("GET %s with a cookie and no key: %d, want 401", path, r.status)
		}
	}
}

// The live view's parameters as the transport reads them: within a positive
// duration, limit a whole number ≥ 1, else 400 invalid_request before the
// domain is asked; the domain's bounds (1m..30m, 1..200) are visitor's
// TestLiveBounds.
func TestOperatorLiveParams(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		query  string
		status int
	}{
		{name: "defaults", query: "", status: http.StatusOK},
		{name: "within 30m", query: "within=30m", status: http.StatusOK},
		{name: "limit 200", query: "limit=200", status: http.StatusOK},
		{name: "within 0s", query: "within=0s", status: http.StatusBadRequest},
		{name: "within negative", query: "within=-5m", status: http.StatusBadRequest},
		{name: "within not a duration", query: "within=five", status: http.StatusBadRequest},
		{name: "limit 0", query: "limit=0", status: http.StatusBadRequest},
		{name: "limit negative", query: "limit=-1", status: http.StatusBadRequest},
		{name: "limit not a number", query: "limit=ten", status: http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t)
			e.fake.live = visitor.LivePage{Visitors: []visitor.LiveVisitor{{Pseudonym: "p1", CurrentURL: shopOrigin + "/"}}}
			r := e.operatorGet("/v1/sites/shop/visitors/live?"+tc.query, shopOperatorKey)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			e.fake.mu.Lock()
			asked := e.fake.liveN
			e.fake.mu.Unlock()
			if tc.status == http.StatusBadRequest {
				if r.errorCode(t) != "invalid_request" {
					t.Errorf("error code = %q, want invalid_request", r.errorCode(t))
				}
				if asked != 0 {
					t.Errorf("the domain was asked %d times, want none", asked)
				}
				return
			}
			if len(opDecode[opLive](t, r).Visitors) != 1 {
				t.Errorf("live view: %s, want the one visitor", r.body)
			}
		})
	}
}

// A row carries the current session only: pseudonym, current page, pages,
// time in the session, geo, device and referrer; no visitor id, first-seen,
// visit count or returning flag (invariant 4).
func TestOperatorLiveRow(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opBehindProxy)
	h := map[string]string{"X-Forwarded-For": londonIP, "User-Agent": iphoneUA}
	token := opTrack(e, "shop", shopOrigin+"/landing?utm_source=news&secret=1", "https://search.example/q?words=x", "", h)
	e.clock.Advance(90 * time.Second)
	opTrack(e, "shop", shopOrigin+"/pricing", "", token, h)
	// A second visitor, so the row is picked by its pseudonym.
	e.mustTrack("shop", shopOrigin+"/other", "")

	r := e.operatorGet("/v1/sites/shop/visitors/live", shopOperatorKey)
	var raw struct {
		Visitors []map[string]any `json:"visitors"`
	}
	if err := json.Unmarshal(r.body, &raw); err != nil || r.status != http.StatusOK {
		t.Fatalf("live: %d %s", r.status, r.body)
	}
	pseudonym := opPseudonymOf(e, token)
	var row map[string]any
	for _, v := range raw.Visitors {
		if v["pseudonym"] == pseudonym {
			row = v
		}
	}
	if row == nil {
		t.Fatalf("no row with pseudonym %s (a keyed hash of the session id): %s", pseudonym, r.body)
	}

	wantFields := []string{"current_page", "device", "location", "pages", "pseudonym", "referrer", "session_seconds"}
	for _, f := range wantFields {
		if _, ok := row[f]; !ok {
			t.Errorf("row lacks %q: %v", f, row)
		}
	}
	for f := range row {
		lf := strings.ToLower(f)
		for _, banned := range []string{"visitor", "first", "visits", "visit_count", "returning", "sessions", "token", "ip"} {
			if strings.Contains(lf, banned) {
				t.Errorf("row has field %q (invariant 4): %v", f, row)
			}
		}
	}
	type rowJSON struct {
		CurrentPage struct {
			URL   string `json:"url"`
			Title string `json:"title"`
		} `json:"current_page"`
		Pages          int          `json:"pages"`
		SessionSeconds float64      `json:"session_seconds"`
		Location       locationJSON `json:"location"`
		Device         deviceJSON   `json:"device"`
		Referrer       string       `json:"referrer"`
	}
	b, _ := json.Marshal(row)
	var got rowJSON
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.CurrentPage.URL != shopOrigin+"/pricing" || got.CurrentPage.Title != "Title of "+shopOrigin+"/pricing" {
		t.Errorf("current page = %+v", got.CurrentPage)
	}
	if got.Pages != 2 || got.SessionSeconds != 90 {
		t.Errorf("pages = %d, session_seconds = %v; want 2 and 90", got.Pages, got.SessionSeconds)
	}
	if want := (locationJSON{Country: "GB", Region: "ENG", City: "London", TimeZone: "Europe/London"}); got.Location != want {
		t.Errorf("location = %+v, want %+v", got.Location, want)
	}
	if !got.Device.Mobile || got.Device.Browser == "" || got.Device.OS == "" {
		t.Errorf("device = %+v, want the iPhone's", got.Device)
	}
	if got.Referrer != "https://search.example" {
		t.Errorf("referrer = %q, want the external referrer's origin", got.Referrer)
	}
	vid := e.visitorID("shop", token)
	for _, leak := range []string{vid, token, e.hasher.VisitorKey("shop", vid), londonIP, "secret=1", "/landing"} {
		if strings.Contains(string(r.body), leak) {
			t.Errorf("live view contains %q: %s", leak, r.body)
		}
	}
}

// The stats route: the day asked (UTC, default today) rendered as tracked,
// refused by reason and consent refusals, zeros where nothing was counted;
// a malformed day is 400 before the domain is asked. The counting is
// visitor's TestStats and TestTrackPrivacyPrecedence; end to end it is read in
// TestTrackEndToEnd.
func TestOperatorStats(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	e.fake.stats = map[string]int64{"tracked": 3, "dnt": 2, "gpc": 1, "bot": 1, "no_consent": 1, "refusal": 1}
	today := e.clock.Now().UTC().Format(time.DateOnly)
	for _, tc := range []struct {
		name   string
		query  string
		key    string
		status int
		day    string
	}{
		{name: "default today", query: "", key: shopOperatorKey, status: http.StatusOK, day: today},
		{name: "today explicit", query: "?day=" + today, key: shopOperatorKey, status: http.StatusOK, day: today},
		{name: "privacy key", query: "", key: shopPrivacyKey, status: http.StatusOK, day: today},
		{name: "another day", query: "?day=2020-01-01", key: shopOperatorKey, status: http.StatusOK, day: "2020-01-01"},
		{name: "bad day", query: "?day=bad", key: shopOperatorKey, status: http.StatusBadRequest},
		{name: "day with time", query: "?day=2020-01-01T00:00:00Z", key: shopOperatorKey, status: http.StatusBadRequest},
		{name: "impossible date", query: "?day=2020-02-30", key: shopOperatorKey, status: http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rq := req{method: http.MethodGet, path: "/v1/sites/shop/stats" + tc.query, headers: map[string]string{"Authorization": "Bearer " + tc.key}}
			r := e.do(rq)
			if r.status != tc.status {
				t.Fatalf("status = %d, want %d: %s", r.status, tc.status, r.body)
			}
			checkContract(t, e, rq, r)
			if tc.status != http.StatusOK {
				if r.errorCode(t) != "invalid_request" {
					t.Errorf("error code = %q, want invalid_request", r.errorCode(t))
				}
				return
			}
			want := map[string]any{
				"day": tc.day, "tracked": float64(3), "consent_refusals": float64(1),
				"refused": map[string]any{"dnt": float64(2), "gpc": float64(1), "bot": float64(1), "no_consent": float64(1)},
			}
			if diff := cmp.Diff(want, r.json(t)); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			e.fake.mu.Lock()
			asked := e.fake.statsDay.Format(time.DateOnly)
			e.fake.mu.Unlock()
			if asked != tc.day {
				t.Errorf("the domain was asked for %s, want %s", asked, tc.day)
			}
		})
	}
}

// Logs carry no raw identifier from a path: an internal error on a chat's
// context is logged, names the chat by neither its id nor its contact, and
// answers 500 internal. That the domain's error names no record is visitor's
// TestSealerBindsCiphertextToItsPlace.
func TestOperatorErrorLogsHoldNoRawID(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	id := opFakeChat(e, "Grace Hopper", "grace@navy.example", shopOrigin+"/help")
	e.fake.setFail(errors.New("open email: cipher: message authentication failed"))
	r := e.operatorGet("/v1/sites/shop/chats/"+id, shopOperatorKey)
	if r.status != http.StatusInternalServerError || r.errorCode(t) != "internal" {
		t.Fatalf("read of the chat: %d %s, want 500 internal", r.status, r.body)
	}
	if !strings.Contains(e.logs.String(), `"internal error"`) {
		t.Fatalf("the internal error is not logged:\n%s", e.logs.String())
	}
	e.assertLogsClean(id, "/chats/"+id, "Grace", "grace@navy.example")
}

// The range form of stats as the transport reads and answers it: from and to
// together (UTC days), not with day, one row per day as api/openapi.yaml says,
// for an operator or a privacy key. The counts and the range's bounds (at most
// 90 days, from before to) are the domain's: visitor's TestStats and
// TestDomainErrorCodes.
func TestStatsRange(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	day2 := e.clock.Now().UTC().Truncate(24 * time.Hour)
	day1 := day2.AddDate(0, 0, -1)
	d := func(t time.Time) string { return t.Format(time.DateOnly) }
	for _, key := range []string{shopOperatorKey, shopPrivacyKey} {
		rq := req{method: http.MethodGet, path: "/v1/sites/shop/stats?from=" + d(day1.AddDate(0, 0, -1)) + "&to=" + d(day2),
			headers: map[string]string{"Authorization": "Bearer " + key}}
		r := e.do(rq)
		if r.status != http.StatusOK {
			t.Fatalf("stats range: %d %s", r.status, r.body)
		}
		checkContract(t, e, rq, r)
		got := decode[statsRangeResponse](t, r)
		if got.From != d(day1.AddDate(0, 0, -1)) || got.To != d(day2) || len(got.Days) != 3 || got.Days[0].Day != got.From || got.Days[2].Day != got.To {
			t.Errorf("stats range = %+v; want three days, oldest first", got)
		}
	}
	for _, tc := range []struct {
		name, query string
	}{
		{"from alone", "from=" + d(day1)},
		{"to alone", "to=" + d(day1)},
		{"day with a range", "day=" + d(day1) + "&from=" + d(day1) + "&to=" + d(day2)},
		{"bad from", "from=yesterday&to=" + d(day2)},
		{"bad to", "from=" + d(day1) + "&to=2026-13-01"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.operatorGet("/v1/sites/shop/stats?"+tc.query, shopOperatorKey)
			if r.status != http.StatusBadRequest || r.errorCode(t) != "invalid_request" {
				t.Errorf("%s: %d %s, want 400 invalid_request", tc.query, r.status, r.body)
			}
		})
	}
}

// agencyKey is one API key listed on two sites with different roles: an agency
// serving two shops.
const agencyKey = "agency-key-0123456789abcdef0123"

// agencySites lists agencyKey as an operator on shop and a privacy key on blog;
// optin does not list it.
func agencySites() string {
	sum := sha256.Sum256([]byte(agencyKey))
	h := hex.EncodeToString(sum[:])
	return `
sites:
  - id: shop
    origins: ["https://shop.example"]
    consent: opt-out
    keys:
      - {id: agency-ops, role: operator, sha256: "` + h + `"}
      - {id: dpo, role: privacy, sha256: "9b98b2e892e32b76693355ee5ffe2e7a6b98b001059abbc172169dd1e75e4660"}
  - id: blog
    origins: ["https://blog.example"]
    consent: opt-out
    keys:
      - {id: agency-dpo, role: privacy, sha256: "` + h + `"}
  - id: optin
    origins: ["https://optin.example"]
    consent: opt-in
    keys:
      - {id: optin-agent, role: operator, sha256: "f42b4fb64fccedc404554cddb43cd7c6e9dd28730936e97218d3e05e79c41869"}
`
}

// Invariant 7 at the transport: each route asks for its roles (routes.go), so
// a key listed on two sites reaches on each the routes of the role given there;
// a site that does not list it answers 403, a key no site lists 401. Which key
// acts with which role, and that a refusal never says where else a key is
// valid, is the domain's (visitor's TestAuthenticateAgainstTheRequestedSite).
func TestAgencyKeyOnTwoSites(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t, func(o *envOptions) { o.sites = agencySites() })
	tests := []struct {
		name   string
		key    string
		path   string
		status int
		code   string
	}{
		{name: "operator on shop reads the live view", key: agencyKey, path: "/v1/sites/shop/visitors/live", status: http.StatusOK},
		{name: "operator on shop may not read the audit", key: agencyKey, path: "/v1/sites/shop/audit", status: http.StatusForbidden, code: "forbidden"},
		{name: "privacy on blog reads the audit", key: agencyKey, path: "/v1/sites/blog/audit", status: http.StatusOK},
		{name: "privacy on blog reads the live view", key: agencyKey, path: "/v1/sites/blog/visitors/live", status: http.StatusOK},
		{name: "privacy on blog reads retention", key: agencyKey, path: "/v1/sites/blog/retention", status: http.StatusOK},
		{name: "a site that does not list it", key: agencyKey, path: "/v1/sites/optin/visitors/live", status: http.StatusForbidden, code: "forbidden"},
		{name: "a key no site lists", key: "nobody-key-0123456789abcdef0123", path: "/v1/sites/shop/visitors/live", status: http.StatusUnauthorized, code: "unauthorized"},
		{name: "shop's own privacy key on blog", key: shopPrivacyKey, path: "/v1/sites/blog/audit", status: http.StatusForbidden, code: "forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := keyDo(e, tt.key, http.MethodGet, tt.path, nil)
			wantStatus(t, r, tt.status, tt.code)
		})
	}
}

// The Bearer scheme name is case-insensitive (RFC 7235 §2.1); other schemes
// are refused.
func TestBearerSchemeCase(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"Bearer " + shopOperatorKey, http.StatusOK},
		{"bearer " + shopOperatorKey, http.StatusOK},
		{"BEARER " + shopOperatorKey, http.StatusOK},
		{"bEaReR  " + shopOperatorKey + " ", http.StatusOK},
		{"Basic " + shopOperatorKey, http.StatusUnauthorized},
		{"Bearer", http.StatusUnauthorized},
		{shopOperatorKey, http.StatusUnauthorized},
	} {
		r := e.do(req{method: http.MethodGet, path: "/v1/sites/shop/stats", headers: map[string]string{"Authorization": tc.auth}})
		if r.status != tc.want {
			t.Errorf("Authorization %q: %d %s, want %d", strings.Replace(tc.auth, shopOperatorKey, "<key>", 1), r.status, r.body, tc.want)
		}
	}
}

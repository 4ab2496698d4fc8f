package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// optinTextSHA256 is the SHA-256 of site optin's legal text (env_test.go).
var optinTextSHA256 = func() string {
	sum := sha256.Sum256([]byte("Analytics only with your consent."))
	return hex.EncodeToString(sum[:])
}()

// oneDay is a calendar day of the pinned clock.
const oneDay = 24 * time.Hour

// behindProxy makes the test's loopback peer a trusted proxy, so the client IP
// comes from X-Forwarded-For.
func behindProxy(o *envOptions) {
	o.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}
}

// putConsent sends PUT /v1/consent of site.
func putConsent(e *env, site string, analytics, marketing bool, policy string, headers map[string]string, cookies ...*http.Cookie) resp {
	e.t.Helper()
	b, _ := json.Marshal(map[string]any{"site": site, "analytics": analytics, "marketing": marketing, "policy_version": policy})
	return e.do(req{method: http.MethodPut, path: "/v1/consent", body: string(b), headers: headers, cookies: cookies})
}

// getConsent sends GET /v1/consent of site with token ("" for none) in the header.
func getConsent(e *env, site, token string) resp {
	e.t.Helper()
	h := map[string]string{"Origin": originOf[site]}
	if token != "" {
		h[tokenHeader] = token
	}
	return e.do(req{method: http.MethodGet, path: "/v1/consent?site=" + site, headers: h})
}

// wantChoice fails t unless r is 200 with exactly the choice given (and a
// token when withToken); validUntil zero means null.
func wantChoice(t testing.TB, r resp, analytics, marketing bool, policy string, validUntil time.Time, withToken bool) map[string]any {
	t.Helper()
	if got, want := r.status, http.StatusOK; got != want {
		t.Fatalf("status %d, want %d: %s", got, want, r.body)
	}
	got := r.json(t)
	token, _ := got["token"].(string)
	if withToken && token == "" {
		t.Fatalf("no token in %s", r.body)
	}
	delete(got, "token")
	var until any
	if !validUntil.IsZero() {
		until = validUntil.UTC().Format(time.RFC3339Nano)
	}
	if s, ok := got["valid_until"].(string); ok {
		// Compare instants, not spellings; tokens keep whole seconds.
		if u, err := time.Parse(time.RFC3339Nano, s); err == nil && near(u, validUntil) {
			got["valid_until"] = until
		}
	}
	want := map[string]any{"analytics": analytics, "marketing": marketing, "policy_version": policy, "valid_until": until}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Fatalf("consent (-want +got):\n%s", diff)
	}
	if withToken {
		got["token"] = token
	}
	return got
}

// near reports whether a and b are less than a second apart: tokens carry
// their times in whole seconds.
func near(a, b time.Time) bool {
	d := a.Sub(b)
	return d > -time.Second && d < time.Second
}

// storedConsent is a consent record as the store keeps it.
type storedConsent struct {
	VisitorID     string    `json:"visitor_id"`
	Time          time.Time `json:"time"`
	Analytics     bool      `json:"analytics"`
	Marketing     bool      `json:"marketing"`
	PolicyVersion string    `json:"policy_version"`
	TextSHA256    string    `json:"text_sha256"`
	Method        string    `json:"method"`
	IP            string    `json:"ip"`
	UserAgent     string    `json:"user_agent"`
}

// consentRecordsOf reads a visitor's consent records, oldest first.
func consentRecordsOf(e *env, site, visitorID string) []storedConsent {
	e.t.Helper()
	members, err := e.rdb.ZRange(context.Background(), e.profileKey(site, visitorID)+":r", 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	recs := make([]storedConsent, 0, len(members))
	for _, m := range members {
		var r storedConsent
		if err := json.Unmarshal([]byte(m), &r); err != nil {
			e.t.Fatalf("consent record %q: %v", m, err)
		}
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b storedConsent) int { return a.Time.Compare(b.Time) })
	return recs
}

// mustGrant grants analytics on optin and returns the identity token.
func mustGrant(e *env) string {
	e.t.Helper()
	r := putConsent(e, "optin", true, false, "v2", map[string]string{"Origin": originOptin})
	token, _ := r.json(e.t)["token"].(string)
	if r.status != http.StatusOK || token == "" {
		e.t.Fatalf("grant: status %d: %s", r.status, r.body)
	}
	return token
}

// Invariant 2, opt-in: before a grant a page view stores nothing and sets no
// cookie, and the choice reads as the site's defaults.
func TestConsentOptInStoresNothingBeforeGrant(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := trackWith(e, "optin", originOptin+"/", map[string]string{"Origin": originOptin})
	wantRefused(t, r, "no_consent")
	wantNoCookie(t, r)
	wantChoice(t, getConsent(e, "optin", ""), false, false, "v2", time.Time{}, false)
	if keys := nonStatKeys(e); len(keys) != 0 {
		t.Errorf("keys written: %q", keys)
	}
	if diff := cmp.Diff(map[string]string{"no_consent": "1"}, e.stats("optin")); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

// Invariant 2: a grant issues an identity and stores a complete consent record
// (the IP as the site's ip mode stores it: in full on this ip: full site); page
// views are then tracked.
func TestConsentOptInGrantRecordsProof(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		headers map[string]string
		method  string
	}{
		{name: "banner", headers: map[string]string{"Origin": originOptin, "X-Forwarded-For": londonIP}, method: "banner"},
		{name: "api", headers: map[string]string{"X-Forwarded-For": londonIP}, method: "api"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, behindProxy)
			now := e.clock.Now()
			r := putConsent(e, "optin", true, false, "v2", tt.headers)
			got := wantChoice(t, r, true, false, "v2", now.Add(30*oneDay), true)
			token := got["token"].(string)
			ck := r.cookie("vt_optin")
			if ck == nil || ck.Value != token || !ck.HttpOnly || ck.MaxAge <= 0 {
				t.Fatalf("identity cookie %+v, want the token", ck)
			}
			id := e.visitorID("optin", token)

			recs := consentRecordsOf(e, "optin", id)
			want := []storedConsent{{
				VisitorID: id, Time: now, Analytics: true, Marketing: false, PolicyVersion: "v2",
				TextSHA256: optinTextSHA256, Method: tt.method, IP: londonIP, UserAgent: chromeUA,
			}}
			if diff := cmp.Diff(want, recs); diff != "" {
				t.Errorf("consent records (-want +got):\n%s", diff)
			}

			if got := e.mustTrack("optin", originOptin+"/a", token); got != token {
				t.Errorf("tracked with token %q, want %q", got, token)
			}
			e.clock.Advance(10 * time.Second)
			p := trackWith(e, "optin", originOptin+"/b", map[string]string{"Origin": originOptin}, identityCookie("optin", token))
			if m := p.json(t); p.status != http.StatusOK || m["tracked"] != true {
				t.Fatalf("page view with the cookie: status %d: %s", p.status, p.body)
			}
			if got, want := e.current("optin", id)["np"], "2"; got != want {
				t.Errorf("pages this session = %s, want %s", got, want)
			}
			if got, want := statCount(e, "optin", "tracked"), 2; got != want {
				t.Errorf("counter tracked = %d, want %d", got, want)
			}
			wantChoice(t, getConsent(e, "optin", token), true, false, "v2", now.Add(30*oneDay), false)
		})
	}
}

// Invariant 2: a choice for another policy version is refused with 409 and
// writes nothing, with or without identity, grant or refusal.
func TestConsentPolicyOutdated(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		analytics bool
		identity  bool
	}{
		{name: "grant without identity", analytics: true},
		{name: "refusal without identity", analytics: false},
		{name: "grant with identity", analytics: true, identity: true},
		{name: "withdrawal with identity", analytics: false, identity: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			h := map[string]string{"Origin": originOptin}
			if tt.identity {
				token := mustGrant(e)
				e.mustTrack("optin", originOptin+"/", token)
				h[tokenHeader] = token
			}
			before := redistest.DumpValues(t, e.rdb)
			e.clock.Advance(time.Minute)
			r := putConsent(e, "optin", tt.analytics, false, "v1", h)
			if got, want := r.status, http.StatusConflict; got != want {
				t.Fatalf("status %d, want %d: %s", got, want, r.body)
			}
			if got, want := r.errorCode(t), "policy_outdated"; got != want {
				t.Errorf("code %q, want %q", got, want)
			}
			wantNoCookie(t, r)
			if diff := cmp.Diff(before, redistest.DumpValues(t, e.rdb)); diff != "" {
				t.Errorf("store changed (-before +after):\n%s", diff)
			}
		})
	}
}

// Invariant 2: a grant lapses after consent_valid_days; then page views answer
// no_consent, store nothing, and tracking never resumes by itself.
func TestConsentOptInGrantLapses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := mustGrant(e)
	id := e.visitorID("optin", token)
	e.mustTrack("optin", originOptin+"/a", token)
	profile := e.current("optin", id)
	keys := nonStatKeys(e)

	e.clock.Advance(31 * oneDay)
	wantRefused(t, e.pageview("optin", originOptin+"/b", token, map[string]string{"Origin": originOptin}), "no_consent")
	wantChoice(t, getConsent(e, "optin", token), false, false, "v2", time.Time{}, false)
	if r := hitWith(e, "optin", "heartbeat", map[string]string{tokenHeader: token}); r.json(t)["tracked"] != false {
		t.Errorf("heartbeat after the grant lapsed: %s", r.body)
	}
	e.clock.Advance(oneDay)
	r := trackWith(e, "optin", originOptin+"/c", map[string]string{"Origin": originOptin}, identityCookie("optin", token))
	wantRefused(t, r, "no_consent")

	if diff := cmp.Diff(profile, e.current("optin", id)); diff != "" {
		t.Errorf("profile changed after the grant lapsed (-before +after):\n%s", diff)
	}
	if diff := cmp.Diff(keys, nonStatKeys(e)); diff != "" {
		t.Errorf("keys other than counters changed (-before +after):\n%s", diff)
	}
	if got, want := statCount(e, "optin", "no_consent"), 1; got != want {
		t.Errorf("counter no_consent of day 32 = %d, want %d", got, want)
	}
}

// Invariant 2: a withdrawal deletes behaviour data at once, keeps the consent
// records (grant and withdrawal), and replaces the identity with a refusal
// token; neither that token nor the old identity is tracked afterwards.
func TestConsentOptInWithdrawal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	granted := e.clock.Now()
	token := mustGrant(e)
	id := e.visitorID("optin", token)
	e.mustTrack("optin", originOptin+"/a", token)
	e.clock.Advance(time.Minute)
	e.mustTrack("optin", originOptin+"/b", token)
	e.clock.Advance(31 * time.Minute)
	e.mustTrack("optin", originOptin+"/c", token)
	pk := e.profileKey("optin", id)
	// Profile, session index, choice, records, and two sessions of a list and a hash each.
	if got := len(visitorKeys(e, "optin", id)); got != 8 {
		t.Fatalf("visitor keys before withdrawal: %q", visitorKeys(e, "optin", id))
	}

	e.clock.Advance(time.Minute)
	now := e.clock.Now()
	r := putConsent(e, "optin", false, false, "v2", map[string]string{"Origin": originOptin}, identityCookie("optin", token))
	refusal := wantChoice(t, r, false, false, "v2", now.Add(30*oneDay), true)["token"].(string)
	tok, ok := e.signer.Verify(refusal, "optin", now)
	if !ok || tok.Kind != visitor.KindRefusal || !near(tok.Expires, now.Add(30*oneDay)) {
		t.Fatalf("token %+v (valid %t): want a refusal valid consent_valid_days", tok, ok)
	}
	if ck := r.cookie("vt_optin"); ck == nil || ck.Value != refusal || ck.MaxAge <= 0 {
		t.Errorf("cookie %+v, want the refusal token", ck)
	}

	if diff := cmp.Diff([]string{pk + ":c", pk + ":r"}, visitorKeys(e, "optin", id)); diff != "" {
		t.Errorf("visitor keys after withdrawal (-want +got):\n%s", diff)
	}
	if _, ok := liveScore(e, "optin", id); ok {
		t.Error("the visitor is still in the live set after withdrawal")
	}
	recs := consentRecordsOf(e, "optin", id)
	if len(recs) != 2 {
		t.Fatalf("consent records %+v, want the grant and the withdrawal", recs)
	}
	if r := recs[0]; !r.Analytics || !r.Time.Equal(granted) || r.VisitorID != id {
		t.Errorf("first record %+v, want the grant", r)
	}
	if r := recs[1]; r.Analytics || r.Marketing || !r.Time.Equal(now) || r.VisitorID != id || r.Method != "banner" ||
		r.PolicyVersion != "v2" || r.TextSHA256 != optinTextSHA256 {
		t.Errorf("second record %+v, want the withdrawal", r)
	}

	keys := nonStatKeys(e)
	e.clock.Advance(time.Minute)
	// The refusal cookie is the visitor's choice: it must not be expired.
	p := trackWith(e, "optin", originOptin+"/d", map[string]string{"Origin": originOptin}, identityCookie("optin", refusal))
	wantRefused(t, p, "no_consent")
	wantNoCookie(t, p)
	wantRefused(t, e.pageview("optin", originOptin+"/e", refusal, nil), "no_consent")
	// The store's choice is authoritative over the grant the old token restates.
	wantRefused(t, e.pageview("optin", originOptin+"/f", token, nil), "no_consent")
	if r := hitWith(e, "optin", "heartbeat", map[string]string{tokenHeader: token}); r.json(t)["tracked"] != false {
		t.Errorf("heartbeat with the old identity: %s", r.body)
	}
	if diff := cmp.Diff(keys, nonStatKeys(e)); diff != "" {
		t.Errorf("keys other than counters changed (-before +after):\n%s", diff)
	}
	if got, want := statCount(e, "optin", "no_consent"), 3; got != want {
		t.Errorf("counter no_consent = %d, want %d", got, want)
	}
	if got, want := statCount(e, "optin", "tracked"), 3; got != want {
		t.Errorf("counter tracked = %d, want %d", got, want)
	}
	wantChoice(t, getConsent(e, "optin", refusal), false, false, "v2", now.Add(30*oneDay), false)
}

// Invariant 2, opt-out: tracked by default; a refusal deletes the data and
// lasts while its token is valid (12 months); then the token is foreign and
// the caller is a new, unrelated visitor.
func TestConsentOptOutRefusalLasts(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := e.mustTrack("shop", shopOrigin+"/a", "")
	id := e.visitorID("shop", token)
	pk := e.profileKey("shop", id)

	e.clock.Advance(time.Minute)
	now := e.clock.Now()
	r := putConsent(e, "shop", false, false, "2026-11", map[string]string{"Origin": shopOrigin, tokenHeader: token})
	refusal := wantChoice(t, r, false, false, "2026-11", now.Add(365*oneDay), true)["token"].(string)
	tok, ok := e.signer.Verify(refusal, "shop", now)
	if !ok || tok.Kind != visitor.KindRefusal || !near(tok.Expires, now.Add(365*oneDay)) {
		t.Fatalf("token %+v (valid %t): want a refusal valid 12 months", tok, ok)
	}
	if diff := cmp.Diff([]string{pk + ":c", pk + ":r"}, visitorKeys(e, "shop", id)); diff != "" {
		t.Errorf("visitor keys after refusal (-want +got):\n%s", diff)
	}
	if _, ok := liveScore(e, "shop", id); ok {
		t.Error("the visitor is still in the live set after refusal")
	}
	recs := consentRecordsOf(e, "shop", id)
	if len(recs) != 1 || recs[0].Analytics || recs[0].PolicyVersion != "2026-11" || recs[0].VisitorID != id {
		t.Fatalf("consent records %+v, want the refusal", recs)
	}

	keys := nonStatKeys(e)
	for _, step := range []time.Duration{time.Minute, 200 * oneDay} {
		e.clock.Advance(step)
		wantRefused(t, e.pageview("shop", shopOrigin+"/b", refusal, nil), "no_consent")
		wantRefused(t, e.pageview("shop", shopOrigin+"/c", token, nil), "no_consent")
		wantChoice(t, getConsent(e, "shop", refusal), false, false, "2026-11", now.Add(365*oneDay), false)
		if diff := cmp.Diff(keys, nonStatKeys(e)); diff != "" {
			t.Errorf("after %s: keys other than counters changed (-before +after):\n%s", e.clock.Now().Sub(now), diff)
		}
	}

	e.clock.Advance(now.Add(366 * oneDay).Sub(e.clock.Now()))
	p := e.pageview("shop", shopOrigin+"/d", refusal, nil)
	m := p.json(t)
	fresh, _ := m["token"].(string)
	if p.status != http.StatusOK || m["tracked"] != true || fresh == "" {
		t.Fatalf("page view with an expired refusal: status %d: %s", p.status, p.body)
	}
	if ck := p.cookie("vt_shop"); ck == nil || ck.Value != fresh {
		t.Errorf("cookie %+v, want the new identity", ck)
	}
	if got := e.visitorID("shop", fresh); got == id {
		t.Errorf("the new identity is the refused visitor %s", id)
	}
	if got := consentRecordsOf(e, "shop", id); len(got) != 1 {
		t.Errorf("consent records of the refused visitor = %+v, want the refusal only", got)
	}
}

// Invariant 2, on-chat: page views store nothing identifying and set no cookie
// until the visitor starts a chat.
func TestConsentOnChatStoresNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, path := range []string{"/", "/help"} {
		r := trackWith(e, "onchat", originOnchat+path, map[string]string{"Origin": originOnchat})
		wantRefused(t, r, "no_consent")
		wantNoCookie(t, r)
	}
	wantChoice(t, getConsent(e, "onchat", ""), false, false, "1", time.Time{}, false)
	if keys := nonStatKeys(e); len(keys) != 0 {
		t.Errorf("keys written: %q", keys)
	}
	if diff := cmp.Diff(map[string]string{"no_consent": "2"}, e.stats("onchat")); diff != "" {
		t.Errorf("counters (-want +got):\n%s", diff)
	}
}

// PUT /v1/consent without marketing (the consent banner asks analytics only)
// is accepted, answered as api/openapi.yaml says, and records analytics alone:
// a purpose not asked is absent (invariant 2), never false.
func TestPutConsentWithoutMarketing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	h := map[string]string{"Origin": originOptin}
	body := `{"site":"optin","analytics":true,"policy_version":"v2"}`
	r := e.do(req{method: http.MethodPut, path: "/v1/consent", body: body, headers: h})
	checkContract(t, e, req{method: http.MethodPut, path: "/v1/consent", headers: h, body: body}, r)
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	token, _ := r.json(t)["token"].(string)
	if token == "" || r.json(t)["analytics"] != true || r.json(t)["marketing"] != false {
		t.Fatalf("answer %s, want analytics granted with a token", r.body)
	}
	site, _ := e.sites.Get("optin")
	ex, err := e.svc.ExportVisitor(context.Background(), visitor.Actor{Site: site, KeyID: "test", Role: visitor.RolePrivacy},
		e.visitorID("optin", token))
	if err != nil {
		t.Fatal(err)
	}
	if len(ex.Consents) != 1 || ex.Consents[0].Analytics == nil || !*ex.Consents[0].Analytics || ex.Consents[0].Marketing != nil {
		t.Errorf("records %+v, want one answering analytics alone", ex.Consents)
	}
}

// A token-carrying refusal is never rate limited, but a grant is: alternating
// refusals and analytics grants that answer marketing false (a withdrawal
// only while marketing is granted) must not write records without limit.
// A real marketing withdrawal still passes a spent budget.
func TestRateLimitAlternatingConsentFlood(t *testing.T) {
	t.Parallel()
	e := newLimitEnvWith(t, redistest.Start(t), floodSites, true)
	token := tokenFrom(e, ipA)
	h := from("shop", ipA)
	h[tokenHeader] = token
	limited := 0
	for i := range 3 * visitor.IdentityRequestsPerMinute {
		e.clock.Advance(time.Millisecond)
		if r := putConsent(e, "shop", false, false, "2026-11", h); r.status != http.StatusOK {
			t.Fatalf("refusal %d: status %d, body %s", i+1, r.status, r.body)
		}
		e.clock.Advance(time.Millisecond)
		switch r := putConsent(e, "shop", true, false, "2026-11", h); r.status {
		case http.StatusOK:
		case http.StatusTooManyRequests:
			limited++
		default:
			t.Fatalf("grant %d: status %d, body %s", i+1, r.status, r.body)
		}
	}
	if limited == 0 {
		t.Errorf("%d alternating refusals and grants from one identity: no grant was rate limited", 3*visitor.IdentityRequestsPerMinute)
	}
	if n := len(consentRecordsOf(e, "shop", e.visitorID("shop", token))); n > 2*visitor.IdentityRequestsPerMinute+2 {
		t.Errorf("%d consent records written by one identity in a minute", n)
	}

	// With marketing granted, marketing false is a withdrawal: never refused.
	h = from("shop", ipB)
	h[tokenHeader] = tokenFrom(e, ipB)
	for i := range visitor.IdentityRequestsPerMinute {
		e.clock.Advance(time.Millisecond)
		if r := putConsent(e, "shop", true, true, "2026-11", h); r.status != http.StatusOK {
			t.Fatalf("grant %d: status %d, body %s", i+1, r.status, r.body)
		}
	}
	e.clock.Advance(time.Millisecond)
	if r := putConsent(e, "shop", true, true, "2026-11", h); r.status != http.StatusTooManyRequests {
		t.Fatalf("grant over the budget: status %d, want 429", r.status)
	}
	e.clock.Advance(time.Millisecond)
	if r := putConsent(e, "shop", true, false, "2026-11", h); r.status != http.StatusOK || r.json(t)["marketing"] != false {
		t.Errorf("marketing withdrawal over the spent budget: status %d, body %s; want 200", r.status, r.body)
	}
}

// Invariant 1 (issue 17, item 7) at the transport: PUT /v1/consent granting
// under DNT or GPC hands the signals to the domain and answers the choice
// refused with "reason", sets no cookie (or only expires the one it carried);
// a refusal under a signal answers its token as usual. Each answer matches
// api/openapi.yaml. What is stored is the domain's (visitor's
// TestSetConsentUnderSignal).
func TestPutConsentUnderSignal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		header     string
		analytics  bool
		withCookie bool
		wantReason string
	}{
		{name: "grant under GPC", header: "Sec-GPC", analytics: true, wantReason: "gpc"},
		{name: "grant under DNT", header: "DNT", analytics: true, wantReason: "dnt"},
		{name: "grant under GPC with an identity cookie", header: "Sec-GPC", analytics: true, withCookie: true, wantReason: "gpc"},
		{name: "refusal under GPC", header: "Sec-GPC"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t)
			var cookies []*http.Cookie
			if tt.withCookie {
				cookies = append(cookies, identityCookie("optin", mustGrant(e)))
			}
			h := map[string]string{"Origin": originOptin, tt.header: "1"}
			r := putConsent(e, "optin", tt.analytics, tt.analytics, "v2", h, cookies...)
			checkContract(t, e, req{method: http.MethodPut, path: "/v1/consent", headers: h,
				body: fmt.Sprintf(`{"site":"optin","analytics":%t,"marketing":%t,"policy_version":"v2"}`, tt.analytics, tt.analytics)}, r)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			got := r.json(t)
			if tt.wantReason == "" {
				if got["token"] == nil || got["reason"] != nil || r.cookie("vt_optin") == nil {
					t.Errorf("refusal under a signal = %s, want a refusal token as usual", r.body)
				}
				return
			}
			want := map[string]any{"analytics": false, "marketing": false, "policy_version": "v2", "valid_until": nil, "reason": tt.wantReason}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("body (-want +got):\n%s", diff)
			}
			if tt.withCookie {
				wantExpiredCookie(t, r, "vt_optin")
			} else {
				wantNoCookie(t, r)
			}
			last := e.fake.consents[len(e.fake.consents)-1]
			if last.GPC != (tt.header == "Sec-GPC") || last.DNT != (tt.header == "DNT") || last.Method != visitor.MethodBanner {
				t.Errorf("the domain got GPC %t, DNT %t, method %s; want the request's signal and banner", last.GPC, last.DNT, last.Method)
			}
		})
	}
}

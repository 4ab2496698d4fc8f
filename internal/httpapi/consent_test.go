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

// storedConsent is a consent record as the export reads it back.
type storedConsent struct {
	VisitorID     string
	Time          time.Time
	Analytics     bool
	Marketing     bool
	PolicyVersion string
	TextSHA256    string
	Method        string
	IP            string
	UserAgent     string
}

// consentRecordsOf reads a visitor's consent records through the export,
// oldest first.
func consentRecordsOf(e *env, site, visitorID string) []storedConsent {
	e.t.Helper()
	var out []storedConsent
	for _, r := range e.export(site, visitorID).Consents {
		out = append(out, storedConsent{VisitorID: r.VisitorID, Time: r.Time, Analytics: r.Analytics != nil && *r.Analytics,
			Marketing: r.Marketing != nil && *r.Marketing, PolicyVersion: r.PolicyVersion, TextSHA256: r.TextSHA256,
			Method: r.Method, IP: r.IP, UserAgent: r.UserAgent})
	}
	slices.SortStableFunc(out, func(a, b storedConsent) int { return a.Time.Compare(b.Time) })
	return out
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

// TestConsentEndToEnd proves the consent routes over the whole stack on the
// opt-in site: nothing is tracked before a grant; a banner grant issues an
// identity whose cookie then tracks page views and whose record the export
// shows complete (the IP in full, as the site's ip mode says); a withdrawal
// replaces it with a refusal token, deletes the behaviour data and adds a
// record. The rules are pinned in visitor's TestSetConsent and
// TestTrackPrivacyPrecedence.
func TestConsentEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, behindProxy)
	h := map[string]string{"Origin": originOptin, "X-Forwarded-For": londonIP}
	wantRefused(t, trackWith(e, "optin", originOptin+"/", h), "no_consent")
	wantChoice(t, getConsent(e, "optin", ""), false, false, "v2", time.Time{}, false)

	now := e.clock.Now()
	r := putConsent(e, "optin", true, false, "v2", h)
	token := wantChoice(t, r, true, false, "v2", now.Add(30*oneDay), true)["token"].(string)
	if ck := r.cookie("vt_optin"); ck == nil || ck.Value != token || !ck.HttpOnly || ck.MaxAge <= 0 {
		t.Fatalf("identity cookie %+v, want the token", ck)
	}
	if p := trackWith(e, "optin", originOptin+"/a", h, identityCookie("optin", token)); p.json(t)["tracked"] != true {
		t.Fatalf("page view with the cookie: %s", p.body)
	}
	wantChoice(t, getConsent(e, "optin", token), true, false, "v2", now.Add(30*oneDay), false)

	e.clock.Advance(time.Minute)
	w := putConsent(e, "optin", false, false, "v2", h, identityCookie("optin", token))
	refusal := wantChoice(t, w, false, false, "v2", e.clock.Now().Add(30*oneDay), true)["token"].(string)
	if tok, ok := e.signer.Verify(refusal, "optin", e.clock.Now()); !ok || tok.Kind != visitor.KindRefusal {
		t.Fatalf("after the withdrawal: token %+v, want a refusal", tok)
	}
	wantRefused(t, trackWith(e, "optin", originOptin+"/b", h, identityCookie("optin", refusal)), "no_consent")

	site, err := e.sites.Get("optin")
	if err != nil {
		t.Fatal(err)
	}
	x, err := e.svc.ExportVisitor(context.Background(), visitor.Actor{Site: site, KeyID: "test", Role: visitor.RolePrivacy}, e.visitorID("optin", token))
	if err != nil {
		t.Fatal(err)
	}
	if x.Profile != nil || len(x.Sessions) != 0 || len(x.Consents) != 2 {
		t.Fatalf("export after the withdrawal: profile %+v, %d sessions, %d records; want no behaviour data, the grant and the withdrawal",
			x.Profile, len(x.Sessions), len(x.Consents))
	}
	g := x.Consents[0]
	if g.Analytics == nil || !*g.Analytics || g.IP != londonIP || g.UserAgent != chromeUA || g.TextSHA256 != optinTextSHA256 ||
		g.Method != visitor.MethodBanner || !g.Time.Equal(now) {
		t.Errorf("grant record = %+v", g)
	}
}

// PUT /v1/consent hands the domain what the request answered: without
// marketing (the consent banner asks analytics only) it keeps the marketing
// permission as it is (a purpose not asked is absent, invariant 2; the domain's
// side is visitor's TestBannerAnswerLeavesChatMarketing); with an Origin the
// answer came from the banner, without one from the API. Each answer matches
// api/openapi.yaml.
func TestPutConsentRequest(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name          string
		origin        bool
		body          string
		keepMarketing bool
		method        string
	}{
		{name: "banner without marketing", origin: true, body: `{"site":"optin","analytics":true,"policy_version":"v2"}`, keepMarketing: true, method: visitor.MethodBanner},
		{name: "banner with marketing", origin: true, body: `{"site":"optin","analytics":true,"marketing":false,"policy_version":"v2"}`, method: visitor.MethodBanner},
		{name: "api", body: `{"site":"optin","analytics":true,"marketing":true,"policy_version":"v2"}`, method: visitor.MethodAPI},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t)
			h := map[string]string{}
			if tc.origin {
				h["Origin"] = originOptin
			}
			rq := req{method: http.MethodPut, path: "/v1/consent", body: tc.body, headers: h}
			r := e.do(rq)
			checkContract(t, e, rq, r)
			if r.status != http.StatusOK || r.json(t)["analytics"] != true {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			last := e.fake.consents[len(e.fake.consents)-1]
			if last.KeepMarketing != tc.keepMarketing || last.Method != tc.method || !last.Analytics {
				t.Errorf("the domain got keep marketing %t, method %s, analytics %t; want %t, %s, true", last.KeepMarketing, last.Method, last.Analytics, tc.keepMarketing, tc.method)
			}
		})
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
	if n := len(e.export("shop", e.visitorID("shop", token)).Consents); n > 2*visitor.IdentityRequestsPerMinute+2 {
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

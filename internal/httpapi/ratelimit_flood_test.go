package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// floodSites is one opt-out site with the default limits, as an office or a
// carrier NAT meets them: many visitors share one IP block.
const floodSites = `
sites:
  - id: shop
    origins: ["https://shop.example"]
    consent: opt-out
    policy_version: "2026-11"
`

// distinctIP is the i-th of 256 addresses in distinct /24s, away from ipA's.
func distinctIP(i int) string { return fmt.Sprintf("198.18.%d.1", i) }

// officeIP is the i-th address of ipA's /24: one office behind its NAT.
func officeIP(i int) string { return fmt.Sprintf("203.0.113.%d", 1+i%250) }

// tokenFrom tracks a first page view of shop from ip and returns its identity token.
func tokenFrom(e *env, ip string) string {
	e.t.Helper()
	r := e.pageview("shop", "https://shop.example/", "", from("shop", ip))
	tok, _ := r.json(e.t)["token"].(string)
	if r.status != http.StatusOK || tok == "" {
		e.t.Fatalf("first page view from %s: status %d, body %s", ip, r.status, r.body)
	}
	return tok
}

// countStatus counts the responses of n calls of f by status.
func countStatus(n int, f func(i int) resp) map[int]int {
	out := map[int]int{}
	for i := range n {
		out[f(i).status]++
	}
	return out
}

// Two hundred visitors with identities of their own, all behind one office
// IP, are each limited by their identity: every page view and heartbeat is
// tracked.
func TestRateLimitOfficeVisitorsWithTokens(t *testing.T) {
	t.Parallel()
	e := newLimitEnvWith(t, redistest.Start(t), floodSites, true)
	const visitors = 200
	tokens := make([]string, visitors)
	for i := range tokens {
		tokens[i] = tokenFrom(e, distinctIP(i))
	}
	views := countStatus(visitors, func(i int) resp {
		return e.pageview("shop", "https://shop.example/p", tokens[i], from("shop", ipA))
	})
	beats := countStatus(visitors, func(i int) resp {
		return e.do(req{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"heartbeat"}`,
			headers: map[string]string{"Origin": shopOrigin, "X-Forwarded-For": ipA, tokenHeader: tokens[i]}})
	})
	t.Logf("%d visitors with tokens behind one IP: page views %v, heartbeats %v", visitors, views, beats)
	if views[http.StatusOK] != visitors || beats[http.StatusOK] != visitors {
		t.Errorf("page views by status %v, heartbeats %v; want all %d answered 200", views, beats, visitors)
	}
	// Read back: each visitor's session holds the page viewed from the office.
	for i, tok := range tokens {
		pages := 0
		for _, item := range e.session("shop", e.visitorID("shop", tok)) {
			if !strings.HasPrefix(item, "#") { // the session's header
				pages++
			}
		}
		if got := pages; got != 2 {
			t.Fatalf("visitor %d: session holds %d items, want 2 page views", i, got)
		}
	}
}

// Forty new visitors of one /24 (an office's first morning) are all tracked
// under the default new_visitors_per_minute.
func TestRateLimitOfficeNewVisitors(t *testing.T) {
	t.Parallel()
	e := newLimitEnvWith(t, redistest.Start(t), floodSites, true)
	const visitors = 40
	got := countStatus(visitors, func(i int) resp {
		return e.pageview("shop", "https://shop.example/", "", from("shop", officeIP(i)))
	})
	t.Logf("%d new visitors from one /24: %v", visitors, got)
	if got[http.StatusOK] != visitors {
		t.Errorf("new visitors by status %v; want all %d answered 200", got, visitors)
	}
	if tracked := e.stats("shop")["tracked"]; tracked != fmt.Sprint(visitors) {
		t.Errorf("tracked counter %q, want %d", tracked, visitors)
	}
}

// A neighbour in the victim's /24 floods consent, /v1/me and chats without a
// token: the neighbour is limited, the victim's token-carrying withdrawal,
// erasure and chat go through.
func TestRateLimitNeighbourFloodSparesVictim(t *testing.T) {
	t.Parallel()
	type flood struct {
		name   string
		n      int
		attack func(e *env) resp
		victim func(e *env, token string) resp
		want   int
		check  func(e *env, token string)
	}
	consent := func(e *env, analytics bool, token, ip string) resp {
		h := from("shop", ip)
		if token != "" {
			h[tokenHeader] = token
		}
		return putConsent(e, "shop", analytics, false, "2026-11", h)
	}
	for _, tc := range []flood{
		{
			name: "consent then withdrawal", n: 20,
			attack: func(e *env) resp { return consent(e, true, "", ipA2) },
			victim: func(e *env, token string) resp { return consent(e, false, token, ipA) },
			want:   http.StatusOK,
			check: func(e *env, token string) {
				recs := consentRecordsOf(e, "shop", e.visitorID("shop", token))
				if len(recs) != 1 || recs[0].Analytics {
					t.Errorf("victim's consent records %+v, want one withdrawal", recs)
				}
			},
		},
		{
			name: "me then erasure", n: 20,
			attack: func(e *env) resp {
				return e.do(req{method: http.MethodGet, path: "/v1/me?site=shop", headers: from("shop", ipA2)})
			},
			victim: func(e *env, token string) resp {
				h := from("shop", ipA)
				h[tokenHeader] = token
				return e.do(req{method: http.MethodDelete, path: "/v1/me?site=shop", headers: h})
			},
			want: http.StatusNoContent,
			check: func(e *env, token string) {
				site, _ := e.sites.Get("shop")
				_, err := e.svc.ExportVisitor(context.Background(),
					visitor.Actor{Site: site, KeyID: "test", Role: visitor.RolePrivacy}, e.visitorID("shop", token))
				if !errors.Is(err, visitor.ErrNotFound) {
					t.Errorf("export of the erased victim: %v, want ErrNotFound", err)
				}
			},
		},
		{
			name: "chats then chat", n: 5,
			attack: func(e *env) resp {
				return e.startChat("shop", "", "Mallory", "m@evil.example", "https://shop.example/help", from("shop", ipA2))
			},
			victim: func(e *env, token string) resp {
				return e.startChat("shop", token, "Ada", "ada@math.example", "https://shop.example/help", from("shop", ipA))
			},
			want: http.StatusCreated,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newLimitEnvWith(t, redistest.Start(t), floodSites, true)
			token := tokenFrom(e, ipA)
			got := countStatus(tc.n, func(int) resp { return tc.attack(e) })
			over := tc.attack(e)
			r := tc.victim(e, token)
			t.Logf("after %d neighbour calls %v, the next neighbour call = %d, victim = %d", tc.n, got, over.status, r.status)
			if r.status != tc.want {
				t.Fatalf("victim: status %d, body %s; want %d", r.status, r.body, tc.want)
			}
			if over.status != http.StatusTooManyRequests {
				t.Errorf("neighbour's call %d: status %d, want 429: token-less calls stay limited by IP block", tc.n+1, over.status)
			}
			if tc.check != nil {
				tc.check(e, token)
			}
		})
	}
}

// One identity flooding page views is limited by its own budget; its
// neighbours behind the same IP are not.
func TestRateLimitIdentityFloodSparesNeighbours(t *testing.T) {
	t.Parallel()
	e := newLimitEnvWith(t, redistest.Start(t), floodSites, true)
	flooder, neighbour := tokenFrom(e, distinctIP(1)), tokenFrom(e, distinctIP(2))
	const flood = 200
	got := countStatus(flood, func(int) resp {
		return e.pageview("shop", "https://shop.example/p", flooder, from("shop", ipA))
	})
	n := e.pageview("shop", "https://shop.example/p", neighbour, from("shop", ipA))
	fresh := e.pageview("shop", "https://shop.example/", "", from("shop", ipA2))
	t.Logf("flooder's %d page views %v; then neighbour = %d, new visitor in the /24 = %d", flood, got, n.status, fresh.status)
	if got[http.StatusOK] != 120 || got[http.StatusTooManyRequests] != flood-120 {
		t.Errorf("flooder's page views by status %v, want 120 answered 200 and the rest 429", got)
	}
	if n.status != http.StatusOK || fresh.status != http.StatusOK {
		t.Errorf("neighbour %d, new visitor %d; want both 200", n.status, fresh.status)
	}
	r := e.pageview("shop", "https://shop.example/p", flooder, from("shop", ipA))
	assertRateLimited(t, r, 1)
}

// limitedCounts reads visitord_rate_limited_total from the env's registry,
// by "kind/by".
func limitedCounts(e *env) map[string]float64 {
	e.t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "visitord_rate_limited_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			out[labels["kind"]+"/"+labels["by"]] = m.GetCounter().GetValue()
		}
	}
	return out
}

// A refusal, withdrawal or erasure that carries a valid token is never
// refused, even once its identity has spent every budget; what the limits
// refused is counted by kind.
func TestRateLimitRefusalsNeverRefused(t *testing.T) {
	t.Parallel()
	e := newLimitEnvWith(t, redistest.Start(t), floodSites, true)
	token := tokenFrom(e, ipA)
	withToken := func(ip string) map[string]string {
		h := from("shop", ip)
		h[tokenHeader] = token
		return h
	}

	// Track: 120 a minute by identity, then a GPC objection.
	for i := range visitor.IdentityHitsPerMinute {
		if r := e.pageview("shop", "https://shop.example/p", token, from("shop", ipA)); r.status != http.StatusOK {
			t.Fatalf("page view %d: status %d, body %s", i+1, r.status, r.body)
		}
	}
	assertRateLimited(t, e.pageview("shop", "https://shop.example/p", token, from("shop", ipA)), 1)
	h := withToken(ipA)
	h["Sec-GPC"] = "1"
	if r := e.pageview("shop", "https://shop.example/p", token, h); r.status != http.StatusOK || r.json(t)["reason"] != "gpc" {
		t.Errorf("GPC objection over the spent budget: status %d, body %s; want 200 gpc", r.status, r.body)
	}

	// Consent: 20 a minute by identity, then a withdrawal.
	for i := range visitor.IdentityRequestsPerMinute {
		if r := putConsent(e, "shop", true, true, "2026-11", withToken(ipA)); r.status != http.StatusOK {
			t.Fatalf("grant %d: status %d, body %s", i+1, r.status, r.body)
		}
	}
	assertRateLimited(t, putConsent(e, "shop", true, true, "2026-11", withToken(ipB)), 3)
	e.clock.Advance(time.Millisecond) // the withdrawal is the newest record
	r := putConsent(e, "shop", false, false, "2026-11", withToken(ipA))
	if r.status != http.StatusOK {
		t.Fatalf("withdrawal over the spent budget: status %d, body %s; want 200", r.status, r.body)
	}
	recs := consentRecordsOf(e, "shop", e.visitorID("shop", token))
	if n := len(recs); n < 2 || recs[n-1].Analytics || recs[n-1].Marketing || !recs[n-2].Analytics {
		t.Errorf("consent records %+v, want the grants and the withdrawal last", recs)
	}

	// /v1/me: 20 a minute by identity, then the erasure.
	for i := range visitor.IdentityRequestsPerMinute {
		if r := e.do(req{method: http.MethodGet, path: "/v1/me?site=shop", headers: withToken(ipA)}); r.status != http.StatusOK {
			t.Fatalf("export %d: status %d, body %s", i+1, r.status, r.body)
		}
	}
	assertRateLimited(t, e.do(req{method: http.MethodGet, path: "/v1/me?site=shop", headers: withToken(ipA)}), 3)
	if r := e.do(req{method: http.MethodDelete, path: "/v1/me?site=shop", headers: withToken(ipA)}); r.status != http.StatusNoContent {
		t.Fatalf("erasure over the spent budget: status %d, body %s; want 204", r.status, r.body)
	}
	site, _ := e.sites.Get("shop")
	if _, err := e.svc.ExportVisitor(context.Background(), visitor.Actor{Site: site, KeyID: "test", Role: visitor.RolePrivacy},
		e.visitorID("shop", token)); !errors.Is(err, visitor.ErrNotFound) {
		t.Errorf("export after the erasure: %v, want ErrNotFound", err)
	}

	// Each refusal is counted under its limit; every limit has a series.
	got := limitedCounts(e)
	want := map[string]float64{}
	for _, l := range visitor.Limits {
		want[string(l.Kind)+"/"+string(l.By)] = 0
	}
	want["track/identity"], want["consent/identity"], want["me/identity"] = 1, 1, 1
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("visitord_rate_limited_total (-want +got):\n%s", diff)
	}
	e.assertLogsClean(token, ipA, ipB)
}

// Operator and privacy routes are limited per API key: 600 a minute.
func TestRateLimitAPIKey(t *testing.T) {
	t.Parallel()
	e := newLimitEnvWith(t, redistest.Start(t), testSites, true)
	for i := range visitor.APIKeyPerMinute {
		if r := e.operatorGet("/v1/sites/shop/stats", shopOperatorKey); r.status != http.StatusOK {
			t.Fatalf("request %d: status %d, body %s", i+1, r.status, r.body)
		}
	}
	// 600 a minute refill one every 0.1 s of Redis's own clock, so the test's
	// own pace lets a few more through before the first 429.
	var r resp
	for range 100 {
		if r = e.operatorGet("/v1/sites/shop/visitors/live", shopOperatorKey); r.status != http.StatusOK {
			break
		}
	}
	assertRateLimited(t, r, 1)
	if r := e.operatorGet("/v1/sites/shop/retention", shopPrivacyKey); r.status != http.StatusOK {
		t.Errorf("another key of the site: status %d, body %s; want 200", r.status, r.body)
	}
	if r := e.operatorGet("/v1/sites/blog/stats", blogOperatorKey); r.status != http.StatusOK {
		t.Errorf("another site's key: status %d, body %s; want 200", r.status, r.body)
	}
	if got := limitedCounts(e)["api/api_key"]; got != 1 {
		t.Errorf("api/api_key refusals counted %v, want 1", got)
	}
	// The counter is named by the keyed hash of the key id only.
	want := "rate:" + visitor.RateLimitKey(e.hasher, "shop", visitor.LimitAPI, visitor.KeySubject("agent-1"))
	keys := e.rateKeys()
	if !slices.Contains(keys, want) {
		t.Errorf("rate-limit keys %q, want %q among them", keys, want)
	}
	for _, k := range keys {
		if strings.Contains(k, "agent-1") || strings.Contains(k, "dpo") {
			t.Errorf("rate-limit key %q names a key id", k)
		}
	}
	e.assertLogsClean(shopOperatorKey, shopPrivacyKey)
}

// Two visitors who refuse in the same second hold refusal tokens of their
// own, so one's flood does not spend the other's budget.
func TestRateLimitRefusalTokensApart(t *testing.T) {
	t.Parallel()
	e := newLimitEnvWith(t, redistest.Start(t), floodSites, true)
	refuse := func(ip string) string {
		r := putConsent(e, "shop", false, false, "2026-11", from("shop", ip))
		tok, _ := r.json(t)["token"].(string)
		if r.status != http.StatusOK || tok == "" {
			t.Fatalf("refusal from %s: status %d, body %s", ip, r.status, r.body)
		}
		return tok
	}
	first, second := refuse(distinctIP(1)), refuse(distinctIP(2)) // the clock is pinned: the same second
	if first == second {
		t.Fatal("two refusals of the same second got the same token")
	}
	view := func(token string) resp {
		return e.pageview("shop", "https://shop.example/p", token, from("shop", ipA))
	}
	for i := range visitor.IdentityHitsPerMinute {
		if r := view(first); r.status != http.StatusOK || r.json(t)["reason"] != "no_consent" {
			t.Fatalf("page view %d with a refusal token: status %d, body %s; want 200 no_consent", i+1, r.status, r.body)
		}
	}
	assertRateLimited(t, view(first), 1)
	if r := view(second); r.status != http.StatusOK {
		t.Errorf("the other refusal's page view: status %d, body %s; want 200", r.status, r.body)
	}
}

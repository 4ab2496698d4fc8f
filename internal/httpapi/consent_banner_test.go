package httpapi

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/visitord/visitord/internal/redistest"

	"github.com/visitord/visitord/internal/visitor"
)

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

package httpapi

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/visitor"
)

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

package httpapi

import (
	"fmt"
	"net/http"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Invariant 1 (issue 17, item 7) at the transport: PUT /v1/consent granting
// under DNT or GPC answers the choice refused with "reason", sets no cookie (or
// only expires the one it carried) and stores nothing; a refusal under a
// signal is recorded as usual. Each answer matches api/openapi.yaml.
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
			e := newEnv(t)
			var cookies []*http.Cookie
			if tt.withCookie {
				cookies = append(cookies, identityCookie("optin", mustGrant(e)))
			}
			before := nonStatKeys(e)
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
			after := nonStatKeys(e)
			if tt.header == "DNT" || !tt.withCookie {
				if diff := cmp.Diff(before, after); diff != "" {
					t.Errorf("keys written under %s (-before +after):\n%s", tt.header, diff)
				}
			}
		})
	}
}

package httpapi

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"testing"
)

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

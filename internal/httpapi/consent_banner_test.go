package httpapi

import (
	"context"
	"net/http"
	"testing"

	"github.com/visitord/visitord/internal/visitor"
)

// PUT /v1/consent without marketing (the consent banner asks analytics only)
// is accepted, answered as api/openapi.yaml says, and records analytics alone:
// a purpose not asked is absent (invariant 2), never false.
func TestPutConsentWithoutMarketing(t *testing.T) {
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

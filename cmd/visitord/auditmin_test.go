package main

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/visitord/visitord/internal/redistest"
)

// VISITORD_AUDIT_MIN_DAYS reaches the service: the privacy key may set the
// audit window down to it and no lower.
func TestServeAuditMinDays(t *testing.T) {
	srv := redistest.Start(t)
	sites := oneKeySites(t, "dpo", "privacy", "privacy-key")
	env := prodEnv(srv, sites)
	env["VISITORD_AUDIT_MIN_DAYS"] = "30"
	in := start(t, env)
	put := func(audit string) (int, string) {
		t.Helper()
		body := `{"sessions":90,"profiles":395,"chats":90,"consents":1095,"audit":` + audit + `}`
		req, err := http.NewRequest(http.MethodPut, "http://"+in.addr+"/v1/sites/shop/retention", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer privacy-key")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := put("29"); code != http.StatusUnprocessableEntity || !strings.Contains(body, "30 days") {
		t.Errorf("PUT audit 29 under VISITORD_AUDIT_MIN_DAYS=30: %d %s, want 422 naming 30 days", code, body)
	}
	if code, body := put("30"); code != http.StatusOK {
		t.Errorf("PUT audit 30 under VISITORD_AUDIT_MIN_DAYS=30: %d %s, want 200", code, body)
	}
}

package httpapi

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/visitord/visitord/internal/visitor"
)

// A cursor the trail did not give is the domain's ErrInvalid (visitor's
// TestAuditCursor): 400 invalid_request in the error shape naming the cursor,
// never 500 and never logged as an internal error; the cursor is handed on as
// sent.
func TestAuditMalformedCursor(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	for _, cursor := range []string{"garbage", "(1-0", "-", "1-", "1-x", "99999999999999999999999-0", "+", "1-0 ", "%00"} {
		t.Run(cursor, func(t *testing.T) {
			r := privacyDo(e, http.MethodGet, "/v1/sites/shop/audit?cursor="+url.QueryEscape(cursor), nil)
			wantStatus(t, r, http.StatusBadRequest, "invalid_request")
			if !strings.Contains(string(r.body), "cursor") {
				t.Errorf("400 does not say the cursor is at fault: %s", r.body)
			}
		})
	}
	e.fake.audit = []visitor.AuditEntry{{ID: "1-0", Time: e.clock.Now(), Last: e.clock.Now(), Count: 1, Actor: "dpo", Action: "retention.change", Target: "shop"}}
	if page := auditPage(t, e, "?limit=2"); len(page.Entries) != 1 || page.NextCursor != "" || page.Entries[0].Action != "retention.change" {
		t.Errorf("page %+v, want the one entry and no cursor", page)
	}
	if strings.Contains(e.logs.String(), "internal error") {
		t.Errorf("a malformed cursor was logged as an internal error:\n%s", e.logs.String())
	}
}

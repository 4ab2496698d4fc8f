package httpapi

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// A cursor the trail did not give answers 400 invalid_request in the error
// shape, never 500; the next_cursor it gave pages on.
func TestAuditMalformedCursor(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, sessions := range []int{60, 50, 40} {
		putRetention(t, e, map[string]int{"sessions": sessions, "profiles": 395, "chats": 90, "consents": 1095, "audit": 365})
	}
	for _, cursor := range []string{"garbage", "(1-0", "-", "1-", "1-x", "99999999999999999999999-0", "+", "1-0 ", "%00"} {
		t.Run(cursor, func(t *testing.T) {
			r := privacyDo(e, http.MethodGet, "/v1/sites/shop/audit?cursor="+url.QueryEscape(cursor), nil)
			wantStatus(t, r, http.StatusBadRequest, "invalid_request")
			if !strings.Contains(string(r.body), "cursor") {
				t.Errorf("400 does not say the cursor is at fault: %s", r.body)
			}
		})
	}
	first := auditPage(t, e, "?limit=2")
	if len(first.Entries) != 2 || first.NextCursor == "" {
		t.Fatalf("first page %+v, want 2 entries and a cursor", first)
	}
	next := auditPage(t, e, "?limit=2&cursor="+url.QueryEscape(first.NextCursor))
	if len(next.Entries) != 1 || next.NextCursor != "" || next.Entries[0].Action != "retention.change" {
		t.Errorf("second page %+v, want the oldest change and no cursor", next)
	}
	if strings.Contains(e.logs.String(), "internal error") {
		t.Errorf("a malformed cursor was logged as an internal error:\n%s", e.logs.String())
	}
}

// A privacy key cannot shorten the audit trail below VISITORD_AUDIT_MIN_DAYS
// (365 by default): 422 retention_out_of_bounds naming the bound, and nothing
// changes.
func TestAuditWindowFloor(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	for _, days := range []int{1, 364} {
		r := privacyDo(e, http.MethodPut, "/v1/sites/shop/retention", retentionWith("audit", days))
		wantStatus(t, r, http.StatusUnprocessableEntity, "retention_out_of_bounds")
		for _, want := range []string{"365", "VISITORD_AUDIT_MIN_DAYS"} {
			if !strings.Contains(string(r.body), want) {
				t.Errorf("422 for audit %d does not name %q: %s", days, want, r.body)
			}
		}
	}
	if got := getRetention(t, e)["audit"]; got != 365 {
		t.Errorf("audit window after refused changes: %d, want 365", got)
	}
	if got := actions(auditEntries(t, e, "")); len(got) != 0 {
		t.Errorf("refused changes were audited: %q", got)
	}
	wantStatus(t, privacyDo(e, http.MethodPut, "/v1/sites/shop/retention", retentionWith("audit", 730)), http.StatusOK, "")
	entries := auditEntries(t, e, "")
	if len(entries) != 1 || entries[0].OldRetention == nil || *entries[0].OldRetention.Audit != 365 || *entries[0].NewRetention.Audit != 730 {
		t.Errorf("the change is audited as %+v, want old audit 365 and new 730", entries)
	}
}

package httpapi

import (
	"net/http"
	"strings"
	"testing"
)

// The visitor's own export and erasure: GET|DELETE /v1/me, proved by the
// identity token alone (DESIGN.md, Routes).

// meDo sends a /v1/me request of site with headers and cookies.
func meDo(e *env, method, site string, headers map[string]string, cookies ...*http.Cookie) resp {
	e.t.Helper()
	return e.do(req{method: method, path: "/v1/me?site=" + site, headers: headers, cookies: cookies})
}

// tamper changes one character in the middle of a token's signature.
func tamper(t testing.TB, token string) string {
	t.Helper()
	payload, sig, ok := strings.Cut(token, ".")
	if !ok || len(sig) < 4 {
		t.Fatalf("token %q is not payload.signature", token)
	}
	i := len(sig) / 2
	c := byte('A')
	if sig[i] == 'A' {
		c = 'B'
	}
	return payload + "." + sig[:i] + string(c) + sig[i+1:]
}

// Grace's contact as /v1/me shows it.
const (
	graceMaskedName  = "G*** H***"
	graceMaskedEmail = "g***@n***.example"
	graceMaskedPhone = "*********00"
)

func TestMeExportMasked(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := subjGrace(e)
	tests := []struct {
		name    string
		headers map[string]string
		cookies []*http.Cookie
	}{
		{name: "token header", headers: map[string]string{"Origin": shopOrigin, tokenHeader: v.token}},
		{name: "cookie", headers: map[string]string{"Origin": shopOrigin}, cookies: []*http.Cookie{identityCookie("shop", v.token)}},
		{name: "no origin", headers: map[string]string{tokenHeader: v.token}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := meDo(e, http.MethodGet, "shop", tt.headers, tt.cookies...)
			wantStatus(t, r, http.StatusOK, "")
			if origin := tt.headers["Origin"]; origin != "" && r.header.Get("Access-Control-Allow-Origin") != origin {
				t.Errorf("Access-Control-Allow-Origin %q, want %q", r.header.Get("Access-Control-Allow-Origin"), origin)
			}
			x := decode[subjExport](t, r)
			if x.VisitorID != v.id || len(x.Sessions) != 2 || len(x.Chats) != len(v.chats) {
				t.Fatalf("own export: visitor %q, %d sessions, %d chats; want %s, 2, %d", x.VisitorID, len(x.Sessions), len(x.Chats), v.id, len(v.chats))
			}
			if got := len(x.pages()); got != len(v.pages) {
				t.Errorf("own export has %d pages, want %d", got, len(v.pages))
			}
			for _, c := range x.Chats {
				if c.Contact.Name != graceMaskedName || c.Contact.Email != graceMaskedEmail || c.Contact.Phone != graceMaskedPhone {
					t.Errorf("own export chat %s contact %+v, want %q %q %q", c.ChatID, c.Contact, graceMaskedName, graceMaskedEmail, graceMaskedPhone)
				}
			}
			if x.Profile == nil {
				t.Error("own export has no profile")
			}
			for _, s := range x.Sessions {
				if s.IP != "" {
					t.Errorf("own export session %s has IP %q, want none", s.ID, s.IP)
				}
			}
			if len(x.ConsentRecords) != 2 {
				t.Errorf("own export has %d consent records, want 2", len(x.ConsentRecords))
			}
			for _, rec := range x.ConsentRecords {
				if _, ok := rec["ip"]; ok {
					t.Errorf("own export consent record has an IP: %v", rec)
				}
				if _, ok := rec["user_agent"]; ok {
					t.Errorf("own export consent record has a user agent: %v", rec)
				}
			}
			for _, leak := range []string{graceEmail, graceName, gracePhone, "555 0100", "Hopper", "navy", "127.0.0", chromeUA} {
				if strings.Contains(string(r.body), leak) {
					t.Errorf("own export holds %q: %s", leak, r.body)
				}
			}
		})
	}
	// The exports came within 10 minutes: one entry counts them.
	entries := auditEntries(t, e, "?target="+v.id)
	if len(entries) != 1 {
		t.Fatalf("audit of the visitor has %d entries, want 1 counting %d exports", len(entries), len(tests))
	}
	for _, a := range entries {
		if a.Action != "subject.export" || a.Actor != "visitor" || a.Count != len(tests) {
			t.Errorf("audit entry %+v, want subject.export by visitor, count %d", a, len(tests))
		}
	}
}

// /v1/me refuses every request not proved by a valid identity of the site, or
// from a foreign origin, and reveals nothing then.
func TestMeRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := subjGrace(e)
	blogToken := e.mustTrack("blog", blogOrigin+"/post", "")
	refusal := putConsent(e, "shop", false, false, "2026-11", nil)
	refusalToken, _ := refusal.json(t)["token"].(string)
	if refusal.status != http.StatusOK || refusalToken == "" {
		t.Fatalf("refusal: %d %s", refusal.status, refusal.body)
	}
	tests := []struct {
		name    string
		method  string
		site    string
		headers map[string]string
		cookies []*http.Cookie
		status  int
		code    string
	}{
		{name: "no token", method: http.MethodGet, site: "shop", headers: map[string]string{"Origin": shopOrigin}, status: 401, code: "unauthorized"},
		{name: "tampered token", method: http.MethodGet, site: "shop", headers: map[string]string{"Origin": shopOrigin, tokenHeader: tamper(t, v.token)}, status: 401, code: "unauthorized"},
		{name: "tampered cookie", method: http.MethodGet, site: "shop", cookies: []*http.Cookie{identityCookie("shop", tamper(t, v.token))}, status: 401, code: "unauthorized"},
		{name: "blog token on shop", method: http.MethodGet, site: "shop", headers: map[string]string{tokenHeader: blogToken}, status: 401, code: "unauthorized"},
		{name: "shop token on blog", method: http.MethodGet, site: "blog", headers: map[string]string{tokenHeader: v.token}, status: 401, code: "unauthorized"},
		{name: "refusal token", method: http.MethodGet, site: "shop", headers: map[string]string{tokenHeader: refusalToken}, status: 401, code: "unauthorized"},
		{name: "foreign origin", method: http.MethodGet, site: "shop", headers: map[string]string{"Origin": "https://evil.example", tokenHeader: v.token}, status: 403, code: "origin_not_allowed"},
		{name: "another site's origin", method: http.MethodGet, site: "shop", headers: map[string]string{"Origin": blogOrigin, tokenHeader: v.token}, status: 403, code: "origin_not_allowed"},
		{name: "null origin", method: http.MethodGet, site: "shop", headers: map[string]string{"Origin": "null", tokenHeader: v.token}, status: 403, code: "origin_not_allowed"},
		{name: "unknown site", method: http.MethodGet, site: "nope", headers: map[string]string{tokenHeader: v.token}, status: 404, code: "unknown_site"},
		{name: "erase without token", method: http.MethodDelete, site: "shop", headers: map[string]string{"Origin": shopOrigin}, status: 401, code: "unauthorized"},
		{name: "erase with tampered token", method: http.MethodDelete, site: "shop", headers: map[string]string{tokenHeader: tamper(t, v.token)}, status: 401, code: "unauthorized"},
		{name: "erase with blog token", method: http.MethodDelete, site: "shop", headers: map[string]string{tokenHeader: blogToken}, status: 401, code: "unauthorized"},
		{name: "erase from foreign origin", method: http.MethodDelete, site: "shop", headers: map[string]string{"Origin": "https://evil.example"},
			cookies: []*http.Cookie{identityCookie("shop", v.token)}, status: 403, code: "origin_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := meDo(e, tt.method, tt.site, tt.headers, tt.cookies...)
			wantStatus(t, r, tt.status, tt.code)
			for _, leak := range []string{v.id, graceMaskedEmail, "g***", "/grace/", v.chats[0]} {
				if strings.Contains(string(r.body), leak) {
					t.Errorf("refused request returned %q: %s", leak, r.body)
				}
			}
			if tt.headers["Origin"] == "https://evil.example" && r.header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("a foreign origin may read the answer: Access-Control-Allow-Origin %q", r.header.Get("Access-Control-Allow-Origin"))
			}
		})
	}
	// Nothing was erased, nothing exported.
	if x := subjExportOf(e, v.id); len(x.Chats) != len(v.chats) || len(x.Sessions) != 2 {
		t.Errorf("after refused /v1/me requests the visitor has %d chats, %d sessions", len(x.Chats), len(x.Sessions))
	}
	if got := actions(auditEntries(t, e, "?target="+v.id)); len(got) != 1 || got[0] != "subject.export" {
		t.Errorf("audit of the visitor after refused /v1/me requests: %q, want only the privacy team's export", got)
	}
}

// DELETE /v1/me erases the visitor as the privacy team's erasure does, expires
// the cookie, and is audited with the actor "visitor".
func TestMeErase(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := subjGrace(e)
	r := meDo(e, http.MethodDelete, "shop", map[string]string{"Origin": shopOrigin}, identityCookie("shop", v.token))
	wantStatus(t, r, http.StatusNoContent, "")
	wantExpiredCookie(t, r, "vt_shop")
	assertVisitorErased(t, e, v, 2)
	if got := subjSearch(e, graceEmail); len(got.Visitors)+len(got.Chats) != 0 {
		t.Errorf("search after the visitor's own erasure: %+v", got)
	}
	entries := auditEntries(t, e, "?target="+v.id)
	if len(entries) != 1 || entries[0].Action != "subject.erase" || entries[0].Actor != "visitor" {
		t.Errorf("audit of the visitor %+v, want one subject.erase by visitor", entries)
	}
	if entries[0].Target == v.id || strings.Contains(entries[0].Target, v.id) {
		t.Errorf("audit target %q holds the visitor id", entries[0].Target)
	}

	// The erased visitor's token is foreign from now on: it proves nothing.
	again := meDo(e, http.MethodGet, "shop", map[string]string{"Origin": shopOrigin, tokenHeader: v.token})
	if again.status != http.StatusUnauthorized && again.status != http.StatusNotFound {
		t.Errorf("GET /v1/me with the erased visitor's token: %d %s, want 401 (a foreign token) or 404", again.status, again.body)
	}
	if strings.Contains(string(again.body), "consent_records") || strings.Contains(string(again.body), v.id) {
		t.Errorf("GET /v1/me with the erased visitor's token returned data: %s", again.body)
	}
	e.assertLogsClean(v.id, v.token, graceEmail, graceName, gracePhone)
}

package httpapi

import (
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// Data-subject requests of the privacy team (DESIGN.md, "Privacy team") and
// invariant 6: search, export, rectification and erasure, read back from Redis.

// Grace's contact, as she types it into the chat form.
const (
	graceName     = "Grace Hopper"
	graceEmail    = "grace@navy.example"
	gracePhone    = "+1 555 0100"
	graceNewEmail = "grace@hopper.example"
)

// keyDo sends a request with key as its Bearer key ("" for none); body, when not
// nil, is sent as JSON (a string as it is).
func keyDo(e *env, key, method, path string, body any) resp {
	e.t.Helper()
	var b string
	switch v := body.(type) {
	case nil:
	case string:
		b = v
	default:
		j, err := json.Marshal(v)
		if err != nil {
			e.t.Fatal(err)
		}
		b = string(j)
	}
	h := map[string]string{}
	if key != "" {
		h["Authorization"] = "Bearer " + key
	}
	return e.do(req{method: method, path: path, body: b, headers: h})
}

// privacyDo sends a privacy-team request of site shop with its privacy key.
func privacyDo(e *env, method, path string, body any) resp {
	e.t.Helper()
	return keyDo(e, shopPrivacyKey, method, path, body)
}

// wantStatus fails t unless r has status (and, when code is set, that error code).
func wantStatus(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if code != "" {
		if got := r.errorCode(t); got != code {
			t.Fatalf("error code %q, want %q: %s", got, code, r.body)
		}
	}
}

// checkStatus is wantStatus that lets the test go on.
func checkStatus(t testing.TB, r resp, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Errorf("status %d, want %d: %s", r.status, status, r.body)
		return
	}
	if code != "" {
		if got := r.errorCode(t); got != code {
			t.Errorf("error code %q, want %q: %s", got, code, r.body)
		}
	}
}

// subjExport is an export as the API answers it.
type subjExport struct {
	Site      string `json:"site"`
	VisitorID string `json:"visitor_id"`
	ChatID    string `json:"chat_id"`
	Profile   *struct {
		VisitorID string `json:"visitor_id"`
		Sessions  int    `json:"sessions"`
	} `json:"profile"`
	Sessions []struct {
		ID     string `json:"id"`
		IP     string `json:"ip"`
		Device struct {
			Browser string `json:"browser"`
		} `json:"device"`
		Pages []struct {
			URL   string `json:"url"`
			Title string `json:"title"`
		} `json:"pages"`
	} `json:"sessions"`
	Consent *struct {
		Analytics     bool   `json:"analytics"`
		Marketing     bool   `json:"marketing"`
		PolicyVersion string `json:"policy_version"`
	} `json:"consent"`
	ConsentRecords []map[string]any `json:"consent_records"`
	Chats          []subjChatExport `json:"chats"`
}

type subjChatExport struct {
	ChatID  string `json:"chat_id"`
	URL     string `json:"url"`
	Contact struct {
		Name  string `json:"name"`
		Email string `json:"email"`
		Phone string `json:"phone"`
	} `json:"contact"`
	Marketing     bool     `json:"marketing_opt_in"`
	PreviousChats []string `json:"previous_chats"`
}

// pages lists the URLs of every session of the export, in order.
func (x subjExport) pages() []string {
	var out []string
	for _, s := range x.Sessions {
		for _, p := range s.Pages {
			out = append(out, p.URL)
		}
	}
	return out
}

// chatIDs lists the chat ids of the export, sorted.
func (x subjExport) chatIDs() []string {
	var out []string
	for _, c := range x.Chats {
		out = append(out, c.ChatID)
	}
	slices.Sort(out)
	return out
}

// subjVisitor is a visitor of site shop that the tests made.
type subjVisitor struct {
	token string // the latest identity token
	id    string
	vkey  string   // the visitor's store key (keyed hash of the id)
	pages []string // page URLs, in order
	chats []string // chat ids, in order
}

// subjChat starts a chat of shop with a full contact and returns its id.
func subjChat(e *env, token, name, email, phone string, marketing bool, url string) string {
	e.t.Helper()
	h := map[string]string{"Origin": shopOrigin}
	if token != "" {
		h[tokenHeader] = token
	}
	b, _ := json.Marshal(map[string]any{"site": "shop", "contact": map[string]string{"name": name, "email": email, "phone": phone},
		"marketing_opt_in": marketing, "url": url})
	r := e.do(req{method: http.MethodPost, path: "/v1/chats", body: string(b), headers: h})
	id, _ := r.json(e.t)["chat_id"].(string)
	if r.status != http.StatusCreated || id == "" {
		e.t.Fatalf("chat: status %d: %s", r.status, r.body)
	}
	return id
}

// subjGrace makes Grace: two sessions of pages, two chats with her contact (the
// second with a marketing opt-in), then an analytics and marketing grant.
func subjGrace(e *env) subjVisitor {
	e.t.Helper()
	v := subjVisitor{pages: []string{
		shopOrigin + "/grace/compilers", shopOrigin + "/grace/cobol", shopOrigin + "/grace/nanoseconds",
	}}
	v.token = e.mustTrack("shop", v.pages[0], "")
	e.clock.Advance(time.Minute)
	e.mustTrack("shop", v.pages[1], v.token)
	e.clock.Advance(31 * time.Minute) // past session_timeout: a second session
	e.mustTrack("shop", v.pages[2], v.token)
	v.id = e.visitorID("shop", v.token)
	v.vkey = e.hasher.VisitorKey("shop", v.id)
	e.clock.Advance(time.Minute)
	v.chats = append(v.chats, subjChat(e, v.token, graceName, graceEmail, gracePhone, false, v.pages[2]))
	e.clock.Advance(time.Minute)
	v.chats = append(v.chats, subjChat(e, v.token, graceName, graceEmail, gracePhone, true, v.pages[2]))
	e.clock.Advance(time.Minute)
	r := putConsent(e, "shop", true, true, "2026-11", map[string]string{"Origin": shopOrigin, tokenHeader: v.token})
	token, _ := r.json(e.t)["token"].(string)
	if r.status != http.StatusOK || token == "" {
		e.t.Fatalf("consent: status %d: %s", r.status, r.body)
	}
	if got := e.visitorID("shop", token); got != v.id {
		e.t.Fatalf("consent changed the visitor id: %s, want %s", got, v.id)
	}
	v.token = token
	e.clock.Advance(time.Minute)
	return v
}

// subjSearch searches shop's blind index for email.
func subjSearch(e *env, email string) searchResponse {
	e.t.Helper()
	r := privacyDo(e, http.MethodPost, "/v1/sites/shop/subjects/search", map[string]string{"email": email})
	if r.status != http.StatusOK {
		e.t.Fatalf("search %q: status %d: %s", email, r.status, r.body)
	}
	var got searchResponse
	if err := json.Unmarshal(r.body, &got); err != nil {
		e.t.Fatalf("search %q: %v: %s", email, err, r.body)
	}
	if got.Visitors == nil || got.Chats == nil {
		e.t.Fatalf("search %q answered null lists, want arrays: %s", email, r.body)
	}
	return got
}

// subjExportOf exports a visitor through the API; it must answer 200.
func subjExportOf(e *env, visitorID string) subjExport {
	e.t.Helper()
	r := privacyDo(e, http.MethodGet, "/v1/sites/shop/visitors/"+visitorID, nil)
	if r.status != http.StatusOK {
		e.t.Fatalf("export: status %d: %s", r.status, r.body)
	}
	return decode[subjExport](e.t, r)
}

// auditTarget is the keyed hash under which the audit trail names a subject.
func auditTarget(e *env, site, kind, id string) string {
	return e.hasher.Short(site, visitor.PurposeAudit, kind+":"+id)
}

// proofFields are the only fields a consent record keeps after an erasure.
var proofFields = map[string]bool{
	"subject": true, "time": true, "analytics": true, "marketing": true, "policy_version": true,
	"text_sha256": true, "method": true,
}

// assertVisitorErased proves invariant 6 for v by a scan of every key: no key
// name or value holds the visitor id, the store key, the e-mails, name, phone,
// page URLs or chat ids (so no index, live set or queue holds an entry for
// it), except one key name holding the store key whose value is the keyed
// hash (the tombstone that makes the token foreign); the consent records are
// kept as proof, cut to their proof fields and naming the keyed hash.
func assertVisitorErased(t testing.TB, e *env, v subjVisitor, records int, needles ...string) {
	t.Helper()
	subject := auditTarget(e, "shop", "visitor", v.id)
	needles = append(needles, v.id, v.vkey, graceEmail, graceNewEmail, graceName, gracePhone)
	needles = append(needles, v.pages...)
	needles = append(needles, v.chats...)

	tombstones, proofs := 0, 0
	for k, value := range redistest.DumpValues(t, e.rdb) {
		if strings.Contains(k, v.vkey) && value == subject {
			tombstones++
			continue
		}
		for _, n := range needles {
			if n == "" {
				continue
			}
			if strings.Contains(k, n) {
				t.Errorf("after the erasure the key name %s holds %q", k, n)
			}
			if strings.Contains(value, n) {
				t.Errorf("after the erasure key %s holds %q:\n%s", k, n, value)
			}
		}
		if strings.HasPrefix(k, "au:") {
			continue
		}
		for _, line := range strings.Split(value, "\n") {
			member, _, _ := strings.Cut(line, "} ")
			if !strings.Contains(member, `"subject":"`+subject+`"`) {
				continue
			}
			proofs++
			var rec map[string]any
			if err := json.Unmarshal([]byte(member+"}"), &rec); err != nil {
				t.Fatalf("consent proof %q in %s: %v", line, k, err)
			}
			for f := range rec {
				if !proofFields[f] {
					t.Errorf("cut consent record keeps %q: %s", f, line)
				}
			}
			for _, f := range []string{"time", "policy_version", "text_sha256", "method"} {
				if s, _ := rec[f].(string); s == "" {
					t.Errorf("cut consent record lost %q: %s", f, line)
				}
			}
		}
	}
	if tombstones != 1 {
		t.Errorf("%d tombstones of the erased visitor, want one holding the keyed hash", tombstones)
	}
	if proofs != records {
		t.Errorf("%d cut consent records of the erased visitor, want %d kept as proof", proofs, records)
	}
}

// A data-subject request end to end: search by a normalised e-mail, export,
// rectification (the blind index moves), erasure (invariant 6), and the erased
// visitor's token is foreign from then on.
func TestSubjectRequestEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := subjGrace(e)

	// Search: the e-mail is normalised; a visitor's chats are found as the visitor.
	got := subjSearch(e, "Grace@Navy.example ")
	if diff := cmp.Diff(searchResponse{Visitors: []string{v.id}, Chats: []string{}}, got); diff != "" {
		t.Fatalf("search by Grace's e-mail (-want +got):\n%s", diff)
	}
	anon := subjChat(e, "", "Anonymous Admiral", graceEmail, "", false, shopOrigin+"/contact")
	got = subjSearch(e, graceEmail)
	if diff := cmp.Diff(searchResponse{Visitors: []string{v.id}, Chats: []string{anon}}, got); diff != "" {
		t.Fatalf("search after an identity-less chat (-want +got):\n%s", diff)
	}
	if got := subjSearch(e, "nobody@nowhere.example"); len(got.Visitors)+len(got.Chats) != 0 {
		t.Fatalf("search by an e-mail typed by nobody: %+v, want empty lists", got)
	}

	// Export: everything, contacts decrypted.
	x := subjExportOf(e, v.id)
	if x.Site != "shop" || x.VisitorID != v.id {
		t.Errorf("export names site %q visitor %q", x.Site, x.VisitorID)
	}
	if x.Profile == nil || x.Profile.VisitorID != v.id || x.Profile.Sessions != 2 {
		t.Errorf("export profile %+v, want the visitor with 2 sessions", x.Profile)
	}
	for _, s := range x.Sessions {
		if s.Device.Browser == "" {
			t.Errorf("export session %s has no device", s.ID)
		}
	}
	if len(x.Sessions) != 2 {
		t.Errorf("export has %d sessions, want 2", len(x.Sessions))
	}
	if got := x.pages(); !cmp.Equal(slices.Sorted(slices.Values(got)), slices.Sorted(slices.Values(v.pages))) {
		t.Errorf("export pages %q, want %q", got, v.pages)
	}
	if x.Consent == nil || !x.Consent.Analytics || !x.Consent.Marketing || x.Consent.PolicyVersion != "2026-11" {
		t.Errorf("export consent %+v, want analytics and marketing under 2026-11", x.Consent)
	}
	methods := []string{}
	for _, r := range x.ConsentRecords {
		m, _ := r["method"].(string)
		methods = append(methods, m)
		if r["visitor_id"] != v.id {
			t.Errorf("exported consent record %v does not name the visitor", r)
		}
	}
	slices.Sort(methods)
	if want := []string{"banner", "chat_start"}; !slices.Equal(methods, want) {
		t.Errorf("exported consent records by %q, want %q", methods, want)
	}
	if got, want := x.chatIDs(), slices.Sorted(slices.Values(v.chats)); !slices.Equal(got, want) {
		t.Fatalf("export chats %q, want %q", got, want)
	}
	for _, c := range x.Chats {
		if c.Contact.Name != graceName || c.Contact.Email != graceEmail || c.Contact.Phone != gracePhone {
			t.Errorf("exported chat %s contact %+v, want it decrypted", c.ChatID, c.Contact)
		}
		if c.URL != v.pages[2] {
			t.Errorf("exported chat %s url %q, want %q", c.ChatID, c.URL, v.pages[2])
		}
	}

	// Rectification: every chat gets the new e-mail; the blind index moves.
	e.clock.Advance(time.Minute)
	r := privacyDo(e, http.MethodPatch, "/v1/sites/shop/visitors/"+v.id, map[string]any{"contact": map[string]string{"email": graceNewEmail}})
	if r.status != http.StatusOK {
		t.Fatalf("rectify: status %d: %s", r.status, r.body)
	}
	for name, x := range map[string]subjExport{"PATCH answer": decode[subjExport](t, r), "export": subjExportOf(e, v.id)} {
		if len(x.Chats) != len(v.chats) {
			t.Fatalf("%s has %d chats, want %d", name, len(x.Chats), len(v.chats))
		}
		for _, c := range x.Chats {
			if c.Contact.Email != graceNewEmail || c.Contact.Name != graceName || c.Contact.Phone != gracePhone {
				t.Errorf("%s: chat %s contact %+v, want the new e-mail and the rest unchanged", name, c.ChatID, c.Contact)
			}
		}
	}
	// The identity-less chat is a subject of its own: it keeps the old e-mail.
	if diff := cmp.Diff(searchResponse{Visitors: []string{}, Chats: []string{anon}}, subjSearch(e, graceEmail)); diff != "" {
		t.Errorf("search by the old e-mail after rectification (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(searchResponse{Visitors: []string{v.id}, Chats: []string{}}, subjSearch(e, " GRACE@hopper.example")); diff != "" {
		t.Errorf("search by the new e-mail after rectification (-want +got):\n%s", diff)
	}

	// Erasure.
	e.clock.Advance(time.Minute)
	wantStatus(t, privacyDo(e, http.MethodDelete, "/v1/sites/shop/visitors/"+v.id, nil), http.StatusNoContent, "")
	assertVisitorErased(t, e, v, 2)
	if got := subjSearch(e, graceNewEmail); len(got.Visitors)+len(got.Chats) != 0 {
		t.Errorf("search by the new e-mail after erasure: %+v, want empty lists", got)
	}
	// Nothing is exported of an erased visitor (the cut proof points at no one).
	checkStatus(t, privacyDo(e, http.MethodGet, "/v1/sites/shop/visitors/"+v.id, nil), http.StatusNotFound, "not_found")

	// The erased visitor's token is foreign: a new visitor, linked to nothing.
	e.clock.Advance(time.Minute)
	after := e.mustTrack("shop", shopOrigin+"/after-erasure", v.token)
	if after == v.token || e.visitorID("shop", after) == v.id {
		t.Errorf("a page view with the erased token kept the identity (token %q)", after)
	}
	r = e.startChat("shop", v.token, "Someone", "someone@else.example", shopOrigin+"/after-erasure", nil)
	if r.status != http.StatusCreated || r.json(t)["returning"] != false || r.json(t)["previous_chats"] != float64(0) {
		t.Fatalf("chat with the erased token: %d %s, want 201 linking nothing", r.status, r.body)
	}
	chat := r.json(t)["chat_id"].(string)
	if c := decode[chatView](t, e.operatorGet("/v1/sites/shop/chats/"+chat, shopOperatorKey)); len(c.Trail) != 0 || len(c.PreviousChats) != 0 {
		t.Errorf("chat with the erased token is bound to an identity: trail %+v, previous chats %+v", c.Trail, c.PreviousChats)
	}
	// Neither the page view nor the chat brought the erased visitor back.
	assertVisitorErased(t, e, v, 2)
	e.assertLogsClean(v.id, v.token, graceEmail, graceNewEmail, graceName, gracePhone, "/grace/")
}

// subjAuditPage is an answer of GET /v1/sites/shop/audit.
type subjAuditPage struct {
	Entries    []auditEntryJSON `json:"entries"`
	NextCursor string           `json:"next_cursor"`
}

// auditEntries reads shop's audit trail with query, one page.
func auditEntries(t testing.TB, e *env, query string) []auditEntryJSON {
	t.Helper()
	return auditPage(t, e, query).Entries
}

func auditPage(t testing.TB, e *env, query string) subjAuditPage {
	t.Helper()
	r := privacyDo(e, http.MethodGet, "/v1/sites/shop/audit"+query, nil)
	if r.status != http.StatusOK {
		t.Fatalf("audit%s: status %d: %s", query, r.status, r.body)
	}
	return decode[subjAuditPage](t, r)
}

// auditAll pages through shop's audit trail with limit and query ("&…").
func auditAll(t testing.TB, e *env, limit, query string) []auditEntryJSON {
	t.Helper()
	var all []auditEntryJSON
	cursor := ""
	for range 50 {
		q := "?limit=" + limit + query
		if cursor != "" {
			q += "&cursor=" + cursor
		}
		p := auditPage(t, e, q)
		all = append(all, p.Entries...)
		if p.NextCursor == "" {
			return all
		}
		cursor = p.NextCursor
	}
	t.Fatal("audit paging did not end")
	return nil
}

// streamIDLess reports whether Redis stream id a is older than b.
func streamIDLess(t testing.TB, a, b string) bool {
	t.Helper()
	parse := func(id string) [2]int64 {
		ms, seq, ok := strings.Cut(id, "-")
		x, err1 := strconv.ParseInt(ms, 10, 64)
		y, err2 := strconv.ParseInt(seq, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			t.Fatalf("audit entry id %q is not a stream id", id)
		}
		return [2]int64{x, y}
	}
	pa, pb := parse(a), parse(b)
	return pa[0] < pb[0] || (pa[0] == pb[0] && pa[1] < pb[1])
}

// actions lists entries' actions in order.
func actions(entries []auditEntryJSON) []string {
	out := make([]string, 0, len(entries))
	for _, a := range entries {
		out = append(out, a.Action)
	}
	return out
}

// The audit trail: who read or changed what, newest first, with actor key ids
// and keyed-hash targets; filtered by target even after an erasure; paged. A
// chat read names the chat, the earlier chats it shows and the visitor; a
// repeated read within 10 minutes folds into its entry's count; a
// rectification logs no export; a retention change its old and new windows.
func TestSubjectAuditTrail(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := subjGrace(e)
	step := func() { e.clock.Advance(time.Second) }

	wantStatus(t, e.operatorGet("/v1/sites/shop/chats/"+v.chats[0], shopOperatorKey), http.StatusOK, "")
	step()
	subjExportOf(e, v.id)
	step()
	wantStatus(t, privacyDo(e, http.MethodPatch, "/v1/sites/shop/visitors/"+v.id,
		map[string]any{"contact": map[string]string{"email": graceNewEmail}}), http.StatusOK, "")
	step()
	wantStatus(t, privacyDo(e, http.MethodPut, "/v1/sites/shop/retention",
		map[string]int{"sessions": 60, "profiles": 300, "chats": 60, "consents": 1000, "audit": 365}), http.StatusOK, "")
	step()
	wantStatus(t, e.operatorGet("/v1/sites/shop/chats/"+v.chats[1], shopOperatorKey), http.StatusOK, "")
	step()
	wantStatus(t, privacyDo(e, http.MethodDelete, "/v1/sites/shop/visitors/"+v.id, nil), http.StatusNoContent, "")

	visitorT := auditTarget(e, "shop", "visitor", v.id)
	chat0T, chat1T := auditTarget(e, "shop", "chat", v.chats[0]), auditTarget(e, "shop", "chat", v.chats[1])
	type row struct {
		actor, action, target string
		count                 int
	}
	want := []row{
		{"dpo", "subject.erase", visitorT, 1},
		// The second chat's context shows the first chat and the visitor behind
		// both: read by agent-1 a few seconds ago already, they fold.
		{"agent-1", "chat.read", visitorT, 2},
		{"agent-1", "chat.read", chat0T, 2},
		{"agent-1", "chat.read", chat1T, 1},
		{"dpo", "retention.change", auditTarget(e, "shop", "site", "shop"), 1},
		{"dpo", "subject.rectify", visitorT, 1}, // and no export nobody asked for
		{"dpo", "subject.export", chat1T, 1},
		{"dpo", "subject.export", chat0T, 1},
		{"dpo", "subject.export", visitorT, 1},
	}
	entries := auditEntries(t, e, "")
	got := make([]row, 0, len(entries))
	for _, a := range entries {
		got = append(got, row{a.Actor, a.Action, a.Target, a.Count})
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(row{})); diff != "" {
		t.Fatalf("audit trail, newest first (-want +got):\n%s", diff)
	}
	for i := 1; i < len(entries); i++ {
		if entries[i].LastTime.After(entries[i-1].LastTime) || !streamIDLess(t, entries[i].ID, entries[i-1].ID) {
			t.Errorf("entry %d (%s %v) is not older than entry %d (%s %v)", i, entries[i].ID, entries[i].LastTime, i-1, entries[i-1].ID, entries[i-1].LastTime)
		}
	}
	for _, a := range entries {
		if a.Count == 2 && !a.LastTime.After(a.Time) {
			t.Errorf("folded entry %+v: last_time not after time", a)
		}
		if a.Action == "retention.change" {
			if a.OldRetention == nil || a.NewRetention == nil || *a.OldRetention.Sessions != 90 || *a.NewRetention.Sessions != 60 || *a.NewRetention.Consents != 1000 {
				t.Errorf("retention change entry %+v, want old sessions 90 and new sessions 60, consents 1000", a)
			}
		} else if a.OldRetention != nil || a.NewRetention != nil {
			t.Errorf("entry %+v carries retention windows", a)
		}
	}

	// By target: the visitor's entries only, after the erasure too.
	if got, want := actions(auditEntries(t, e, "?target="+v.id)),
		[]string{"subject.erase", "chat.read", "subject.rectify", "subject.export"}; !slices.Equal(got, want) {
		t.Errorf("audit ?target=<visitor id>: %q, want %q", got, want)
	}
	if got, want := actions(auditEntries(t, e, "?target="+v.chats[0])), []string{"chat.read", "subject.export"}; !slices.Equal(got, want) {
		t.Errorf("audit ?target=<chat id>: %q, want %q", got, want)
	}
	if got := auditEntries(t, e, "?target="+visitor.NewVisitorID()); len(got) != 0 {
		t.Errorf("audit ?target=<unknown id>: %+v, want none", got)
	}

	// Paging: two at a time, the same trail.
	first := auditPage(t, e, "?limit=2")
	if len(first.Entries) != 2 || first.NextCursor == "" {
		t.Fatalf("audit ?limit=2: %d entries, next_cursor %q; want 2 and a cursor", len(first.Entries), first.NextCursor)
	}
	if diff := cmp.Diff(entries, auditAll(t, e, "2", "")); diff != "" {
		t.Errorf("audit paged by 2 differs from the whole trail (-whole +paged):\n%s", diff)
	}
	if diff := cmp.Diff(auditEntries(t, e, "?target="+v.id), auditAll(t, e, "2", "&target="+v.id)); diff != "" {
		t.Errorf("audit of the visitor paged by 2 differs (-whole +paged):\n%s", diff)
	}
	for _, q := range []string{"?limit=0", "?limit=201", "?limit=two"} {
		wantStatus(t, privacyDo(e, http.MethodGet, "/v1/sites/shop/audit"+q, nil), http.StatusBadRequest, "invalid_request")
	}
	wantStatus(t, e.operatorGet("/v1/sites/shop/audit", shopOperatorKey), http.StatusForbidden, "forbidden")

	// No entry holds an id, an e-mail or a chat id in clear: not the API, not Redis.
	body := string(privacyDo(e, http.MethodGet, "/v1/sites/shop/audit", nil).body)
	for _, leak := range append([]string{v.id, v.vkey, graceEmail, graceNewEmail}, v.chats...) {
		if strings.Contains(body, leak) {
			t.Errorf("audit trail holds %q in clear: %s", leak, body)
		}
	}
}

// The privacy routes' requests that fail: validation, unknown subjects, keys.
func TestSubjectRequestsRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	v := subjGrace(e)
	tests := []struct {
		name   string
		key    string
		method string
		path   string
		body   any
		status int
		code   string
	}{
		{name: "search without e-mail", key: shopPrivacyKey, method: http.MethodPost, path: "/v1/sites/shop/subjects/search", body: `{"email":"  "}`, status: 400, code: "invalid_request"},
		{name: "search not json", key: shopPrivacyKey, method: http.MethodPost, path: "/v1/sites/shop/subjects/search", body: `{"email":`, status: 400, code: "invalid_json"},
		{name: "search by operator", key: shopOperatorKey, method: http.MethodPost, path: "/v1/sites/shop/subjects/search", body: `{"email":"grace@navy.example"}`, status: 403, code: "forbidden"},
		{name: "search without key", method: http.MethodPost, path: "/v1/sites/shop/subjects/search", body: `{"email":"grace@navy.example"}`, status: 401, code: "unauthorized"},
		{name: "search of another site", key: shopPrivacyKey, method: http.MethodPost, path: "/v1/sites/blog/subjects/search", body: `{"email":"grace@navy.example"}`, status: 403, code: "forbidden"},
		{name: "export by operator", key: shopOperatorKey, method: http.MethodGet, path: "/v1/sites/shop/visitors/" + v.id, status: 403, code: "forbidden"},
		{name: "export by another site's key", key: blogOperatorKey, method: http.MethodGet, path: "/v1/sites/shop/visitors/" + v.id, status: 403, code: "forbidden"},
		{name: "export of an unknown visitor", key: shopPrivacyKey, method: http.MethodGet, path: "/v1/sites/shop/visitors/" + visitor.NewVisitorID(), status: 404, code: "not_found"},
		{name: "export of a malformed id", key: shopPrivacyKey, method: http.MethodGet, path: "/v1/sites/shop/visitors/not-an-id", status: 404, code: "not_found"},
		{name: "export on another site", key: shopPrivacyKey, method: http.MethodGet, path: "/v1/sites/blog/visitors/" + v.id, status: 403, code: "forbidden"},
		{name: "rectify without contact", key: shopPrivacyKey, method: http.MethodPatch, path: "/v1/sites/shop/visitors/" + v.id, body: `{}`, status: 400, code: "invalid_request"},
		{name: "rectify with no field", key: shopPrivacyKey, method: http.MethodPatch, path: "/v1/sites/shop/visitors/" + v.id, body: `{"contact":{}}`, status: 400, code: "invalid_request"},
		{name: "rectify with a bad e-mail", key: shopPrivacyKey, method: http.MethodPatch, path: "/v1/sites/shop/visitors/" + v.id, body: `{"contact":{"email":"not an e-mail"}}`, status: 400, code: "invalid_request"},
		{name: "rectify an unknown visitor", key: shopPrivacyKey, method: http.MethodPatch, path: "/v1/sites/shop/visitors/" + visitor.NewVisitorID(), body: `{"contact":{"email":"a@b.example"}}`, status: 404, code: "not_found"},
		{name: "rectify by operator", key: shopOperatorKey, method: http.MethodPatch, path: "/v1/sites/shop/visitors/" + v.id, body: `{"contact":{"email":"a@b.example"}}`, status: 403, code: "forbidden"},
		{name: "erase by operator", key: shopOperatorKey, method: http.MethodDelete, path: "/v1/sites/shop/visitors/" + v.id, status: 403, code: "forbidden"},
		{name: "erase chat by operator", key: shopOperatorKey, method: http.MethodDelete, path: "/v1/sites/shop/chats/" + v.chats[0], status: 403, code: "forbidden"},
		{name: "erase unknown chat", key: shopPrivacyKey, method: http.MethodDelete, path: "/v1/sites/shop/chats/" + visitor.NewChatID(), status: 404, code: "not_found"},
		{name: "erase a malformed visitor id", key: shopPrivacyKey, method: http.MethodDelete, path: "/v1/sites/shop/visitors/x", status: 404, code: "not_found"},
	}
	before := redistest.DumpValues(t, e.rdb)
	delete(before, "au:{shop}")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantStatus(t, keyDo(e, tt.key, tt.method, tt.path, tt.body), tt.status, tt.code)
		})
	}
	after := redistest.DumpValues(t, e.rdb)
	delete(after, "au:{shop}")
	if diff := cmp.Diff(before, after); diff != "" {
		t.Errorf("refused requests changed the store (-before +after):\n%s", diff)
	}
	if got := subjExportOf(e, v.id); len(got.Chats) != 2 || got.Chats[0].Contact.Email != graceEmail {
		t.Errorf("after refused requests the visitor's chats are %+v", got.Chats)
	}
}

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

// /v1/me refuses, before the domain is asked or by its answer, every request
// not proved by an identity token, or from a foreign origin, and reveals
// nothing then. Which tokens prove a visitor (not a tampered one, another
// site's, a refusal token or an erased visitor's) is visitor's TestMineRefused.
func TestMeRefused(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	token := e.mustTrack("shop", shopOrigin+"/", "")
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
		{name: "tampered token", method: http.MethodGet, site: "shop", headers: map[string]string{"Origin": shopOrigin, tokenHeader: tamper(t, token)}, status: 401, code: "unauthorized"},
		{name: "tampered cookie", method: http.MethodGet, site: "shop", cookies: []*http.Cookie{identityCookie("shop", tamper(t, token))}, status: 401, code: "unauthorized"},
		{name: "foreign origin", method: http.MethodGet, site: "shop", headers: map[string]string{"Origin": "https://evil.example", tokenHeader: token}, status: 403, code: "origin_not_allowed"},
		{name: "another site's origin", method: http.MethodGet, site: "shop", headers: map[string]string{"Origin": blogOrigin, tokenHeader: token}, status: 403, code: "origin_not_allowed"},
		{name: "null origin", method: http.MethodGet, site: "shop", headers: map[string]string{"Origin": "null", tokenHeader: token}, status: 403, code: "origin_not_allowed"},
		{name: "unknown site", method: http.MethodGet, site: "nope", headers: map[string]string{tokenHeader: token}, status: 404, code: "unknown_site"},
		{name: "erase without token", method: http.MethodDelete, site: "shop", headers: map[string]string{"Origin": shopOrigin}, status: 401, code: "unauthorized"},
		{name: "erase with tampered token", method: http.MethodDelete, site: "shop", headers: map[string]string{tokenHeader: tamper(t, token)}, status: 401, code: "unauthorized"},
		{name: "erase from foreign origin", method: http.MethodDelete, site: "shop", headers: map[string]string{"Origin": "https://evil.example"},
			cookies: []*http.Cookie{identityCookie("shop", token)}, status: 403, code: "origin_not_allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := meDo(e, tt.method, tt.site, tt.headers, tt.cookies...)
			wantStatus(t, r, tt.status, tt.code)
			if strings.Contains(string(r.body), token) {
				t.Errorf("refused request returned the token: %s", r.body)
			}
			if tt.headers["Origin"] == "https://evil.example" && r.header.Get("Access-Control-Allow-Origin") != "" {
				t.Errorf("a foreign origin may read the answer: Access-Control-Allow-Origin %q", r.header.Get("Access-Control-Allow-Origin"))
			}
			if len(r.cookies) != 0 {
				t.Errorf("a refused request set cookies: %v", r.cookies)
			}
		})
	}
	e.fake.mu.Lock()
	erased := e.fake.erased
	e.fake.mu.Unlock()
	if len(erased) != 0 {
		t.Errorf("refused /v1/me requests erased %q", erased)
	}
}

// /v1/me at the transport, over a fake domain: the token from the header or
// the cookie proves the visitor, none is 401; an erasure answers 204 and
// expires the identity cookie the request carried, and only that.
func TestMeTransport(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	shop := map[string]string{"Origin": shopOrigin}
	r := e.do(req{method: http.MethodGet, path: "/v1/me?site=shop", headers: shop})
	wantStatus(t, r, http.StatusUnauthorized, "unauthorized")
	wantNoCookie(t, r)

	token := e.fake.issue()
	for _, rq := range []req{
		{method: http.MethodGet, path: "/v1/me?site=shop", headers: map[string]string{"Origin": shopOrigin, tokenHeader: token}},
		{method: http.MethodGet, path: "/v1/me?site=shop", headers: shop, cookies: []*http.Cookie{identityCookie("shop", token)}},
	} {
		r := e.do(rq)
		wantStatus(t, r, http.StatusOK, "")
		checkContract(t, e, rq, r)
		if got := r.json(t)["visitor_id"]; got != token {
			t.Errorf("export of %v, want the token's visitor", got)
		}
	}

	byHeader := req{method: http.MethodDelete, path: "/v1/me?site=shop", headers: map[string]string{"Origin": shopOrigin, tokenHeader: token}}
	r = e.do(byHeader)
	wantStatus(t, r, http.StatusNoContent, "")
	wantNoCookie(t, r)
	byCookie := req{method: http.MethodDelete, path: "/v1/me?site=shop", headers: shop, cookies: []*http.Cookie{identityCookie("shop", e.fake.issue())}}
	r = e.do(byCookie)
	wantStatus(t, r, http.StatusNoContent, "")
	wantExpiredCookie(t, r, "vt_shop")
	checkContract(t, e, byCookie, r)
	if len(e.fake.erased) != 2 {
		t.Errorf("erased %q, want both visitors", e.fake.erased)
	}
}

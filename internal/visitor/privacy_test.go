package visitor_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/httpapi"
	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// exportNotData are the stored fields an export leaves out, each with why: none
// is data about the subject that the export does not already show.
var exportNotData = map[string]string{
	"profile.ix": "when the visitor's subject-index entry lapses: bookkeeping of the retention job",
	"chat.vk":    "keyed hash of the visitor id, which the export names",
	"chat.ei":    "name of the blind-index key: a keyed hash of the e-mail, which the export shows",
	"chat.wd":    "name of the chat.started delivery key; the delivery repeats the chat's exported fields",
	"chat.w":     "the chat's write time, its start (exported as time)",
}

// Art. 15: every field the store holds of a visitor appears in the export. The
// test enumerates the raw hash and list fields of the subject's keys (the one
// place a test reads them) and finds each in the export document the API
// answers; a field the store gains later fails here until the export shows it.
func TestExportHoldsEveryStoredField(t *testing.T) {
	t.Parallel()
	d := newDomain(t, nil)
	tok := d.pageview(t, "", "/landing", "Landing", "https://news.example/a")
	d.clock.Advance(time.Minute)
	tok = d.pageview(t, tok, "/pricing", "Pricing", "")
	d.clock.Advance(time.Minute)
	if _, err := d.svc.Track(d.ctx, visitor.Hit{Site: d.site, Type: visitor.HitLeave, Token: tok, UserAgent: domainUA}); err != nil {
		t.Fatal(err)
	}
	d.clock.Advance(time.Hour) // a second session
	tok = d.pageview(t, tok, "/blog", "Blog", "https://search.example/q")
	cr, err := d.svc.SetConsent(d.ctx, visitor.ConsentRequest{Site: d.site, Analytics: true, PolicyVersion: d.site.PolicyVersion,
		Method: visitor.MethodBanner, Token: tok, UserAgent: domainUA, IP: netip.MustParseAddr("192.0.2.9")})
	if err != nil {
		t.Fatal(err)
	}
	tok = cr.Token
	contact := visitor.Contact{Name: "Ada Lovelace", Email: "ada@math.example", Phone: "+44 20 7946 0000"}
	var chats []string
	for range 2 {
		res, err := d.svc.StartChat(d.ctx, visitor.ChatRequest{Site: d.site, Contact: contact, MarketingOptIn: true,
			URL: domainOrigin + "/blog", Token: tok, UserAgent: domainUA, IP: netip.MustParseAddr("192.0.2.9")})
		if err != nil {
			t.Fatal(err)
		}
		chats = append(chats, res.ChatID)
		d.clock.Advance(time.Minute)
	}
	vid := d.visitorID(t, tok)

	e, err := d.svc.ExportVisitor(d.ctx, d.privacy, vid)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(httpapi.ExportDocument(e, d.clock.Now()))
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}

	p := "v:{shop:" + d.vkey(vid) + "}"
	hash := func(key string) map[string]string {
		t.Helper()
		m, err := d.rdb.HGetAll(d.ctx, key).Result()
		if err != nil || len(m) == 0 {
			t.Fatalf("HGETALL %s = %v, %v; want the stored hash", key, m, err)
		}
		return m
	}
	// check finds a stored field's value at path in the export.
	check := func(what string, field, raw string, at map[string]any, path string, kind string) {
		t.Helper()
		got, ok := lookup(at, path)
		if !ok {
			t.Errorf("%s: stored %s=%q is not in the export (no %s)", what, field, raw, path)
			return
		}
		if !sameValue(raw, got, kind) {
			t.Errorf("%s: stored %s=%q, export %s=%v", what, field, raw, path, got)
		}
	}

	// The profile.
	profileFields := map[string][2]string{"vid": {"visitor_id", "s"}, "fs": {"first_seen", "ms"}, "ns": {"sessions", "n"},
		"sid": {"current_session", "s"}, "w": {"last_seen", "ms"}}
	profile, _ := doc["profile"].(map[string]any)
	for f, v := range hash(p) {
		m, ok := profileFields[f]
		if !ok && exportNotData["profile."+f] == "" {
			t.Errorf("profile: stored field %s=%q has no place in the export", f, v)
			continue
		}
		if !ok {
			continue
		}
		check("profile", f, v, profile, m[0], m[1])
	}

	// Each session: its list, the record first ("#r" and these fields, each
	// after a tab), then the pages.
	sessionFields := map[string][2]string{"ss": {"start", "ms"}, "sl": {"last_seen", "ms"}, "ps": {"current_page.time", "ms"},
		"pc": {"current_page.closed", "b"}, "np": {"page_views", "n"}, "cu": {"current_page.url", "s"},
		"ct": {"current_page.title", "s"}, "rf": {"referrer", "s"}, "br": {"device.browser", "s"}, "bv": {"device.version", "s"},
		"os": {"device.os", "s"}, "mob": {"device.mobile", "b"}, "co": {"location.country", "s"}, "rg": {"location.region", "s"},
		"ci": {"location.city", "s"}, "tz": {"location.time_zone", "s"}, "ip": {"ip", "s"}}
	recordOrder := []string{"ss", "sl", "ps", "pc", "np", "cu", "ct", "rf", "br", "bv", "os", "mob", "co", "rg", "ci", "tz", "ip"}
	// The session index names the earlier sessions; the profile the current one.
	sids, err := d.rdb.ZRange(d.ctx, p+":S", 0, -1).Result()
	if err != nil || len(sids) != 1 {
		t.Fatalf("session index = %v, %v; want the earlier of 2 sessions", sids, err)
	}
	sids = append(sids, hash(p)["sid"])
	for _, sid := range sids {
		what := "session " + sid
		s := findBy(doc["sessions"], "id", sid)
		if s == nil {
			t.Errorf("%s is not in the export", what)
			continue
		}
		items, err := d.rdb.LRange(d.ctx, p+":s:"+sid, 0, -1).Result()
		if err != nil || len(items) == 0 {
			t.Fatalf("%s: list %v, %v", what, items, err)
		}
		record, ok := strings.CutPrefix(items[0], "#r\t")
		if !ok {
			t.Fatalf("%s: first item %q is not the record", what, items[0])
		}
		values := strings.Split(record, "\t")
		if len(values) != len(recordOrder) {
			t.Fatalf("%s: record of %d fields, want %d", what, len(values), len(recordOrder))
		}
		for i, f := range recordOrder {
			m, ok := sessionFields[f]
			if !ok {
				t.Errorf("%s: stored field %s=%q has no place in the export", what, f, values[i])
				continue
			}
			if values[i] == "" {
				continue // nothing stored: nothing to export
			}
			check(what, f, values[i], s, m[0], m[1])
		}
		pages, _ := s["pages"].([]any)
		n := 0
		for _, it := range items[1:] {
			f := strings.SplitN(it, "\t", 4)
			if len(f) != 4 || n >= len(pages) {
				t.Errorf("%s: stored page %q is not in the export", what, it)
				continue
			}
			pg, _ := pages[n].(map[string]any)
			check(what, "page start", f[0], pg, "time", "ms")
			check(what, "page duration", f[1], pg, "duration_seconds", "dur")
			check(what, "page url", f[2], pg, "url", "s")
			check(what, "page title", f[3], pg, "title", "s")
			n++
		}
		if n != len(pages) {
			t.Errorf("%s: %d stored pages, %d exported", what, n, len(pages))
		}
	}

	// The consent choice and records.
	choiceFields := map[string][2]string{"a": {"analytics", "b"}, "m": {"marketing", "b"}, "pv": {"policy_version", "s"},
		"t": {"given", "ms"}, "u": {"valid_until", "ms"}}
	choice, _ := doc["consent"].(map[string]any)
	for f, v := range hash(p + ":c") {
		m, ok := choiceFields[f]
		if !ok {
			t.Errorf("consent choice: stored field %s=%q has no place in the export", f, v)
			continue
		}
		check("consent choice", f, v, choice, m[0], m[1])
	}
	records, err := d.rdb.ZRange(d.ctx, p+":r", 0, -1).Result()
	if err != nil || len(records) < 3 {
		t.Fatalf("consent records = %d, %v; want the grant and two marketing opt-ins", len(records), err)
	}
	exported, _ := doc["consent_records"].([]any)
	for _, r := range records {
		var stored map[string]any
		if err := json.Unmarshal([]byte(r), &stored); err != nil {
			t.Fatal(err)
		}
		found := false
		for _, x := range exported {
			if fmt.Sprint(x) == fmt.Sprint(stored) {
				found = true
			}
		}
		if !found {
			t.Errorf("stored consent record %s is not in the export", r)
		}
	}

	// Each chat, contacts decrypted.
	chatFields := map[string][2]string{"t": {"time", "ms"}, "sid": {"session_id", "s"}, "url": {"url", "s"},
		"mk": {"marketing_opt_in", "b"}, "pc": {"previous_chats", "list"}, "br": {"device.browser", "s"},
		"bv": {"device.version", "s"}, "os": {"device.os", "s"}, "mob": {"device.mobile", "b"},
		"co": {"location.country", "s"}, "rg": {"location.region", "s"}, "ci": {"location.city", "s"},
		"tz": {"location.time_zone", "s"}, "rf": {"referrer", "s"}}
	sealed := map[string]string{"name": contact.Name, "email": contact.Email, "phone": contact.Phone}
	for _, id := range chats {
		what := "chat " + id
		c := findBy(doc["chats"], "chat_id", id)
		if c == nil {
			t.Errorf("%s is not in the export", what)
			continue
		}
		for f, v := range hash("ch:{shop:" + id + "}") {
			switch m, ok := chatFields[f]; {
			case ok:
				check(what, f, v, c, m[0], m[1])
			case f == "vid":
				check(what, f, v, doc, "visitor_id", "s")
			case sealed[f] != "":
				check(what, f+" (opened)", sealed[f], c, "contact."+f, "s")
			case exportNotData["chat."+f] != "":
			default:
				t.Errorf("%s: stored field %s=%q has no place in the export", what, f, v)
			}
		}
	}
}

// lookup follows a dotted path through decoded JSON objects.
func lookup(at map[string]any, path string) (any, bool) {
	var cur any = at
	for _, k := range strings.Split(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[k]; !ok {
			return nil, false
		}
	}
	return cur, true
}

// sameValue compares a stored field (raw) with its exported JSON value by kind:
// s string, n integer, b "1"/"0" as a boolean, ms Unix ms as an RFC 3339 time,
// dur ms as seconds, list a comma list as an array.
func sameValue(raw string, got any, kind string) bool {
	switch kind {
	case "s":
		return got == raw
	case "n":
		n, err := strconv.ParseFloat(raw, 64)
		return err == nil && got == n
	case "b":
		return got == (raw == "1")
	case "ms":
		s, _ := got.(string)
		tm, err := time.Parse(time.RFC3339Nano, s)
		return err == nil && strconv.FormatInt(tm.UnixMilli(), 10) == raw
	case "dur":
		n, err := strconv.ParseFloat(raw, 64)
		return err == nil && got == n/1000
	case "list":
		l, _ := got.([]any)
		parts := []string{}
		for _, x := range l {
			parts = append(parts, fmt.Sprint(x))
		}
		return strings.Join(parts, ",") == raw
	}
	return false
}

// findBy returns the object of a decoded JSON array whose key equals value.
func findBy(list any, key, value string) map[string]any {
	l, _ := list.([]any)
	for _, x := range l {
		if m, ok := x.(map[string]any); ok && m[key] == value {
			return m
		}
	}
	return nil
}

// Invariant 6: erasing one chat of a visitor drops the queued deliveries that
// carry that chat's contact details (a subject.rectified naming it); the
// visitor's other chats still hear of the rectification, without the erased one.
func TestEraseOneChatPurgesQueuedRectification(t *testing.T) {
	t.Parallel()
	site := crmSite(visitor.ConsentOptIn)
	d := newConsentDomain(t, site)
	ctx := context.Background()
	token := d.grant("shop", false)
	id := d.idOf("shop", token)
	var chats []string
	for range 2 {
		res, err := d.svc.StartChat(ctx, visitor.ChatRequest{Site: site, Token: token,
			Contact: visitor.Contact{Name: "Ada", Email: "ada@math.example"}, URL: consentOrigin + "/pricing", UserAgent: consentUA, IP: domainIP})
		if err != nil {
			t.Fatal(err)
		}
		chats = append(chats, res.ChatID)
		d.clock.Advance(time.Minute)
	}
	d.queuedBodies("shop") // chat.started
	name, email := "Grace Hopper", "grace@navy.example"
	if _, err := d.svc.RectifyVisitor(ctx, d.privacy("shop"), id, visitor.ContactChange{Name: &name, Email: &email}); err != nil {
		t.Fatal(err)
	}
	if err := d.svc.EraseChat(ctx, d.privacy("shop"), chats[0]); err != nil {
		t.Fatal(err)
	}
	var rectified []string
	for _, b := range d.queuedBodies("shop") {
		if strings.Contains(b, chats[0]) && strings.Contains(b, "grace") {
			t.Errorf("after erasing chat %s a queued delivery still carries its contact: %s", chats[0], b)
		}
		if strings.Contains(b, `"event":"subject.rectified"`) {
			rectified = append(rectified, b)
		}
	}
	if len(rectified) != 1 || !strings.Contains(rectified[0], chats[1]) || !strings.Contains(rectified[0], "grace@navy.example") {
		t.Errorf("queued subject.rectified %q, want one for the remaining chat %s", rectified, chats[1])
	}
}

// Erasing a visitor's chat takes the visitor out of that chat's e-mail blind
// index once no other chat of theirs gives that e-mail: a search by the e-mail
// must not lead to the visitor whose contact details were erased.
func TestEraseChatLeavesNoEmailLink(t *testing.T) {
	t.Parallel()
	site := consentSite("shop", visitor.ConsentOptIn, visitor.IPTruncate)
	d := newConsentDomain(t, site)
	ctx := context.Background()
	token := d.grant("shop", false)
	id := d.idOf("shop", token)
	start := func(email string) string {
		t.Helper()
		res, err := d.svc.StartChat(ctx, visitor.ChatRequest{Site: site, Token: token,
			Contact: visitor.Contact{Name: "Ada", Email: email}, URL: consentOrigin + "/", UserAgent: consentUA, IP: domainIP})
		if err != nil {
			t.Fatal(err)
		}
		d.clock.Advance(time.Minute)
		return res.ChatID
	}
	a1, a2, b := start("ada@math.example"), start("ada@math.example"), start("ada@work.example")
	search := func(email string) []string {
		t.Helper()
		vs, _, err := d.svc.SearchSubjects(ctx, d.privacy("shop"), email)
		if err != nil {
			t.Fatal(err)
		}
		return vs
	}
	if err := d.svc.EraseChat(ctx, d.privacy("shop"), a1); err != nil {
		t.Fatal(err)
	}
	if vs := search("ada@math.example"); len(vs) != 1 || vs[0] != id {
		t.Errorf("search after erasing one of two chats with the e-mail: %q, want the visitor", vs)
	}
	for _, c := range []string{a2, b} {
		if err := d.svc.EraseChat(ctx, d.privacy("shop"), c); err != nil {
			t.Fatal(err)
		}
	}
	for _, email := range []string{"ada@math.example", "ada@work.example"} {
		if vs := search(email); len(vs) != 0 {
			t.Errorf("search for %s after erasing every chat giving it: %q, want none", email, vs)
		}
	}
}

// Art. 17: an erasure leaves nothing of its subject the service can read back
// (data, export, chats, the e-mail blind index), is audited under the subject,
// and makes an erased visitor's token foreign; erasing a chat keeps the rest of
// its visitor.
func TestErasure(t *testing.T) {
	t.Parallel()
	const email = "ada@example.org"
	type subject struct {
		token, visitorID, chatID string
	}
	for _, tt := range []struct {
		name         string
		erase        func(*domain, subject) error
		again        bool   // erase twice: the second is not_found
		visitorGone  bool   // the visitor's data is gone
		action, kind string // the audit entry
	}{
		{name: "visitor by the privacy team", erase: func(d *domain, s subject) error { return d.svc.EraseVisitor(d.ctx, d.privacy, s.visitorID) },
			visitorGone: true, action: "subject.erase", kind: "visitor"},
		{name: "visitor twice", erase: func(d *domain, s subject) error { return d.svc.EraseVisitor(d.ctx, d.privacy, s.visitorID) },
			again: true, visitorGone: true, action: "subject.erase", kind: "visitor"},
		{name: "visitor by the visitor", erase: func(d *domain, s subject) error { return d.svc.EraseMine(d.ctx, d.site, s.token) },
			visitorGone: true, action: "subject.erase", kind: "visitor"},
		{name: "chat", erase: func(d *domain, s subject) error { return d.svc.EraseChat(d.ctx, d.privacy, s.chatID) },
			action: "chat.erase", kind: "chat"},
		{name: "chat twice", erase: func(d *domain, s subject) error { return d.svc.EraseChat(d.ctx, d.privacy, s.chatID) },
			again: true, action: "chat.erase", kind: "chat"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDomain(t, nil)
			tok := d.pageview(t, "", "/pricing", "Pricing", "")
			s := subject{token: tok, visitorID: d.visitorID(t, tok), chatID: d.startChat(t, tok, false, false).ChatID}
			if err := tt.erase(d, s); err != nil {
				t.Fatal(err)
			}
			if tt.again {
				if err := tt.erase(d, s); visitor.ErrorCode(err) != visitor.ENotFound {
					t.Errorf("second erasure = %v, want not_found", err)
				}
			}

			if _, err := d.store.Chat(d.ctx, d.site, s.chatID); !errors.Is(err, visitor.ErrNotFound) {
				t.Errorf("Chat after the erasure = %v, want not found", err)
			}
			if _, err := d.svc.ExportChat(d.ctx, d.privacy, s.chatID); visitor.ErrorCode(err) != visitor.ENotFound {
				t.Errorf("ExportChat after the erasure = %v, want not_found", err)
			}
			visitors, chats, err := d.svc.SearchSubjects(d.ctx, d.privacy, email)
			if err != nil || len(visitors)+len(chats) != 0 {
				t.Errorf("SearchSubjects(%s) = %v, %v, %v; want nothing", email, visitors, chats, err)
			}
			data, err := d.store.VisitorData(d.ctx, d.site, d.vkey(s.visitorID))
			switch {
			case tt.visitorGone && !errors.Is(err, visitor.ErrErased):
				t.Errorf("VisitorData after the erasure = %+v, %v; want erased", data, err)
			case !tt.visitorGone && (err != nil || data.Profile == nil || len(data.Sessions) != 1 || len(data.Chats) != 0):
				t.Errorf("VisitorData after the chat's erasure = %+v, %v; want the profile and session without the chat", data, err)
			}
			_, err = d.svc.ExportVisitor(d.ctx, d.privacy, s.visitorID)
			if got, want := visitor.ErrorCode(err), map[bool]string{true: visitor.ENotFound, false: ""}[tt.visitorGone]; got != want {
				t.Errorf("ExportVisitor after the erasure = %v, want code %q", err, want)
			}

			// The erased visitor's token is foreign: its next page view is a new visitor's.
			res, err := d.svc.Track(d.ctx, visitor.Hit{Site: d.site, Type: visitor.HitPageview, URL: domainOrigin + "/", Token: tok,
				UserAgent: domainUA, IP: domainIP})
			if err != nil || !res.Tracked {
				t.Fatalf("page view after the erasure = %+v, %v", res, err)
			}
			if got := res.Issued && d.visitorID(t, res.Token) != s.visitorID; got != tt.visitorGone {
				t.Errorf("page view after the erasure issued a new identity: %v, want %v", got, tt.visitorGone)
			}

			id := s.visitorID
			if tt.kind == "chat" {
				id = s.chatID
			}
			entries, _, err := d.store.AuditLog(d.ctx, d.site, "", 100)
			if err != nil {
				t.Fatal(err)
			}
			target, n := d.svc.AuditTarget(d.site.ID, tt.kind, id), 0
			actor := d.privacy.KeyID
			if tt.name == "visitor by the visitor" {
				actor = "visitor"
			}
			for _, e := range entries {
				if e.Action == tt.action && e.Target == target {
					n++
					if e.Actor != actor {
						t.Errorf("%s entry by %q, want %q", tt.action, e.Actor, actor)
					}
				}
			}
			if n != 1 {
				t.Errorf("%d %s entries about the subject, want 1", n, tt.action)
			}
		})
	}
}

// A chat without identity is a data subject of its own (invariant 6): its
// erasure leaves no key naming it or holding its contact, URL or user agent,
// takes it out of the e-mail blind index, and keeps its marketing consent
// record as proof, cut and named by the keyed hash.
func TestEraseChatWithoutIdentity(t *testing.T) {
	t.Parallel()
	d := newDomain(t, nil)
	contact := visitor.Contact{Name: "Ada Byron", Email: "ada@engine.example", Phone: "+44 20 7946 0000"}
	res, err := d.svc.StartChat(d.ctx, visitor.ChatRequest{Site: d.site, Contact: contact, MarketingOptIn: true,
		URL: domainOrigin + "/contact", UserAgent: domainUA, IP: domainIP})
	if err != nil {
		t.Fatal(err)
	}
	if _, chats, err := d.svc.SearchSubjects(d.ctx, d.privacy, contact.Email); err != nil || len(chats) != 1 || chats[0] != res.ChatID {
		t.Fatalf("SearchSubjects = %v, %v; want the chat", chats, err)
	}
	d.clock.Advance(time.Minute)
	if err := d.svc.EraseChat(d.ctx, d.privacy, res.ChatID); err != nil {
		t.Fatal(err)
	}
	if vs, chats, err := d.svc.SearchSubjects(d.ctx, d.privacy, contact.Email); err != nil || len(vs)+len(chats) != 0 {
		t.Errorf("SearchSubjects after the erasure = %v, %v, %v; want nothing", vs, chats, err)
	}
	if _, err := d.svc.ExportChat(d.ctx, d.privacy, res.ChatID); visitor.ErrorCode(err) != visitor.ENotFound {
		t.Errorf("ExportChat after the erasure = %v, want not_found", err)
	}
	subject := d.svc.AuditTarget(d.site.ID, "chat", res.ChatID)
	proofs := 0
	for k, v := range redistest.DumpValues(t, d.rdb) {
		for _, n := range []string{res.ChatID, contact.Name, contact.Email, contact.Phone, "/contact", domainUA, domainIP.String()} {
			if strings.Contains(k, n) || strings.Contains(v, n) {
				t.Errorf("after the erasure %s holds %q", k, n)
			}
		}
		for _, line := range strings.Split(v, "\n") {
			member, _, _ := strings.Cut(line, "} ")
			if !strings.Contains(member, `"subject":"`+subject+`"`) || strings.HasPrefix(k, "au:") {
				continue
			}
			proofs++
			var rec map[string]any
			if err := json.Unmarshal([]byte(member+"}"), &rec); err != nil {
				t.Fatalf("proof %q in %s: %v", line, k, err)
			}
			for f := range rec {
				switch f {
				case "subject", "time", "analytics", "marketing", "policy_version", "text_sha256", "method":
				default:
					t.Errorf("the cut record keeps %q: %s", f, line)
				}
			}
			if rec["method"] != visitor.MethodChatStart || rec["marketing"] != true {
				t.Errorf("the cut record %s, want the chat start's marketing opt-in", line)
			}
		}
	}
	if proofs != 1 {
		t.Errorf("%d cut consent records of the chat, want its one", proofs)
	}
}

// A visitor's own export and erasure are proved by a valid identity token of
// the site alone: none, a tampered one, another site's, a refusal token or an
// erased visitor's is unauthorized, reveals nothing and changes nothing.
func TestMineRefused(t *testing.T) {
	t.Parallel()
	shop, blog := domainSite(), domainSite()
	blog.ID, blog.Origins = "blog", []string{"https://blog.example"}
	st := newStack(t, []*visitor.Site{shop, blog}, domainDevices{}, domainLocator{})
	ctx := context.Background()
	track := func(site *visitor.Site) string {
		t.Helper()
		res, err := st.svc.Track(ctx, visitor.Hit{Site: site, Type: visitor.HitPageview, URL: site.Origins[0] + "/", UserAgent: domainUA, IP: domainIP})
		if err != nil || !res.Tracked {
			t.Fatalf("Track: %+v, %v", res, err)
		}
		return res.Token
	}
	token, blogToken, erased := track(shop), track(blog), track(shop)
	tok, _ := st.signer.Verify(token, "shop", st.clock.Now())
	refusal, err := st.svc.SetConsent(ctx, visitor.ConsentRequest{Site: shop, PolicyVersion: shop.PolicyVersion, Method: visitor.MethodBanner})
	if err != nil {
		t.Fatal(err)
	}
	if err := st.svc.EraseMine(ctx, shop, erased); err != nil {
		t.Fatal(err)
	}
	tampered := token[:len(token)-3] + map[bool]string{true: "AAA", false: "BBB"}[!strings.HasSuffix(token, "AAA")]
	before := storeState(t, st.rdb)
	for _, tt := range []struct {
		name  string
		token string
	}{
		{name: "no token", token: ""},
		{name: "tampered", token: tampered},
		{name: "another site's", token: blogToken},
		{name: "a refusal token", token: refusal.Token},
		{name: "an erased visitor's", token: erased},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if x, err := st.svc.ExportMine(ctx, shop, tt.token); visitor.ErrorCode(err) != visitor.EUnauthorized || x.VisitorID != "" {
				t.Errorf("ExportMine = %+v, %v; want unauthorized and nothing", x.VisitorID, err)
			}
			if err := st.svc.EraseMine(ctx, shop, tt.token); visitor.ErrorCode(err) != visitor.EUnauthorized {
				t.Errorf("EraseMine = %v, want unauthorized", err)
			}
		})
	}
	if diff := cmp.Diff(before, storeState(t, st.rdb)); diff != "" {
		t.Errorf("refused requests changed the store (-before +after):\n%s", diff)
	}
	if x, err := st.svc.ExportMine(ctx, shop, token); err != nil || x.VisitorID != tok.VisitorID || len(x.Sessions) != 1 {
		t.Errorf("the visitor's own export afterwards = %+v, %v; want its data", x.Sessions, err)
	}
}

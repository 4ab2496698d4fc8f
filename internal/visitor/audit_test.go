package visitor_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/device"
	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/visitor"
)

const audUA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36"

// audNoLocation locates no IP: the audit tests need no geolocation.
type audNoLocation struct{}

func (audNoLocation) Lookup(netip.Addr) visitor.Location { return visitor.Location{} }

// audEnv is the Service over a real Store on its own redis-server.
type audEnv struct {
	ctx    context.Context
	svc    *visitor.Service
	store  *redisstore.Store
	site   *visitor.Site
	signer *visitor.Signer
	clock  *domainClock
}

var audKeys = map[string]visitor.Role{"agent-1": visitor.RoleOperator, "agent-2": visitor.RoleOperator, "dpo": visitor.RolePrivacy}

func audActor(e *audEnv, key string) visitor.Actor {
	return visitor.Actor{Site: e.site, KeyID: key, Role: audKeys[key]}
}

func audStart(tb testing.TB, retention visitor.Retention, opts ...visitor.Option) *audEnv {
	tb.Helper()
	site := &visitor.Site{
		ID: "shop", Origins: []string{"https://shop.example"}, Consent: visitor.ConsentOptOut, ConsentValidDays: 180,
		IP: visitor.IPTruncate, SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour, KeepTitle: true,
		Retention: retention, PolicyVersion: "2026-11", LegalText: "We record the pages you visit.",
	}
	for id, role := range audKeys {
		site.Keys = append(site.Keys, visitor.APIKey{ID: id, Role: role, SHA256: sha256.Sum256([]byte("key-" + id))})
	}
	st := newStack(tb, []*visitor.Site{site}, device.NewParser(64), audNoLocation{}, opts...)
	ctx := context.Background()
	return &audEnv{ctx: ctx, svc: st.svc, store: st.store, site: site, signer: st.signer, clock: st.clock}
}

// visit tracks a page view with token ("" for a new visitor) and returns the token.
func (e *audEnv) visit(tb testing.TB, token, path string) string {
	tb.Helper()
	r, err := e.svc.Track(e.ctx, visitor.Hit{Site: e.site, Type: visitor.HitPageview, URL: "https://shop.example" + path,
		Title: "A page", Token: token, UserAgent: audUA, IP: netip.MustParseAddr("192.0.2.10")})
	if err != nil || !r.Tracked {
		tb.Fatalf("track %s: %+v, %v", path, r, err)
	}
	return r.Token
}

func (e *audEnv) visitorID(tb testing.TB, token string) string {
	tb.Helper()
	tok, ok := e.signer.Verify(token, e.site.ID, e.clock.Now())
	if !ok || tok.VisitorID == "" {
		tb.Fatalf("token %q is not an identity of shop", token)
	}
	return tok.VisitorID
}

// chat starts a chat with token ("" for one without identity) and returns its id.
func (e *audEnv) chat(tb testing.TB, token, name, email string) string {
	tb.Helper()
	r, err := e.svc.StartChat(e.ctx, visitor.ChatRequest{Site: e.site, Contact: visitor.Contact{Name: name, Email: email},
		URL: "https://shop.example/help", Token: token, UserAgent: audUA, IP: netip.MustParseAddr("192.0.2.10")})
	if err != nil {
		tb.Fatalf("start chat: %v", err)
	}
	return r.ChatID
}

// audRow is an audit entry as the tests compare it: the target as kind:id.
type audRow struct {
	Actor, Action, Target string
	Count                 int
}

// trail reads the whole trail back through the store, newest first, naming
// each target by the subject whose keyed hash it is.
func (e *audEnv) trail(tb testing.TB, subjects map[string]string) []audRow {
	tb.Helper()
	names := map[string]string{}
	for name, kindID := range subjects {
		kind, id, _ := strings.Cut(kindID, ":")
		names[e.svc.AuditTarget(e.site.ID, kind, id)] = name
	}
	entries, _, err := e.store.AuditLog(e.ctx, e.site, "", visitor.MaxAuditPage)
	if err != nil {
		tb.Fatal(err)
	}
	rows := make([]audRow, 0, len(entries))
	for _, en := range entries {
		target, ok := names[en.Target]
		if !ok {
			target = "unknown " + en.Target
		}
		rows = append(rows, audRow{Actor: en.Actor, Action: en.Action, Target: target, Count: en.Count})
	}
	return rows
}

// audFixture is a returning visitor with two chats (the second attributes the
// first) and a chat without identity, whose trail starts empty.
type audFixture struct {
	visitor, chat1, chat2, anon string
	subjects                    map[string]string
}

func audSetup(tb testing.TB, e *audEnv) audFixture {
	tb.Helper()
	token := e.visit(tb, "", "/pricing")
	f := audFixture{visitor: e.visitorID(tb, token)}
	f.chat1 = e.chat(tb, token, "Ada Lovelace", "ada@math.example")
	e.clock.Advance(time.Minute)
	f.chat2 = e.chat(tb, token, "Ada Lovelace", "ada@math.example")
	f.anon = e.chat(tb, "", "Grace Hopper", "grace@navy.example")
	f.subjects = map[string]string{"visitor": "visitor:" + f.visitor, "chat1": "chat:" + f.chat1, "chat2": "chat:" + f.chat2,
		"anon": "chat:" + f.anon, "email": "email:ada@math.example", "site": "site:shop"}
	return f
}

// Every read that reveals a subject's data is audited under each subject it
// reveals, by keyed hash; a rectification logs no export nobody asked for.
func TestAuditReadsNameEverySubject(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		act  func(t *testing.T, e *audEnv, f audFixture)
		want []audRow // newest first
	}{
		{
			name: "a chat context names its chat, the earlier chat it shows and the visitor",
			act: func(t *testing.T, e *audEnv, f audFixture) {
				v, err := e.svc.ChatContext(e.ctx, audActor(e, "agent-1"), f.chat2)
				if err != nil || len(v.Previous) != 1 || v.Previous[0].Contact.Email != "ada@math.example" {
					t.Fatalf("ChatContext: %+v, %v; want the earlier chat with its contact", v.Previous, err)
				}
			},
			want: []audRow{{"agent-1", "chat.read", "visitor", 1}, {"agent-1", "chat.read", "chat1", 1}, {"agent-1", "chat.read", "chat2", 1}},
		},
		{
			name: "a chat without identity names the chat alone",
			act: func(t *testing.T, e *audEnv, f audFixture) {
				if _, err := e.svc.ChatContext(e.ctx, audActor(e, "agent-1"), f.anon); err != nil {
					t.Fatal(err)
				}
			},
			want: []audRow{{"agent-1", "chat.read", "anon", 1}},
		},
		{
			name: "a visitor's export names the visitor and each chat",
			act: func(t *testing.T, e *audEnv, f audFixture) {
				if _, err := e.svc.ExportVisitor(e.ctx, audActor(e, "dpo"), f.visitor); err != nil {
					t.Fatal(err)
				}
			},
			want: []audRow{{"dpo", "subject.export", "chat2", 1}, {"dpo", "subject.export", "chat1", 1}, {"dpo", "subject.export", "visitor", 1}},
		},
		{
			name: "a chat's export names the chat and the visitor behind it",
			act: func(t *testing.T, e *audEnv, f audFixture) {
				if _, err := e.svc.ExportChat(e.ctx, audActor(e, "dpo"), f.chat1); err != nil {
					t.Fatal(err)
				}
			},
			want: []audRow{{"dpo", "chat.export", "visitor", 1}, {"dpo", "chat.export", "chat1", 1}},
		},
		{
			name: "a search names the e-mail and the subjects behind it",
			act: func(t *testing.T, e *audEnv, f audFixture) {
				if _, _, err := e.svc.SearchSubjects(e.ctx, audActor(e, "dpo"), "Ada@Math.example"); err != nil {
					t.Fatal(err)
				}
			},
			want: []audRow{{"dpo", "subject.search", "visitor", 1}, {"dpo", "subject.search", "email", 1}},
		},
		{
			name: "a rectification logs the rectification, not an export",
			act: func(t *testing.T, e *audEnv, f audFixture) {
				email := "ada@engine.example"
				x, err := e.svc.RectifyVisitor(e.ctx, audActor(e, "dpo"), f.visitor, visitor.ContactChange{Email: &email})
				if err != nil || len(x.Chats) != 2 || x.Chats[0].Contact.Email != email {
					t.Fatalf("RectifyVisitor: %+v, %v", x.Chats, err)
				}
			},
			want: []audRow{{"dpo", "subject.rectify", "visitor", 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := audStart(t, visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365})
			f := audSetup(t, e)
			tt.act(t, e, f)
			if diff := cmp.Diff(tt.want, e.trail(t, f.subjects)); diff != "" {
				t.Errorf("audit trail, newest first (-want +got):\n%s", diff)
			}
			// "Who saw this person's data": the visitor's id finds every entry
			// naming them, through the service as the API asks it.
			var want []audRow
			for _, r := range tt.want {
				if r.Target == "visitor" {
					want = append(want, r)
				}
			}
			got, _, err := e.svc.AuditTrail(e.ctx, audActor(e, "dpo"), f.visitor, "", 0)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Errorf("AuditTrail(target=visitor) has %d entries, want %d", len(got), len(want))
			}
			// No entry holds a raw id or a contact detail.
			entries, _, err := e.store.AuditLog(e.ctx, e.site, "", visitor.MaxAuditPage)
			if err != nil {
				t.Fatal(err)
			}
			for _, en := range entries {
				for _, leak := range []string{f.visitor, f.chat1, f.chat2, f.anon, "ada@", "Ada", "Grace"} {
					if strings.Contains(en.Target, leak) || strings.Contains(en.Actor, leak) {
						t.Errorf("entry %+v holds %q", en, leak)
					}
				}
			}
		})
	}
}

// The same key reading the same target within 10 minutes of an entry's first
// read adds to its count; another key, another action, a later read or a
// change is an entry of its own.
func TestAuditFoldsRepeatedReads(t *testing.T) {
	t.Parallel()
	type step struct {
		after time.Duration
		key   string
		read  string // "chat" (context of chat1), "export" (the visitor's export)
	}
	tests := []struct {
		name  string
		steps []step
		want  []audRow // newest first
	}{
		{
			name:  "a console refreshing every 5 s for 10 minutes writes one entry per subject",
			steps: slices.Repeat([]step{{5 * time.Second, "agent-1", "chat"}}, 119),
			want:  []audRow{{"agent-1", "chat.read", "visitor", 119}, {"agent-1", "chat.read", "chat1", 119}},
		},
		{
			name:  "an hour of 5 s refreshes writes six entries per subject, not 720",
			steps: slices.Repeat([]step{{5 * time.Second, "agent-1", "chat"}}, 720),
			want:  slices.Repeat([]audRow{{"agent-1", "chat.read", "visitor", 120}, {"agent-1", "chat.read", "chat1", 120}}, 6),
		},
		{
			name:  "a read 10 minutes after the entry's first starts a new one",
			steps: []step{{0, "agent-1", "chat"}, {9 * time.Minute, "agent-1", "chat"}, {time.Minute, "agent-1", "chat"}},
			want: []audRow{{"agent-1", "chat.read", "visitor", 1}, {"agent-1", "chat.read", "chat1", 1},
				{"agent-1", "chat.read", "visitor", 2}, {"agent-1", "chat.read", "chat1", 2}},
		},
		{
			name:  "another key reads on its own entries",
			steps: []step{{0, "agent-1", "chat"}, {time.Second, "agent-2", "chat"}, {time.Second, "agent-1", "chat"}},
			want: []audRow{{"agent-1", "chat.read", "visitor", 2}, {"agent-1", "chat.read", "chat1", 2},
				{"agent-2", "chat.read", "visitor", 1}, {"agent-2", "chat.read", "chat1", 1}},
		},
		{
			name:  "another action is an entry of its own",
			steps: []step{{0, "dpo", "chat"}, {time.Second, "dpo", "export"}, {time.Second, "dpo", "export"}},
			want: []audRow{{"dpo", "subject.export", "chat1", 2}, {"dpo", "subject.export", "visitor", 2},
				{"dpo", "chat.read", "visitor", 1}, {"dpo", "chat.read", "chat1", 1}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := audStart(t, visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365})
			token := e.visit(t, "", "/pricing")
			id := e.visitorID(t, token)
			chat := e.chat(t, token, "Ada Lovelace", "ada@math.example")
			for i, s := range tt.steps {
				e.clock.Advance(s.after)
				var err error
				switch s.read {
				case "chat":
					_, err = e.svc.ChatContext(e.ctx, audActor(e, s.key), chat)
				case "export":
					_, err = e.svc.ExportVisitor(e.ctx, audActor(e, s.key), id)
				}
				if err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
			}
			got := e.trail(t, map[string]string{"visitor": "visitor:" + id, "chat1": "chat:" + chat})
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("audit trail, newest first (-want +got):\n%s", diff)
			}
		})
	}

	// Changes never fold: two retention changes a second apart are two entries.
	e := audStart(t, visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365})
	for _, sessions := range []int{60, 30} {
		e.clock.Advance(time.Second)
		if _, err := e.svc.SetRetention(e.ctx, audActor(e, "dpo"), visitor.Retention{Sessions: sessions, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365}); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff([]audRow{{"dpo", "retention.change", "site", 1}, {"dpo", "retention.change", "site", 1}},
		e.trail(t, map[string]string{"site": "site:shop"})); diff != "" {
		t.Errorf("retention changes (-want +got):\n%s", diff)
	}
}

// The audit window cannot be set below VISITORD_AUDIT_MIN_DAYS (the role that
// is audited cannot shorten its own trail); a window the sites file set below
// it may be kept. A change records the old and new windows; a refused one
// writes nothing.
func TestAuditRetentionFloor(t *testing.T) {
	t.Parallel()
	defaults := visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365}
	with := func(r visitor.Retention, audit int) visitor.Retention { r.Audit = audit; return r }
	tests := []struct {
		name    string
		site    visitor.Retention
		opts    []visitor.Option
		change  visitor.Retention
		refused string // a part of the message when refused
	}{
		{name: "audit 1 under the default floor", site: defaults, change: with(defaults, 1), refused: "below the minimum of 365 days (VISITORD_AUDIT_MIN_DAYS)"},
		{name: "audit 364 under the default floor", site: defaults, change: with(defaults, 364), refused: "365"},
		{name: "audit down to the default floor", site: with(defaults, 730), change: defaults},
		{name: "audit longer", site: defaults, change: with(defaults, 730)},
		{name: "a floor of 30 days", site: defaults, opts: []visitor.Option{visitor.WithAuditMinDays(30)}, change: with(defaults, 30)},
		{name: "under a floor of 30 days", site: defaults, opts: []visitor.Option{visitor.WithAuditMinDays(30)}, change: with(defaults, 29), refused: "below the minimum of 30 days"},
		{name: "the sites file's shorter window kept", site: with(defaults, 100), change: visitor.Retention{Sessions: 30, Profiles: 395, Chats: 90, Consents: 1095, Audit: 100}},
		{name: "the sites file's shorter window shortened", site: with(defaults, 100), change: with(defaults, 99), refused: "365"},
		{name: "the sites file's shorter window lengthened but still under", site: with(defaults, 100), change: with(defaults, 200), refused: "365"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := audStart(t, tt.site, tt.opts...)
			got, err := e.svc.SetRetention(e.ctx, audActor(e, "dpo"), tt.change)
			entries, _, lerr := e.store.AuditLog(e.ctx, e.site, "", 10)
			if lerr != nil {
				t.Fatal(lerr)
			}
			if tt.refused != "" {
				if !errors.Is(err, visitor.ErrRetentionBounds) || !strings.Contains(err.Error(), tt.refused) {
					t.Fatalf("SetRetention(%+v) = %v, want ErrRetentionBounds naming %q", tt.change, err, tt.refused)
				}
				if r := e.svc.Retention(e.site); r != tt.site {
					t.Errorf("retention in force after a refused change %+v, want %+v", r, tt.site)
				}
				if len(entries) != 0 {
					t.Errorf("a refused change was audited: %+v", entries)
				}
				return
			}
			if err != nil || got != tt.change {
				t.Fatalf("SetRetention(%+v) = %+v, %v", tt.change, got, err)
			}
			if len(entries) != 1 || entries[0].Action != "retention.change" || entries[0].OldRetention == nil || entries[0].NewRetention == nil {
				t.Fatalf("audit after the change: %+v, want one retention.change with its windows", entries)
			}
			if *entries[0].OldRetention != tt.site || *entries[0].NewRetention != tt.change {
				t.Errorf("retention.change records %+v → %+v, want %+v → %+v", *entries[0].OldRetention, *entries[0].NewRetention, tt.site, tt.change)
			}
		})
	}
}

// A cursor the trail did not give is ErrInvalid, never a store error; one it
// gave pages on.
func TestAuditCursor(t *testing.T) {
	t.Parallel()
	e := audStart(t, visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365})
	for _, sessions := range []int{60, 50, 40} {
		e.clock.Advance(time.Second)
		if _, err := e.svc.SetRetention(e.ctx, audActor(e, "dpo"), visitor.Retention{Sessions: sessions, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365}); err != nil {
			t.Fatal(err)
		}
	}
	for _, cursor := range []string{"garbage", "(1-0", "1-0 ", "-", "1-", "-1", "+", "1-x", "99999999999999999999999-0", "1-+2", "1.5-0", "0x10-0"} {
		if _, _, err := e.svc.AuditTrail(e.ctx, audActor(e, "dpo"), "", cursor, 0); !errors.Is(err, visitor.ErrInvalid) {
			t.Errorf("AuditTrail(cursor %q) = %v, want ErrInvalid", cursor, err)
		}
	}
	// The smallest and the largest ids are cursors too: nothing, and everything, is older.
	for cursor, want := range map[string]int{"0-0": 0, "00-000": 0, "18446744073709551615-18446744073709551615": 3} {
		page, next, err := e.svc.AuditTrail(e.ctx, audActor(e, "dpo"), "", cursor, 0)
		if err != nil || len(page) != want || next != "" {
			t.Errorf("AuditTrail(cursor %q) = %d entries, next %q, %v; want %d", cursor, len(page), next, err, want)
		}
	}
	var all []visitor.AuditEntry
	cursor := ""
	for range 5 {
		page, next, err := e.svc.AuditTrail(e.ctx, audActor(e, "dpo"), "", cursor, 1)
		if err != nil {
			t.Fatalf("AuditTrail(cursor %q): %v", cursor, err)
		}
		all = append(all, page...)
		if cursor = next; cursor == "" {
			break
		}
	}
	if len(all) != 3 || all[0].NewRetention.Sessions != 40 || all[2].NewRetention.Sessions != 60 {
		t.Errorf("paged trail %+v, want the three changes newest first", all)
	}
}

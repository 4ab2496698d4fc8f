package redisstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/visitord/visitord/internal/visitor"
)

// stChat is a chat a test starts: of vkey ("" for a chat without identity),
// at an offset from the test's clock.
type stChat struct {
	id        string
	vkey      string
	at        time.Duration
	marketing bool
	email     string // the e-mail's blind-index hash, "" for none
	webhook   bool   // queue a chat.started delivery
}

// startChat starts c as the service does: it binds the chat through BindChat,
// then writes it through SaveChat, contacts sealed.
func (e stEnv) startChat(tb testing.TB, c stChat) visitor.ChatWrite {
	tb.Helper()
	at := e.now.Add(c.at)
	w := visitor.ChatWrite{Site: e.site, Retention: stRetention, ChatID: c.id, Start: at,
		URL: "https://shop.example/help", Marketing: c.marketing,
		Name:       e.sealer.Seal("shop", "name", c.id, "Ada "+c.id),
		Email:      e.sealer.Seal("shop", "email", c.id, "ada@mail.example"),
		Phone:      e.sealer.Seal("shop", "phone", c.id, "+49 30 1234"),
		EmailIndex: c.email}
	if c.vkey != "" {
		b, err := e.s.BindChat(e.ctx, e.site, c.vkey, at)
		if err != nil {
			tb.Fatalf("BindChat(%s): %v", c.vkey, err)
		}
		w.Binding, w.VisitorKey, w.VisitorID = b, c.vkey, stVidOf(c.vkey)
	}
	if c.marketing {
		w.MarketingRecord = &visitor.ConsentRecord{VisitorID: w.VisitorID, Time: at, Marketing: answered(true),
			PolicyVersion: "2026-11", TextSHA256: "ab12", Method: "chat_start", IP: stIP, UserAgent: "Firefox"}
	}
	if c.webhook {
		id := "d-" + c.id
		w.Webhook = &visitor.Delivery{ID: id, Event: visitor.EventChatStarted,
			Sealed: e.sealer.Seal("shop", "webhook", id, `{"event":"chat.started","chat_id":"`+c.id+`"}`)}
	}
	if err := e.s.SaveChat(e.ctx, w); err != nil {
		tb.Fatalf("SaveChat(%s): %v", c.id, err)
	}
	return w
}

// storedOf is the chat SaveChat should keep of w.
func storedOf(w visitor.ChatWrite) visitor.StoredChat {
	return visitor.StoredChat{ID: w.ChatID, VisitorID: w.VisitorID, VisitorKey: w.VisitorKey, Start: w.Start,
		SessionID: w.Binding.SessionID, URL: w.URL, Marketing: w.Marketing, Name: w.Name, Email: w.Email, Phone: w.Phone,
		Previous: w.Binding.Previous, Device: w.Binding.Device, Location: w.Binding.Location, Referrer: w.Binding.Referrer}
}

// BindChat binds a chat to the session current at its start (or to none) and
// to the visitor's earlier chats, oldest first; it refuses an erased visitor.
func TestBindChat(t *testing.T) {
	t.Parallel()
	open := visitor.ChatBinding{SessionID: "s1", Device: stDevice, Location: stLocation, Referrer: stReferrer}
	tests := []struct {
		name    string
		before  func(tb testing.TB, e stEnv)
		vkey    string
		at      time.Duration
		want    visitor.ChatBinding
		wantErr error
	}{
		{
			name: "a visitor without data binds nothing",
			vkey: stKeyA,
		},
		{
			name:   "an open session binds with what it observed",
			before: func(tb testing.TB, e stEnv) { e.pageview(tb, stKeyA, "s1", 0, "/a") },
			vkey:   stKeyA, at: 10 * time.Minute,
			want: open,
		},
		{
			name:   "a session session_timeout after its last activity still binds",
			before: func(tb testing.TB, e stEnv) { e.pageview(tb, stKeyA, "s1", 0, "/a") },
			vkey:   stKeyA, at: 30 * time.Minute,
			want: open,
		},
		{
			// DESIGN.md invariant 4: a chat is bound to the session current at its
			// start or to none; an ended session's device, location and referrer
			// are that earlier session's observations, not the chat's.
			name:   "a session past session_timeout binds nothing of it",
			before: func(tb testing.TB, e stEnv) { e.pageview(tb, stKeyA, "s1", 0, "/a") },
			vkey:   stKeyA, at: 30*time.Minute + time.Millisecond,
		},
		{
			name: "the session current at the start, not an earlier one",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyA, "s1", 0, "/a")
				e.pageview(tb, stKeyA, "s2", time.Hour, "/b")
			},
			vkey: stKeyA, at: time.Hour + time.Minute,
			want: visitor.ChatBinding{SessionID: "s2", Device: stDevice, Location: stLocation, Referrer: stReferrer},
		},
		{
			name: "earlier chats oldest first",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyA, "s1", 0, "/a")
				e.startChat(tb, stChat{id: "chatZ", vkey: stKeyA, at: time.Minute})
				e.startChat(tb, stChat{id: "chatA", vkey: stKeyA, at: 2 * time.Minute})
			},
			vkey: stKeyA, at: 3 * time.Minute,
			want: visitor.ChatBinding{SessionID: "s1", Previous: []string{"chatZ", "chatA"}, Device: stDevice,
				Location: stLocation, Referrer: stReferrer},
		},
		{
			name: "another visitor's session and chats are not bound",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyB, "s1", 0, "/a")
				e.startChat(tb, stChat{id: "chatB", vkey: stKeyB, at: time.Minute})
			},
			vkey: stKeyA, at: 2 * time.Minute,
		},
		{
			name: "an erased visitor is refused",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyA, "s1", 0, "/a")
				e.erase(tb, stKeyA, stVidA, "subjA")
			},
			vkey: stKeyA, at: time.Minute,
			wantErr: visitor.ErrErased,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if tc.before != nil {
				tc.before(t, e)
			}
			got, err := e.s.BindChat(e.ctx, e.site, tc.vkey, e.now.Add(tc.at))
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("BindChat error %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("binding (-want +got):\n%s", diff)
			}
		})
	}
}

// SaveChat writes a chat whole, with its visitor's chat index, its marketing
// consent record (and the flag of the choice in force), its e-mail's blind
// index entry and its queued chat.started delivery.
func TestSaveChat(t *testing.T) {
	t.Parallel()
	// marketingRecord is a chat-start opt-in read back: marketing alone asked.
	type record struct {
		VisitorID, Method string
		Analytics         *bool
		Marketing         *bool
	}
	tests := []struct {
		name   string
		before func(tb testing.TB, e stEnv)
		chats  []stChat
		// searches is the e-mail's subjects: visitor ids, then chat ids.
		visitors, anonymous []string
		records             []record // the visitor's, or the chat's without identity
		choice              *visitor.Choice
		queued              []string // ids of the deliveries due
		session             string   // the session the first chat is bound to
	}{
		{
			name:     "a visitor's chat is bound, indexed by e-mail and queued",
			before:   func(tb testing.TB, e stEnv) { e.pageview(tb, stKeyA, "s1", 0, "/a") },
			chats:    []stChat{{id: "chat1", vkey: stKeyA, at: 5 * time.Minute, email: "eh1", webhook: true}},
			visitors: []string{stVidA}, anonymous: []string{}, queued: []string{"d-chat1"}, session: "s1",
		},
		{
			name:     "a marketing opt-in writes its record, marketing alone",
			before:   func(tb testing.TB, e stEnv) { e.pageview(tb, stKeyA, "s1", 0, "/a") },
			chats:    []stChat{{id: "chat1", vkey: stKeyA, at: time.Minute, marketing: true}},
			visitors: []string{}, anonymous: []string{},
			records: []record{{VisitorID: stVidA, Method: "chat_start", Marketing: answered(true)}},
			session: "s1",
		},
		{
			name: "a marketing opt-in sets the flag of the choice in force",
			before: func(tb testing.TB, e stEnv) {
				e.grant(tb, stKeyA, stVidA, 0, time.Hour, "2026-11")
				e.withdrawMarketing(tb, stKeyA, time.Second)
			},
			chats:    []stChat{{id: "chat1", vkey: stKeyA, at: time.Minute, marketing: true}},
			visitors: []string{}, anonymous: []string{},
			records: []record{
				{VisitorID: stVidA, Method: "banner", Analytics: answered(true), Marketing: answered(true)},
				{VisitorID: stVidA, Method: "banner", Analytics: answered(true), Marketing: answered(false)},
				{VisitorID: stVidA, Method: "chat_start", Marketing: answered(true)},
			},
			choice: &visitor.Choice{Analytics: true, Marketing: true, PolicyVersion: "2026-11"},
		},
		{
			name: "a chat without marketing leaves the choice",
			before: func(tb testing.TB, e stEnv) {
				e.grant(tb, stKeyA, stVidA, 0, time.Hour, "2026-11")
				e.withdrawMarketing(tb, stKeyA, time.Second)
			},
			chats:    []stChat{{id: "chat1", vkey: stKeyA, at: time.Minute}},
			visitors: []string{}, anonymous: []string{},
			records: []record{
				{VisitorID: stVidA, Method: "banner", Analytics: answered(true), Marketing: answered(true)},
				{VisitorID: stVidA, Method: "banner", Analytics: answered(true), Marketing: answered(false)},
			},
			choice: &visitor.Choice{Analytics: true, Marketing: false, PolicyVersion: "2026-11"},
		},
		{
			name:      "a chat without identity is a subject of its own",
			chats:     []stChat{{id: "chat1", at: time.Minute, marketing: true, email: "eh1", webhook: true}},
			visitors:  []string{},
			anonymous: []string{"chat1"},
			records:   []record{{Method: "chat_start", Marketing: answered(true)}},
			queued:    []string{"d-chat1"},
		},
		{
			name:   "a later chat lists the earlier ones and shares the e-mail's entry",
			before: func(tb testing.TB, e stEnv) { e.pageview(tb, stKeyA, "s1", 0, "/a") },
			chats: []stChat{
				{id: "chat2", vkey: stKeyA, at: time.Minute, email: "eh1"},
				{id: "chat1", vkey: stKeyA, at: 2 * time.Minute, email: "eh1"},
			},
			visitors: []string{stVidA}, anonymous: []string{}, session: "s1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if tc.before != nil {
				tc.before(t, e)
			}
			var writes []visitor.ChatWrite
			for _, c := range tc.chats {
				writes = append(writes, e.startChat(t, c))
			}
			var previous []string
			for _, w := range writes {
				got, err := e.s.Chat(e.ctx, e.site, w.ChatID)
				if err != nil {
					t.Fatal(err)
				}
				want := storedOf(w)
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("Chat(%s) (-want +got):\n%s", w.ChatID, diff)
				}
				if w.VisitorKey != "" && !cmp.Equal(previous, w.Binding.Previous, cmpopts.EquateEmpty()) {
					t.Errorf("chat %s bound to earlier chats %v, want %v", w.ChatID, w.Binding.Previous, previous)
				}
				if w.ChatID == tc.chats[0].id && got.SessionID != tc.session {
					t.Errorf("chat %s bound to session %q, want %q", w.ChatID, got.SessionID, tc.session)
				}
				previous = append(previous, w.ChatID)
			}
			if email := tc.chats[0].email; email != "" {
				v, c, err := e.s.SearchEmail(e.ctx, e.site, email, e.now.Add(time.Hour))
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff([][]string{tc.visitors, tc.anonymous}, [][]string{v, c}); diff != "" {
					t.Errorf("SearchEmail (-want +got):\n%s", diff)
				}
			}
			var got []record
			if vkey := tc.chats[0].vkey; vkey != "" {
				d, err := e.s.VisitorData(e.ctx, e.site, vkey)
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, c := range d.Chats {
					ids = append(ids, c.ID)
				}
				if diff := cmp.Diff(previous, ids, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
					t.Errorf("VisitorData chats (-want +got):\n%s", diff)
				}
				for _, r := range d.Consents {
					got = append(got, record{r.VisitorID, r.Method, r.Analytics, r.Marketing})
				}
			} else {
				rs, err := e.s.ChatConsents(e.ctx, e.site, tc.chats[0].id)
				if err != nil {
					t.Fatal(err)
				}
				for _, r := range rs {
					got = append(got, record{r.VisitorID, r.Method, r.Analytics, r.Marketing})
				}
			}
			if diff := cmp.Diff(tc.records, got); diff != "" {
				t.Errorf("consent records (-want +got):\n%s", diff)
			}
			if tc.choice != nil {
				c, ok, err := e.s.ConsentChoice(e.ctx, e.site, stKeyA)
				if err != nil || !ok {
					t.Fatalf("ConsentChoice = %v, %v", ok, err)
				}
				if c.Analytics != tc.choice.Analytics || c.Marketing != tc.choice.Marketing || c.PolicyVersion != tc.choice.PolicyVersion {
					t.Errorf("choice %+v, want %+v", c, *tc.choice)
				}
			}
			due, err := NewWebhookQueue(e.s, e.sealer).Due(e.ctx, "shop", e.now.Add(time.Hour), 100, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			queued := []string{}
			for _, d := range due {
				if d.Err != nil || d.Event != visitor.EventChatStarted {
					t.Errorf("delivery %s: %s, %v; want chat.started, opened", d.ID, d.Event, d.Err)
				}
				queued = append(queued, d.ID)
			}
			if diff := cmp.Diff(tc.queued, queued, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("queued deliveries (-want +got):\n%s", diff)
			}
		})
	}
}

// Chat reads a stored chat by its id on its own site only, with the marketing
// permission as the visitor's withdrawals leave it.
func TestChat(t *testing.T) {
	t.Parallel()
	blog := &visitor.Site{ID: "blog", SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour, Retention: stRetention}
	tests := []struct {
		name          string
		before        func(tb testing.TB, e stEnv)
		site          *visitor.Site // the test's site when nil
		id            string
		wantErr       error
		wantMarketing bool
	}{
		{name: "an unknown chat is not found", id: "chatX", wantErr: visitor.ErrNotFound},
		{
			name:          "a visitor's opt-in reads back",
			before:        func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, marketing: true}) },
			id:            "chat1",
			wantMarketing: true,
		},
		{
			name: "a withdrawn opt-in reads false",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, marketing: true})
				e.withdrawMarketing(tb, stKeyA, time.Minute)
			},
			id: "chat1",
		},
		{
			name: "another visitor's withdrawal leaves the opt-in",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, marketing: true})
				e.startChat(tb, stChat{id: "chat2", vkey: stKeyB, marketing: true})
				e.withdrawMarketing(tb, stKeyB, time.Minute)
			},
			id:            "chat1",
			wantMarketing: true,
		},
		{
			name:          "an opt-in of a chat without identity reads back",
			before:        func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1", marketing: true}) },
			id:            "chat1",
			wantMarketing: true,
		},
		{
			name:    "another site's chat is not found",
			before:  func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, marketing: true}) },
			site:    blog,
			id:      "chat1",
			wantErr: visitor.ErrNotFound,
		},
		{
			name: "an erased chat is not found",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA})
				if err := e.s.Erase(e.ctx, e.site, visitor.Erasure{ChatID: "chat1", Subject: "subjC"}); err != nil {
					tb.Fatal(err)
				}
			},
			id:      "chat1",
			wantErr: visitor.ErrNotFound,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if tc.before != nil {
				tc.before(t, e)
			}
			site := e.site
			if tc.site != nil {
				site = tc.site
			}
			got, err := e.s.Chat(e.ctx, site, tc.id)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Chat error %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				return
			}
			if got.ID != tc.id || got.Marketing != tc.wantMarketing {
				t.Errorf("Chat = %+v, want %s with marketing %v", got, tc.id, tc.wantMarketing)
			}
		})
	}
}

// Trail returns the pages of one session of one visitor: a chat's trail is
// its bound session's, never a later session's.
func TestTrail(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		before func(tb testing.TB, e stEnv)
		vkey   string
		sid    string // "chat": the session chat1 is bound to
		want   []stPage
	}{
		{
			name: "a session's pages with the time on each, oldest first",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyA, "s1", 0, "/a")
				e.record(tb, stHit{at: 2 * time.Minute, url: "/b"})
				e.record(tb, stHit{at: 3 * time.Minute, url: "/c"})
			},
			vkey: stKeyA, sid: "s1",
			want: []stPage{{"/a", 2 * time.Minute}, {"/b", time.Minute}, {"/c", 0}},
		},
		{
			name: "a chat's trail stops at its session: a later session is never shown",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyA, "s1", 0, "/a")
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, at: time.Minute})
				e.pageview(tb, stKeyA, "s2", time.Hour, "/later")
				e.record(tb, stHit{at: time.Hour + time.Minute, url: "/later2"})
			},
			vkey: stKeyA, sid: "chat",
			want: []stPage{{"/a", 0}},
		},
		{
			name: "an earlier session is not a chat's",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyA, "s1", 0, "/earlier")
				e.pageview(tb, stKeyA, "s2", time.Hour, "/a")
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, at: time.Hour + time.Minute})
			},
			vkey: stKeyA, sid: "chat",
			want: []stPage{{"/a", 0}},
		},
		{
			name: "a chat started without a session is never bound to a later one",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA})
				e.pageview(tb, stKeyA, "s1", time.Minute, "/after")
			},
			vkey: stKeyA, sid: "chat",
		},
		{
			name:   "an unknown session has no pages",
			before: func(tb testing.TB, e stEnv) { e.pageview(tb, stKeyA, "s1", 0, "/a") },
			vkey:   stKeyA, sid: "s9",
		},
		{
			name:   "another visitor's session is not read",
			before: func(tb testing.TB, e stEnv) { e.pageview(tb, stKeyB, "s1", 0, "/a") },
			vkey:   stKeyA, sid: "s1",
		},
		{
			name: "a refused visitor's sessions are gone",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyA, "s1", 0, "/a")
				e.refuse(tb, stKeyA, time.Minute)
			},
			vkey: stKeyA, sid: "s1",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			tc.before(t, e)
			sid := tc.sid
			if sid == "chat" {
				c, err := e.s.Chat(e.ctx, e.site, "chat1")
				if err != nil {
					t.Fatal(err)
				}
				sid = c.SessionID
			}
			if diff := cmp.Diff(tc.want, e.trail(t, tc.vkey, sid), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Trail(%s) (-want +got):\n%s", sid, diff)
			}
		})
	}
}

// The chat methods answer ErrStoreUnavailable within a short deadline when
// Redis is down or hung.
func TestChatStoreUnavailable(t *testing.T) {
	t.Parallel()
	stRunUnavailable(t, []stCall{
		{name: "bind chat", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.BindChat(ctx, site, stKeyA, now)
			return err
		}},
		{name: "save chat", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			return s.SaveChat(ctx, visitor.ChatWrite{Site: site, Retention: stRetention, ChatID: "chat1", VisitorID: stVidA,
				VisitorKey: stKeyA, Start: now, URL: "https://shop.example/help"})
		}},
		{name: "chat", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.Chat(ctx, site, "chat1")
			return err
		}},
		{name: "trail", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.Trail(ctx, site, stKeyA, "s1")
			return err
		}},
	})
}

package redisstore

import (
	"context"
	"errors"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// chatsWindow is the chats retention of the tests' site.
const chatsWindow = 90 * 24 * time.Hour

// found is what SearchEmail answers: visitor ids, then ids of chats without identity.
type found struct{ Visitors, Chats []string }

func (e stEnv) search(tb testing.TB, hash string, at time.Duration) found {
	tb.Helper()
	v, c, err := e.s.SearchEmail(e.ctx, e.site, hash, e.now.Add(at))
	if err != nil {
		tb.Fatal(err)
	}
	if v == nil || c == nil {
		tb.Errorf("SearchEmail answered a nil list: %v, %v", v, c)
	}
	return found{v, c}
}

// eraseChat erases chat id under the keyed hash subject.
func (e stEnv) eraseChat(tb testing.TB, id, subject string) {
	tb.Helper()
	if err := e.s.Erase(e.ctx, e.site, visitor.Erasure{ChatID: id, Subject: subject}); err != nil {
		tb.Fatalf("erase chat %s: %v", id, err)
	}
}

// enqueueContact queues delivery id carrying vkey's contact details of chats.
func (e stEnv) enqueueContact(tb testing.TB, id, vkey string, chats ...string) visitor.Delivery {
	tb.Helper()
	d := visitor.Delivery{ID: id, Event: visitor.EventSubjectRectified, VisitorKey: vkey, ChatIDs: chats,
		Sealed: e.sealer.Seal("shop", "webhook", id, `{"event":"subject.rectified"}`)}
	if err := e.s.Enqueue(e.ctx, e.site, d, e.now); err != nil {
		tb.Fatal(err)
	}
	return d
}

// due returns the ids of the deliveries due within the hour, sorted.
func (e stEnv) due(tb testing.TB) []string {
	tb.Helper()
	ds, err := NewWebhookQueue(e.s, e.sealer).Due(e.ctx, "shop", e.now.Add(time.Hour), 100, time.Minute)
	if err != nil {
		tb.Fatal(err)
	}
	ids := []string{}
	for _, d := range ds {
		ids = append(ids, d.ID)
	}
	sort.Strings(ids)
	return ids
}

// SearchEmail finds the subjects behind an e-mail's blind index: visitor ids
// and chats without identity, within the chats window, of its own site only.
func TestSearchEmail(t *testing.T) {
	t.Parallel()
	none := found{[]string{}, []string{}}
	tests := []struct {
		name   string
		before func(tb testing.TB, e stEnv)
		hash   string
		at     time.Duration
		site   string // "shop" when empty
		want   found
	}{
		{name: "an unknown e-mail finds nothing", hash: "eh1", want: none},
		{
			name:   "a visitor's chat finds the visitor id",
			before: func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, email: "eh1"}) },
			hash:   "eh1", want: found{[]string{stVidA}, []string{}},
		},
		{
			name:   "a chat without identity finds the chat",
			before: func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1", email: "eh1"}) },
			hash:   "eh1", want: found{[]string{}, []string{"chat1"}},
		},
		{
			name: "every subject of the e-mail, each once",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, email: "eh1"})
				e.startChat(tb, stChat{id: "chat2", vkey: stKeyA, at: time.Minute, email: "eh1"})
				e.startChat(tb, stChat{id: "chat3", vkey: stKeyB, at: 2 * time.Minute, email: "eh1"})
				e.startChat(tb, stChat{id: "chat4", at: 3 * time.Minute, email: "eh1"})
			},
			hash: "eh1", want: found{[]string{stVidA, stVidB}, []string{"chat4"}},
		},
		{
			name:   "another e-mail's subjects are not found",
			before: func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, email: "eh2"}) },
			hash:   "eh1", want: none,
		},
		{
			name:   "an entry is found until the chats window ends",
			before: func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, email: "eh1"}) },
			hash:   "eh1", at: chatsWindow - time.Millisecond, want: found{[]string{stVidA}, []string{}},
		},
		{
			name:   "an entry past the chats window is trimmed",
			before: func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, email: "eh1"}) },
			hash:   "eh1", at: chatsWindow, want: none,
		},
		{
			name: "an erased visitor is not found",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, email: "eh1"})
				e.erase(tb, stKeyA, stVidA, "subjA")
			},
			hash: "eh1", want: none,
		},
		{
			name: "an erased chat is not found",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", email: "eh1"})
				e.eraseChat(tb, "chat1", "subjC")
			},
			hash: "eh1", want: none,
		},
		{
			name:   "another site's index is not read",
			before: func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, email: "eh1"}) },
			hash:   "eh1", site: "blog", want: none,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if tc.before != nil {
				tc.before(t, e)
			}
			if tc.site != "" {
				e.site = &visitor.Site{ID: tc.site, SessionTimeout: 30 * time.Minute, Retention: stRetention}
			}
			if diff := cmp.Diff(tc.want, e.search(t, tc.hash, tc.at)); diff != "" {
				t.Errorf("SearchEmail (-want +got):\n%s", diff)
			}
		})
	}
}

// VisitorData exports everything stored of a visitor (Art. 15): profile,
// sessions with every field they observed and their pages, choice, consent
// records and chats; nothing of another visitor; ErrErased after an erasure.
func TestVisitorData(t *testing.T) {
	t.Parallel()
	yes := answered(true)
	tests := []struct {
		name    string
		before  func(tb testing.TB, e stEnv)
		wantErr error
		want    func(e stEnv) visitor.VisitorData
		// whole compares every field; the other rows compare which chats and
		// records are kept.
		whole bool
	}{
		{name: "nothing stored", want: func(stEnv) visitor.VisitorData { return visitor.VisitorData{} }},
		{
			name:  "everything stored of the visitor",
			whole: true,
			before: func(tb testing.TB, e stEnv) {
				e.grant(tb, stKeyA, stVidA, 0, time.Hour, "2026-11")
				e.pageview(tb, stKeyA, "s1", time.Minute, "/a")
				e.record(tb, stHit{at: 3 * time.Minute, url: "/b"})
				e.record(tb, stHit{at: 4 * time.Minute, typ: visitor.HitLeave})
				e.pageview(tb, stKeyA, "s2", time.Hour, "/c")
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, at: time.Hour + time.Minute, marketing: true, email: "eh1"})
			},
			want: func(e stEnv) visitor.VisitorData {
				at := e.now.Add
				session := func(id string, start, last, cur time.Duration, url string, closed bool, pages ...visitor.PageVisit) visitor.SessionData {
					return visitor.SessionData{ID: id, Start: at(start), LastSeen: at(last), Referrer: stReferrer, Device: stDevice,
						Location: stLocation, IP: stIP, CurrentURL: "https://shop.example" + url, CurrentTitle: "T" + url,
						CurrentStart: at(cur), CurrentClosed: closed, PageViews: len(pages), Pages: pages}
				}
				page := func(url string, start, dur time.Duration) visitor.PageVisit {
					return visitor.PageVisit{URL: "https://shop.example" + url, Title: "T" + url, Start: at(start), Duration: dur}
				}
				grant := e.consentWrite(stKeyA, 0, true)
				grant.Choice.ValidUntil = at(time.Hour)
				chat := visitor.ConsentRecord{VisitorID: stVidA, Time: at(time.Hour + time.Minute), Marketing: yes,
					PolicyVersion: "2026-11", TextSHA256: "ab12", Method: "chat_start", IP: stIP, UserAgent: "Firefox"}
				return visitor.VisitorData{
					Profile: &visitor.Profile{VisitorID: stVidA, FirstSeen: at(time.Minute), LastSeen: at(time.Hour),
						Sessions: 2, CurrentSession: "s2"},
					Sessions: []visitor.SessionData{
						session("s1", time.Minute, 4*time.Minute, 3*time.Minute, "/b", true,
							page("/a", time.Minute, 2*time.Minute), page("/b", 3*time.Minute, time.Minute)),
						session("s2", time.Hour, time.Hour, time.Hour, "/c", false, page("/c", time.Hour, 0)),
					},
					Choice:   &grant.Choice,
					Consents: []visitor.ConsentRecord{grant.Record, chat},
					Chats: []visitor.StoredChat{{ID: "chat1", VisitorID: stVidA, VisitorKey: stKeyA, Start: at(time.Hour + time.Minute),
						SessionID: "s2", URL: "https://shop.example/help", Marketing: true,
						Name:   e.sealer.Seal("shop", "name", "chat1", "Ada chat1"),
						Email:  e.sealer.Seal("shop", "email", "chat1", "ada@mail.example"),
						Phone:  e.sealer.Seal("shop", "phone", "chat1", "+49 30 1234"),
						Device: stDevice, Location: stLocation, Referrer: stReferrer}},
				}
			},
		},
		{
			name: "a refused visitor keeps the choice, the records and the chats only",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyA, "s1", 0, "/a")
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, at: time.Minute})
				e.refuse(tb, stKeyA, 2*time.Minute)
			},
			want: func(e stEnv) visitor.VisitorData {
				w := e.consentWrite(stKeyA, 2*time.Minute, false)
				return visitor.VisitorData{Choice: &w.Choice, Consents: []visitor.ConsentRecord{w.Record},
					Chats: []visitor.StoredChat{{ID: "chat1"}}}
			},
		},
		{
			name: "a withdrawn opt-in exports as withdrawn",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, marketing: true})
				e.withdrawMarketing(tb, stKeyA, time.Minute)
			},
			want: func(e stEnv) visitor.VisitorData {
				w := e.withdrawal(stKeyA, time.Minute)
				return visitor.VisitorData{Choice: &w.Choice, Consents: []visitor.ConsentRecord{{}, w.Record},
					Chats: []visitor.StoredChat{{ID: "chat1", Marketing: false}}}
			},
		},
		{
			name: "another visitor's data is not exported",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyB, "s1", 0, "/a")
				e.grant(tb, stKeyB, stVidB, 0, time.Hour, "2026-11")
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyB, at: time.Minute})
			},
			want: func(stEnv) visitor.VisitorData { return visitor.VisitorData{} },
		},
		{
			name: "an erased visitor answers ErrErased",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyA, "s1", 0, "/a")
				e.grant(tb, stKeyA, stVidA, 0, time.Hour, "2026-11")
				e.erase(tb, stKeyA, stVidA, "subjA")
			},
			wantErr: visitor.ErrErased,
			want:    func(stEnv) visitor.VisitorData { return visitor.VisitorData{} },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if tc.before != nil {
				tc.before(t, e)
			}
			got, err := e.s.VisitorData(e.ctx, e.site, stKeyA)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("VisitorData error %v, want %v", err, tc.wantErr)
			}
			want := tc.want(e)
			opts := []cmp.Option{cmpopts.EquateEmpty()}
			if tc.whole {
				// Contacts are sealed with a random nonce: compared opened.
				opts = append(opts, cmpopts.AcyclicTransformer("open", func(c visitor.StoredChat) visitor.StoredChat {
					for field, v := range map[string]*string{"name": &c.Name, "email": &c.Email, "phone": &c.Phone} {
						if plain, err := e.sealer.Open("shop", field, c.ID, *v); err == nil {
							*v = plain
						}
					}
					return c
				}))
			} else {
				// Which chats and records are kept, not their fields.
				opts = append(opts,
					cmp.Transformer("chat", func(c visitor.StoredChat) [2]any { return [2]any{c.ID, c.Marketing} }),
					cmpopts.IgnoreSliceElements(func(r visitor.ConsentRecord) bool { return r.Method == "chat_start" || r.Method == "" }))
			}
			if diff := cmp.Diff(want, got, opts...); diff != "" {
				t.Errorf("VisitorData (-want +got):\n%s", diff)
			}
		})
	}
}

// ChatConsents returns the consent records of a chat without identity (a
// visitor's are the visitor's); an erased chat's are cut to proof elsewhere.
func TestChatConsents(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		before func(tb testing.TB, e stEnv)
		want   func(e stEnv) []visitor.ConsentRecord
	}{
		{name: "an unknown chat has none"},
		{
			name:   "a chat without identity keeps its opt-in record",
			before: func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1", at: time.Minute, marketing: true}) },
			want: func(e stEnv) []visitor.ConsentRecord {
				return []visitor.ConsentRecord{{Time: e.now.Add(time.Minute), Marketing: answered(true), PolicyVersion: "2026-11",
					TextSHA256: "ab12", Method: "chat_start", IP: stIP, UserAgent: "Firefox"}}
			},
		},
		{
			name:   "a chat without an opt-in has none",
			before: func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1"}) },
		},
		{
			name:   "a visitor's chat keeps its record with the visitor",
			before: func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, marketing: true}) },
		},
		{
			name: "an erased chat has none",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", marketing: true})
				e.eraseChat(tb, "chat1", "subjC")
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if tc.before != nil {
				tc.before(t, e)
			}
			got, err := e.s.ChatConsents(e.ctx, e.site, "chat1")
			if err != nil {
				t.Fatal(err)
			}
			var want []visitor.ConsentRecord
			if tc.want != nil {
				want = tc.want(e)
			}
			if diff := cmp.Diff(want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("ChatConsents (-want +got):\n%s", diff)
			}
		})
	}
}

// Rectify rewrites the sealed contact fields of the chats named, and moves the
// subject's blind-index entry to the new e-mail's: a search by the old e-mail
// no longer finds it. An erased chat is not brought back.
func TestRectify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		before func(tb testing.TB, e stEnv)
		r      func(e stEnv) visitor.Rectification
		// names is each chat's name after the rectification (opened), "" for a chat not found.
		names    map[string]string
		searches map[string]found
	}{
		{
			name: "a visitor's chats get the new name, the e-mail's entry stays",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, email: "eh1"})
				e.startChat(tb, stChat{id: "chat2", vkey: stKeyA, at: time.Minute, email: "eh1"})
			},
			r: func(e stEnv) visitor.Rectification {
				return visitor.Rectification{Member: "v:" + stVidA, VisitorKey: stKeyA, Chats: []visitor.RectifiedChat{
					{ChatID: "chat1", Fields: map[string]string{"name": e.sealer.Seal("shop", "name", "chat1", "Grace")}},
					{ChatID: "chat2", Fields: map[string]string{"name": e.sealer.Seal("shop", "name", "chat2", "Grace")}},
				}}
			},
			names:    map[string]string{"chat1": "Grace", "chat2": "Grace"},
			searches: map[string]found{"eh1": {[]string{stVidA}, []string{}}},
		},
		{
			name: "only the chats named change",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA})
				e.startChat(tb, stChat{id: "chat2", vkey: stKeyA, at: time.Minute})
			},
			r: func(e stEnv) visitor.Rectification {
				return visitor.Rectification{Member: "v:" + stVidA, VisitorKey: stKeyA, Chats: []visitor.RectifiedChat{
					{ChatID: "chat1", Fields: map[string]string{"name": e.sealer.Seal("shop", "name", "chat1", "Grace")}}}}
			},
			names: map[string]string{"chat1": "Grace", "chat2": "Ada chat2"},
		},
		{
			name: "a new e-mail moves the visitor's entry",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, email: "eh1"})
			},
			r: func(e stEnv) visitor.Rectification {
				return visitor.Rectification{Member: "v:" + stVidA, VisitorKey: stKeyA, NewIndex: "eh2", IndexUntil: e.now.Add(chatsWindow),
					Chats: []visitor.RectifiedChat{{ChatID: "chat1", Fields: map[string]string{
						"email": e.sealer.Seal("shop", "email", "chat1", "grace@mail.example")}}}}
			},
			names:    map[string]string{"chat1": "Ada chat1"},
			searches: map[string]found{"eh1": {[]string{}, []string{}}, "eh2": {[]string{stVidA}, []string{}}},
		},
		{
			name: "a new e-mail moves a chat without identity's entry",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", email: "eh1"})
			},
			r: func(e stEnv) visitor.Rectification {
				return visitor.Rectification{Member: "c:chat1", NewIndex: "eh2", IndexUntil: e.now.Add(chatsWindow),
					Chats: []visitor.RectifiedChat{{ChatID: "chat1", Fields: map[string]string{
						"email": e.sealer.Seal("shop", "email", "chat1", "grace@mail.example")}}}}
			},
			names:    map[string]string{"chat1": "Ada chat1"},
			searches: map[string]found{"eh1": {[]string{}, []string{}}, "eh2": {[]string{}, []string{"chat1"}}},
		},
		{
			name: "an erased chat is not brought back",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA})
				e.eraseChat(tb, "chat1", "subjC")
			},
			r: func(e stEnv) visitor.Rectification {
				return visitor.Rectification{Member: "v:" + stVidA, VisitorKey: stKeyA, Chats: []visitor.RectifiedChat{
					{ChatID: "chat1", Fields: map[string]string{"name": e.sealer.Seal("shop", "name", "chat1", "Grace")}}}}
			},
			names: map[string]string{"chat1": ""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			tc.before(t, e)
			if err := e.s.Rectify(e.ctx, e.site, tc.r(e)); err != nil {
				t.Fatal(err)
			}
			for id, want := range tc.names {
				c, err := e.s.Chat(e.ctx, e.site, id)
				if want == "" {
					if !errors.Is(err, visitor.ErrNotFound) {
						t.Errorf("Chat(%s) = %+v, %v; want ErrNotFound", id, c, err)
					}
					continue
				}
				if err != nil {
					t.Fatal(err)
				}
				name, err := e.sealer.Open("shop", "name", id, c.Name)
				if err != nil || name != want {
					t.Errorf("chat %s name %q, %v; want %q", id, name, err, want)
				}
				if email, err := e.sealer.Open("shop", "email", id, c.Email); err != nil || email == "" {
					t.Errorf("chat %s e-mail %q, %v; want it kept or rectified", id, email, err)
				}
			}
			for hash, want := range tc.searches {
				if diff := cmp.Diff(want, e.search(t, hash, 0)); diff != "" {
					t.Errorf("SearchEmail(%s) after rectifying (-want +got):\n%s", hash, diff)
				}
			}
		})
	}
}

// Erase removes everything of the subject (DESIGN.md invariant 6): its
// behaviour data, choice, chats, blind-index and live entries and queued
// deliveries with contact details; from then on the visitor is refused
// (tombstone). One chat's erasure leaves the visitor's other chats.
func TestErase(t *testing.T) {
	t.Parallel()
	none := found{[]string{}, []string{}}
	// everything gives visitor A data of every kind, and B a chat of its own.
	everything := func(tb testing.TB, e stEnv) {
		e.grant(tb, stKeyA, stVidA, 0, time.Hour, "2026-11")
		e.pageview(tb, stKeyA, "s1", time.Minute, "/secret-a")
		e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, at: 2 * time.Minute, marketing: true, email: "eh1", webhook: true})
		e.startChat(tb, stChat{id: "chat2", vkey: stKeyA, at: 3 * time.Minute, email: "eh2"})
		e.withdrawMarketing(tb, stKeyA, 4*time.Minute)
		e.enqueueContact(tb, "dRect", stKeyA, "chat1", "chat2")
		e.pageview(tb, stKeyB, "sB", time.Minute, "/b")
		e.startChat(tb, stChat{id: "chatB", vkey: stKeyB, at: 2 * time.Minute, email: "eh1", webhook: true})
	}
	tests := []struct {
		name     string
		before   func(tb testing.TB, e stEnv)
		erasures []visitor.Erasure
		// erased: visitor A is refused from now on.
		erased bool
		// gone and kept chats, read through Chat.
		gone, kept []string
		// visitorChats is what VisitorData lists of A's chats when not erased.
		visitorChats []string
		searches     map[string]found
		live         []string
		queued       []string // deliveries still due
		// absent are strings no key name or value may hold afterwards.
		absent []string
	}{
		{
			name:     "a visitor: everything of the subject goes, others' data stays",
			before:   everything,
			erasures: []visitor.Erasure{{VisitorKey: stKeyA, VisitorID: stVidA, Subject: "subjA"}},
			erased:   true,
			gone:     []string{"chat1", "chat2"},
			kept:     []string{"chatB"},
			searches: map[string]found{"eh1": {[]string{stVidB}, []string{}}, "eh2": none},
			live:     []string{"sB"},
			queued:   []string{"d-chatB"},
			absent:   []string{stVidA, "/secret-a", "dRect", "d-chat1", "chat1", "chat2", stIP + `"`},
		},
		{
			name:     "erasing twice is erasing once",
			before:   everything,
			erasures: []visitor.Erasure{{VisitorKey: stKeyA, VisitorID: stVidA, Subject: "subjA"}, {VisitorKey: stKeyA, VisitorID: stVidA, Subject: "subjA"}},
			erased:   true,
			gone:     []string{"chat1", "chat2"},
			kept:     []string{"chatB"},
			searches: map[string]found{"eh1": {[]string{stVidB}, []string{}}, "eh2": none},
			live:     []string{"sB"},
			queued:   []string{"d-chatB"},
			absent:   []string{stVidA, "/secret-a", "dRect", "d-chat1"},
		},
		{
			name:     "a visitor without data is refused from now on",
			erasures: []visitor.Erasure{{VisitorKey: stKeyA, VisitorID: stVidA, Subject: "subjA"}},
			erased:   true,
			live:     []string{},
			queued:   []string{},
			absent:   []string{stVidA},
		},
		{
			name: "a chat without identity is a subject of its own",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", at: time.Minute, marketing: true, email: "eh1", webhook: true})
				e.startChat(tb, stChat{id: "chat2", at: 2 * time.Minute, email: "eh1"})
			},
			erasures: []visitor.Erasure{{ChatID: "chat1", Subject: "subjC"}},
			gone:     []string{"chat1"},
			kept:     []string{"chat2"},
			searches: map[string]found{"eh1": {[]string{}, []string{"chat2"}}},
			live:     []string{},
			queued:   []string{},
			absent:   []string{"chat1"},
		},
		{
			name:         "one chat of a visitor: the visitor's other chat and data stay",
			before:       everything,
			erasures:     []visitor.Erasure{{ChatID: "chat1", Subject: "subjC"}},
			gone:         []string{"chat1"},
			kept:         []string{"chat2", "chatB"},
			visitorChats: []string{"chat2"},
			// No other chat of A gives eh1: a search by it no longer leads to A.
			searches: map[string]found{"eh1": {[]string{stVidB}, []string{}}, "eh2": {[]string{stVidA}, []string{}}},
			live:     []string{"sB", "s1"},
			queued:   []string{"d-chatB"},
			absent:   []string{"d-chat1", "dRect"},
		},
		{
			name: "one chat of a visitor whose other chat gives the same e-mail",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, email: "eh1"})
				e.startChat(tb, stChat{id: "chat2", vkey: stKeyA, at: time.Minute, email: "eh1"})
			},
			erasures:     []visitor.Erasure{{ChatID: "chat1", Subject: "subjC"}},
			gone:         []string{"chat1"},
			kept:         []string{"chat2"},
			visitorChats: []string{"chat2"},
			searches:     map[string]found{"eh1": {[]string{stVidA}, []string{}}},
			live:         []string{},
			queued:       []string{},
			absent:       []string{"d-chat1"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if tc.before != nil {
				tc.before(t, e)
			}
			for _, er := range tc.erasures {
				if err := e.s.Erase(e.ctx, e.site, er); err != nil {
					t.Fatal(err)
				}
			}
			// Invariant 6 over every key, before anything else writes: no key
			// name or value holds what pointed at the subject.
			for key, value := range redistest.DumpValues(t, e.c) {
				for _, s := range tc.absent {
					if strings.Contains(key, s) || strings.Contains(value, s) {
						t.Errorf("after the erasure, key %s still holds %q", key, s)
					}
				}
			}
			for _, id := range tc.gone {
				if c, err := e.s.Chat(e.ctx, e.site, id); !errors.Is(err, visitor.ErrNotFound) {
					t.Errorf("Chat(%s) = %+v, %v; want ErrNotFound", id, c, err)
				}
			}
			for _, id := range tc.kept {
				if _, err := e.s.Chat(e.ctx, e.site, id); err != nil {
					t.Errorf("Chat(%s): %v, want it kept", id, err)
				}
			}
			for hash, want := range tc.searches {
				if diff := cmp.Diff(want, e.search(t, hash, 5*time.Minute)); diff != "" {
					t.Errorf("SearchEmail(%s) (-want +got):\n%s", hash, diff)
				}
			}
			if diff := cmp.Diff(tc.live, e.live(t, 5*time.Minute), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("live sessions (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.queued, e.due(t), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("queued deliveries (-want +got):\n%s", diff)
			}
			if got, err := e.s.PendingErasures(e.ctx, e.site); err != nil || len(got) != 0 {
				t.Errorf("pending erasures %+v, %v; want none once finished", got, err)
			}
			if ids, err := e.s.OwedWithdrawals(e.ctx, e.site, stKeyA); err != nil ||
				slices.ContainsFunc(ids, func(id string) bool { return slices.Contains(tc.gone, id) }) {
				t.Errorf("owed withdrawals %v, %v; want no erased chat", ids, err)
			}
			if tc.erased {
				if ds, err := e.s.QueuedContacts(e.ctx, e.site, stKeyA); err != nil || len(ds) > 0 {
					t.Errorf("queued contacts %+v, %v; want none", ds, err)
				}
			}
			d, err := e.s.VisitorData(e.ctx, e.site, stKeyA)
			if !tc.erased {
				if err != nil {
					t.Fatal(err)
				}
				var ids []string
				for _, c := range d.Chats {
					ids = append(ids, c.ID)
				}
				if diff := cmp.Diff(tc.visitorChats, ids, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("VisitorData chats (-want +got):\n%s", diff)
				}
				return
			}
			// The visitor is refused from now on, by every write and read.
			if !errors.Is(err, visitor.ErrErased) {
				t.Errorf("VisitorData = %+v, %v; want ErrErased", d, err)
			}
			if c, ok, err := e.s.ConsentChoice(e.ctx, e.site, stKeyA); ok || err != nil {
				t.Errorf("ConsentChoice = %+v, %v, %v; want none", c, ok, err)
			}
			if _, err := e.s.BindChat(e.ctx, e.site, stKeyA, e.now.Add(5*time.Minute)); !errors.Is(err, visitor.ErrErased) {
				t.Errorf("BindChat: %v, want ErrErased", err)
			}
			if _, err := e.s.SaveConsent(e.ctx, e.consentWrite(stKeyA, 5*time.Minute, true)); !errors.Is(err, visitor.ErrErased) {
				t.Errorf("SaveConsent: %v, want ErrErased", err)
			}
			if out := e.record(t, stHit{at: 5 * time.Minute, url: "/again", sid: "s9"}); out != visitor.OutcomeErased {
				t.Errorf("RecordHit = %v, want OutcomeErased", out)
			}
		})
	}
}

// PendingErasures lists the erasures that still owe their audit entry and
// delivery, with what they owe; a finished erasure owing nothing is not
// listed; each site lists its own.
func TestPendingErasures(t *testing.T) {
	t.Parallel()
	owedV := visitor.Erasure{VisitorKey: stKeyA, VisitorID: stVidA, Subject: "subjA",
		Owed: &visitor.ErasureOwed{Actor: "dpo", ChatIDs: []string{"chat1", "chat2"}}}
	owedC := visitor.Erasure{ChatID: "chat3", Subject: "subjC", Owed: &visitor.ErasureOwed{Actor: "dpo", ChatIDs: []string{"chat3"}}}
	tests := []struct {
		name     string
		erasures []visitor.Erasure
		blog     bool // erase on the other site
		want     []visitor.Erasure
	}{
		{name: "none started"},
		{name: "a finished erasure owing nothing", erasures: []visitor.Erasure{{VisitorKey: stKeyA, VisitorID: stVidA, Subject: "subjA"}}},
		{name: "a visitor's erasure owing its entry", erasures: []visitor.Erasure{owedV}, want: []visitor.Erasure{owedV}},
		{name: "a chat's erasure owing its entry", erasures: []visitor.Erasure{owedC}, want: []visitor.Erasure{owedC}},
		{name: "several", erasures: []visitor.Erasure{owedV, owedC, {ChatID: "chat4", Subject: "subjD"}}, want: []visitor.Erasure{owedV, owedC}},
		{name: "another site's are its own", erasures: []visitor.Erasure{owedV}, blog: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			on := e.site
			if tc.blog {
				on = &visitor.Site{ID: "blog", SessionTimeout: 30 * time.Minute, Retention: stRetention}
			}
			for _, er := range tc.erasures {
				if err := e.s.Erase(e.ctx, on, er); err != nil {
					t.Fatal(err)
				}
			}
			got, err := e.s.PendingErasures(e.ctx, e.site)
			if err != nil {
				t.Fatal(err)
			}
			bySubject := cmpopts.SortSlices(func(a, b visitor.Erasure) bool { return a.Subject < b.Subject })
			if diff := cmp.Diff(tc.want, got, bySubject, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("PendingErasures (-want +got):\n%s", diff)
			}
		})
	}
}

// SettleErasure writes the audit entry an erasure owes once and takes it off
// the pending list; an erasure owing nothing writes no entry.
func TestSettleErasure(t *testing.T) {
	t.Parallel()
	owedV := visitor.Erasure{VisitorKey: stKeyA, VisitorID: stVidA, Subject: "subjA",
		Owed: &visitor.ErasureOwed{Actor: "dpo", ChatIDs: []string{"chat1"}}}
	owedC := visitor.Erasure{ChatID: "chat3", Subject: "subjC", Owed: &visitor.ErasureOwed{Actor: "dpo", ChatIDs: []string{"chat3"}}}
	tests := []struct {
		name     string
		erasures []visitor.Erasure
		settle   []visitor.Erasure // each settled twice, as a sweep racing the request does
		audited  []string          // targets of the audit entries, newest first
		pending  []string          // subjects still pending
	}{
		{name: "an owed erasure is audited once", erasures: []visitor.Erasure{owedV}, settle: []visitor.Erasure{owedV},
			audited: []string{"subjA"}},
		{name: "an erasure owing nothing writes no entry", erasures: []visitor.Erasure{{ChatID: "chat4", Subject: "subjD"}},
			settle: []visitor.Erasure{{ChatID: "chat4", Subject: "subjD"}}},
		{name: "settling one leaves the other pending", erasures: []visitor.Erasure{owedV, owedC}, settle: []visitor.Erasure{owedC},
			audited: []string{"subjC"}, pending: []string{"subjA"}},
		{name: "settling both", erasures: []visitor.Erasure{owedV, owedC}, settle: []visitor.Erasure{owedV, owedC},
			audited: []string{"subjC", "subjA"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			for _, er := range tc.erasures {
				if err := e.s.Erase(e.ctx, e.site, er); err != nil {
					t.Fatal(err)
				}
			}
			for i, er := range tc.settle {
				entry := visitor.AuditEntry{Time: e.now.Add(time.Duration(i) * time.Second), Count: 1, Actor: "dpo",
					Action: "subject.erase", Target: er.Subject}
				for range 2 {
					if err := e.s.SettleErasure(e.ctx, e.site, er, entry, stRetention); err != nil {
						t.Fatal(err)
					}
				}
			}
			log, _, err := e.s.AuditLog(e.ctx, e.site, "", 10)
			if err != nil {
				t.Fatal(err)
			}
			var audited []string
			for _, a := range log {
				if a.Actor != "dpo" || a.Action != "subject.erase" || a.Count != 1 {
					t.Errorf("audit entry %+v, want dpo's subject.erase counted once", a)
				}
				audited = append(audited, a.Target)
			}
			if diff := cmp.Diff(tc.audited, audited, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("audited (-want +got):\n%s", diff)
			}
			got, err := e.s.PendingErasures(e.ctx, e.site)
			if err != nil {
				t.Fatal(err)
			}
			var pending []string
			for _, p := range got {
				pending = append(pending, p.Subject)
			}
			if diff := cmp.Diff(tc.pending, pending, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("pending (-want +got):\n%s", diff)
			}
		})
	}
}

// QueuedContacts lists the queued deliveries that carry a visitor's contact
// details, sealed: not those of ids only, not another visitor's, not one that
// an erasure dropped or that was delivered.
func TestQueuedContacts(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		before func(tb testing.TB, e stEnv)
		want   []string // delivery ids
	}{
		{name: "none queued"},
		{
			name: "a delivery with the visitor's contact details",
			before: func(tb testing.TB, e stEnv) {
				e.enqueueContact(tb, "d1", stKeyA, "chat1")
				e.enqueueContact(tb, "d2", stKeyA, "chat1", "chat2")
			},
			want: []string{"d1", "d2"},
		},
		{
			name: "a delivery of ids only is not the visitor's",
			before: func(tb testing.TB, e stEnv) {
				d := visitor.Delivery{ID: "dIds", Event: visitor.EventSubjectErased,
					Sealed: e.sealer.Seal("shop", "webhook", "dIds", `{"event":"subject.erased"}`)}
				if err := e.s.Enqueue(e.ctx, e.site, d, e.now); err != nil {
					tb.Fatal(err)
				}
			},
		},
		{
			name:   "another visitor's delivery is not listed",
			before: func(tb testing.TB, e stEnv) { e.enqueueContact(tb, "dB", stKeyB, "chatB") },
		},
		{
			name: "erasing a chat drops the deliveries naming it",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA})
				e.startChat(tb, stChat{id: "chat2", vkey: stKeyA, at: time.Minute})
				e.enqueueContact(tb, "d1", stKeyA, "chat1")
				e.enqueueContact(tb, "d12", stKeyA, "chat1", "chat2")
				e.enqueueContact(tb, "d2", stKeyA, "chat2")
				e.eraseChat(tb, "chat1", "subjC")
			},
			want: []string{"d2"},
		},
		{
			name: "erasing the visitor drops them all",
			before: func(tb testing.TB, e stEnv) {
				e.enqueueContact(tb, "d1", stKeyA, "chat1")
				e.enqueueContact(tb, "d2", stKeyA, "chat2")
				e.erase(tb, stKeyA, stVidA, "subjA")
			},
		},
		{
			name: "a delivered one is left out",
			before: func(tb testing.TB, e stEnv) {
				e.enqueueContact(tb, "d1", stKeyA, "chat1")
				q := NewWebhookQueue(e.s, e.sealer)
				due, err := q.Due(e.ctx, "shop", e.now, 10, time.Minute)
				if err != nil || len(due) != 1 {
					tb.Fatalf("due %v, %v", due, err)
				}
				if err := q.Done(e.ctx, due[0]); err != nil {
					tb.Fatal(err)
				}
				e.enqueueContact(tb, "d2", stKeyA, "chat2")
			},
			want: []string{"d2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if tc.before != nil {
				tc.before(t, e)
			}
			got, err := e.s.QueuedContacts(e.ctx, e.site, stKeyA)
			if err != nil {
				t.Fatal(err)
			}
			ids := []string{}
			for _, d := range got {
				if d.VisitorKey != stKeyA || d.Event != visitor.EventSubjectRectified || len(d.ChatIDs) == 0 {
					t.Errorf("delivery %+v, want a subject.rectified of %s naming its chats", d, stKeyA)
				}
				if body, err := e.sealer.Open("shop", "webhook", d.ID, d.Sealed); err != nil || body == "" {
					t.Errorf("delivery %s does not open: %v", d.ID, err)
				}
				ids = append(ids, d.ID)
			}
			sort.Strings(ids)
			if diff := cmp.Diff(tc.want, ids, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("QueuedContacts (-want +got):\n%s", diff)
			}
		})
	}
}

// The privacy methods answer ErrStoreUnavailable within a short deadline when
// Redis is down or hung.
func TestPrivacyStoreUnavailable(t *testing.T) {
	t.Parallel()
	stRunUnavailable(t, []stCall{
		{name: "search email", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, _, err := s.SearchEmail(ctx, site, "eh1", now)
			return err
		}},
		{name: "visitor data", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.VisitorData(ctx, site, stKeyA)
			return err
		}},
		{name: "chat consents", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.ChatConsents(ctx, site, "chat1")
			return err
		}},
		{name: "rectify", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			return s.Rectify(ctx, site, visitor.Rectification{Member: "v:" + stVidA, VisitorKey: stKeyA, NewIndex: "eh2",
				IndexUntil: now.Add(chatsWindow), Chats: []visitor.RectifiedChat{{ChatID: "chat1", Fields: map[string]string{"name": "k1:x"}}}})
		}},
		{name: "erase", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			return s.Erase(ctx, site, visitor.Erasure{VisitorKey: stKeyA, VisitorID: stVidA, Subject: "subjA"})
		}},
		{name: "erase chat", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			return s.Erase(ctx, site, visitor.Erasure{ChatID: "chat1", Subject: "subjC"})
		}},
		{name: "pending erasures", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.PendingErasures(ctx, site)
			return err
		}},
		{name: "settle erasure", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			return s.SettleErasure(ctx, site, visitor.Erasure{ChatID: "chat1", Subject: "subjC"},
				visitor.AuditEntry{Time: now, Actor: "dpo", Action: "subject.erase", Target: "subjC"}, stRetention)
		}},
		{name: "queued contacts", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.QueuedContacts(ctx, site, stKeyA)
			return err
		}},
	})
}

// A hit within a session leaves the profile's w (its last TTL refresh) behind:
// the export's last-seen time is the visitor's last hit all the same, and w
// once the sessions are gone.
func TestVisitorDataLastSeen(t *testing.T) {
	t.Parallel()
	e := stStart(t)
	e.pageview(t, stKeyA, "s1", time.Minute, "/a")
	e.record(t, stHit{at: 3 * time.Minute, url: "/b"})
	e.record(t, stHit{at: 5 * time.Minute, typ: visitor.HitHeartbeat})
	k := keysOf(e.site.ID, stKeyA)
	if w := e.c.HGet(e.ctx, k.profile, "w").Val(); w != strconv.FormatInt(ms(e.now.Add(time.Minute)), 10) {
		t.Fatalf("profile's w %s, want the session's opening: the hits within the slack refresh nothing", w)
	}
	lastSeen := func() time.Time {
		t.Helper()
		d, err := e.s.VisitorData(e.ctx, e.site, stKeyA)
		if err != nil {
			t.Fatal(err)
		}
		if d.Profile == nil {
			t.Fatal("no profile")
		}
		return d.Profile.LastSeen
	}
	if got, want := lastSeen(), e.now.Add(5*time.Minute); !got.Equal(want) {
		t.Errorf("LastSeen %v, want the last hit's %v", got, want)
	}
	if err := e.c.Del(e.ctx, sessionKey(k.profile, "s1")).Err(); err != nil {
		t.Fatal(err)
	}
	if got, want := lastSeen(), e.now.Add(time.Minute); !got.Equal(want) {
		t.Errorf("LastSeen %v with the session gone, want the profile's w %v", got, want)
	}
}

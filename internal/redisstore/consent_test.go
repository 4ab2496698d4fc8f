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

// consentValid is how long a test's choices are valid (the site's consent_valid_days).
const consentValid = 180 * 24 * time.Hour

// withdrawMarketing saves vkey's withdrawal of marketing at at: analytics
// stays granted, every chat's opt-in is withdrawn. It returns the chats whose
// marketing.withdrawn is owed.
func (e stEnv) withdrawMarketing(tb testing.TB, vkey string, at time.Duration) []string {
	tb.Helper()
	ids, err := e.s.SaveConsent(e.ctx, e.withdrawal(vkey, at))
	if err != nil {
		tb.Fatalf("withdrawal of %s: %v", vkey, err)
	}
	return ids
}

func (e stEnv) withdrawal(vkey string, at time.Duration) visitor.ConsentWrite {
	t0 := e.now.Add(at)
	return visitor.ConsentWrite{Site: e.site, Retention: stRetention, VisitorKey: vkey,
		Record: visitor.ConsentRecord{VisitorID: stVidOf(vkey), Time: t0, Analytics: answered(true), Marketing: answered(false),
			PolicyVersion: "2026-11", TextSHA256: "ab12", Method: "banner", IP: stIP, UserAgent: "Firefox"},
		Choice:            visitor.Choice{Analytics: true, PolicyVersion: "2026-11", Given: t0, ValidUntil: t0.Add(consentValid)},
		WithdrawMarketing: true}
}

// consentWrite is a write of vkey's choice at at: a grant (analytics and
// marketing) or a refusal, which forgets behaviour data and is counted.
func (e stEnv) consentWrite(vkey string, at time.Duration, grant bool) visitor.ConsentWrite {
	t0 := e.now.Add(at)
	w := visitor.ConsentWrite{Site: e.site, Retention: stRetention, VisitorKey: vkey,
		Record: visitor.ConsentRecord{VisitorID: stVidOf(vkey), Time: t0, Analytics: answered(grant), Marketing: answered(grant),
			PolicyVersion: "2026-11", TextSHA256: "ab12", Method: "banner", IP: stIP, UserAgent: "Firefox"},
		Choice: visitor.Choice{Analytics: grant, Marketing: grant, PolicyVersion: "2026-11", Given: t0, ValidUntil: t0.Add(consentValid)}}
	if !grant {
		w.Forget, w.Count = true, visitor.ReasonRefusal
	}
	return w
}

// ConsentChoice reads back the visitor's latest choice, and nothing for a
// visitor without one.
func TestConsentChoice(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		before func(tb testing.TB, e stEnv)
		want   func(e stEnv) *visitor.Choice // nil: none stored
	}{
		{name: "no choice stored", want: func(stEnv) *visitor.Choice { return nil }},
		{
			name:   "a grant reads back as given",
			before: func(tb testing.TB, e stEnv) { e.grant(tb, stKeyA, stVidA, 0, time.Hour, "2026-11") },
			want: func(e stEnv) *visitor.Choice {
				return &visitor.Choice{Analytics: true, Marketing: true, PolicyVersion: "2026-11", Given: e.now, ValidUntil: e.now.Add(time.Hour)}
			},
		},
		{
			name:   "a refusal reads back as given",
			before: func(tb testing.TB, e stEnv) { e.refuse(tb, stKeyA, 0) },
			want: func(e stEnv) *visitor.Choice {
				return &visitor.Choice{PolicyVersion: "2026-11", Given: e.now, ValidUntil: e.now.Add(consentValid)}
			},
		},
		{
			name: "the latest choice replaces the earlier",
			before: func(tb testing.TB, e stEnv) {
				e.grant(tb, stKeyA, stVidA, 0, time.Hour, "2026-11")
				e.withdrawMarketing(tb, stKeyA, time.Minute)
			},
			want: func(e stEnv) *visitor.Choice {
				return &visitor.Choice{Analytics: true, PolicyVersion: "2026-11", Given: e.now.Add(time.Minute),
					ValidUntil: e.now.Add(time.Minute + consentValid)}
			},
		},
		{
			name:   "another visitor's choice is not read",
			before: func(tb testing.TB, e stEnv) { e.grant(tb, stKeyB, stVidB, 0, time.Hour, "2026-11") },
			want:   func(stEnv) *visitor.Choice { return nil },
		},
		{
			name: "an erased visitor has no choice",
			before: func(tb testing.TB, e stEnv) {
				e.grant(tb, stKeyA, stVidA, 0, time.Hour, "2026-11")
				e.erase(tb, stKeyA, stVidA, "subjA")
			},
			want: func(stEnv) *visitor.Choice { return nil },
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if tc.before != nil {
				tc.before(t, e)
			}
			c, ok, err := e.s.ConsentChoice(e.ctx, e.site, stKeyA)
			if err != nil {
				t.Fatal(err)
			}
			var got *visitor.Choice
			if ok {
				got = &c
			} else if c != (visitor.Choice{}) {
				t.Errorf("no choice, but %+v", c)
			}
			if diff := cmp.Diff(tc.want(e), got); diff != "" {
				t.Errorf("ConsentChoice (-want +got):\n%s", diff)
			}
		})
	}
}

// stRecord is what a test compares of a consent record read back.
type stRecord struct {
	VisitorID, Subject, Method, IP string
	Analytics, Marketing           *bool
	At                             time.Duration // after the test's clock
}

func (e stEnv) records(tb testing.TB, rs []visitor.ConsentRecord) []stRecord {
	tb.Helper()
	out := []stRecord{}
	for _, r := range rs {
		if r.PolicyVersion != "2026-11" || r.TextSHA256 != "ab12" {
			tb.Errorf("record %+v lost its policy version or text hash", r)
		}
		out = append(out, stRecord{r.VisitorID, r.Subject, r.Method, r.IP, r.Analytics, r.Marketing, r.Time.Sub(e.now)})
	}
	return out
}

// SaveConsent writes the choice and its record in one script: a refusal
// deletes the visitor's behaviour data and live entry at once and keeps the
// records as proof, a marketing withdrawal reaches every chat of the visitor,
// an erased visitor is refused, and an unchanged choice writes nothing.
func TestSaveConsent(t *testing.T) {
	t.Parallel()
	yes, no := answered(true), answered(false)
	grantRec := func(at time.Duration) stRecord { return stRecord{stVidA, "", "banner", stIP, yes, yes, at} }
	refusalRec := func(at time.Duration) stRecord { return stRecord{stVidA, "", "banner", stIP, no, no, at} }
	withdrawRec := func(at time.Duration) stRecord { return stRecord{stVidA, "", "banner", stIP, yes, no, at} }
	chatRec := func(at time.Duration) stRecord { return stRecord{stVidA, "", "chat_start", stIP, nil, yes, at} }
	tests := []struct {
		name      string
		before    func(tb testing.TB, e stEnv)
		write     func(e stEnv) visitor.ConsentWrite
		wantErr   error
		withdrawn []string
		choice    func(e stEnv) visitor.Choice
		records   []stRecord
		sessions  int             // behaviour data left: the visitor's sessions
		marketing map[string]bool // chat id → marketing read through Chat
		owed      []string
		stats     map[string]int64
		live      []string
	}{
		{
			name:      "a grant writes the choice and its record and keeps behaviour data",
			before:    func(tb testing.TB, e stEnv) { e.pageview(tb, stKeyA, "s1", 0, "/a") },
			write:     func(e stEnv) visitor.ConsentWrite { return e.consentWrite(stKeyA, time.Minute, true) },
			choice:    func(e stEnv) visitor.Choice { return e.consentWrite(stKeyA, time.Minute, true).Choice },
			records:   []stRecord{grantRec(time.Minute)},
			sessions:  1,
			stats:     map[string]int64{"tracked": 1},
			live:      []string{"s1"},
			withdrawn: nil,
		},
		{
			name: "a refusal deletes behaviour data and the live entry at once, keeping the records",
			before: func(tb testing.TB, e stEnv) {
				e.grant(tb, stKeyA, stVidA, 0, time.Hour, "2026-11")
				e.pageview(tb, stKeyA, "s1", time.Minute, "/a")
				e.pageview(tb, stKeyA, "s2", time.Hour, "/b")
			},
			write:   func(e stEnv) visitor.ConsentWrite { return e.consentWrite(stKeyA, time.Hour+time.Minute, false) },
			choice:  func(e stEnv) visitor.Choice { return e.consentWrite(stKeyA, time.Hour+time.Minute, false).Choice },
			records: []stRecord{grantRec(0), refusalRec(time.Hour + time.Minute)},
			stats:   map[string]int64{"tracked": 2, "refusal": 1},
			live:    []string{},
		},
		{
			name: "a refusal leaves another visitor's data",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyA, "s1", 0, "/a")
				e.pageview(tb, stKeyB, "sB", 0, "/a")
			},
			write:   func(e stEnv) visitor.ConsentWrite { return e.consentWrite(stKeyA, time.Minute, false) },
			choice:  func(e stEnv) visitor.Choice { return e.consentWrite(stKeyA, time.Minute, false).Choice },
			records: []stRecord{refusalRec(time.Minute)},
			stats:   map[string]int64{"tracked": 2, "refusal": 1},
			live:    []string{"sB"},
		},
		{
			name: "a marketing withdrawal reaches every chat of the visitor",
			before: func(tb testing.TB, e stEnv) {
				e.pageview(tb, stKeyA, "s1", 0, "/a")
				e.startChat(tb, stChat{id: "chatB", vkey: stKeyA, at: time.Minute, marketing: true})
				e.startChat(tb, stChat{id: "chatA", vkey: stKeyA, at: 2 * time.Minute, marketing: true})
				e.startChat(tb, stChat{id: "chatO", vkey: stKeyB, at: 2 * time.Minute, marketing: true})
			},
			write:     func(e stEnv) visitor.ConsentWrite { return e.withdrawal(stKeyA, 3*time.Minute) },
			withdrawn: []string{"chatA", "chatB"},
			choice:    func(e stEnv) visitor.Choice { return e.withdrawal(stKeyA, 3*time.Minute).Choice },
			records:   []stRecord{chatRec(time.Minute), chatRec(2 * time.Minute), withdrawRec(3 * time.Minute)},
			sessions:  1,
			marketing: map[string]bool{"chatA": false, "chatB": false, "chatO": true},
			owed:      []string{"chatA", "chatB"},
			stats:     map[string]int64{"tracked": 1},
			live:      []string{"s1"},
		},
		{
			name: "an erased visitor's consent is refused and writes nothing",
			before: func(tb testing.TB, e stEnv) {
				e.erase(tb, stKeyA, stVidA, "subjA")
			},
			write:   func(e stEnv) visitor.ConsentWrite { return e.consentWrite(stKeyA, time.Minute, true) },
			wantErr: visitor.ErrErased,
		},
		{
			name:   "an unchanged refusal writes nothing but is counted",
			before: func(tb testing.TB, e stEnv) { e.refuse(tb, stKeyA, 0) },
			write: func(e stEnv) visitor.ConsentWrite {
				w := e.consentWrite(stKeyA, time.Minute, false)
				w.UnlessChanged = true
				return w
			},
			wantErr: visitor.ErrUnchanged,
			choice:  func(e stEnv) visitor.Choice { return e.consentWrite(stKeyA, 0, false).Choice },
			records: []stRecord{refusalRec(0)},
			stats:   map[string]int64{"refusal": 2},
			live:    []string{},
		},
		{
			name:   "an unchanged choice that lapsed is written again",
			before: func(tb testing.TB, e stEnv) { e.grant(tb, stKeyA, stVidA, 0, time.Hour, "2026-11") },
			write: func(e stEnv) visitor.ConsentWrite {
				w := e.consentWrite(stKeyA, time.Hour, true)
				w.UnlessChanged = true
				return w
			},
			choice:  func(e stEnv) visitor.Choice { return e.consentWrite(stKeyA, time.Hour, true).Choice },
			records: []stRecord{grantRec(0), grantRec(time.Hour)},
			stats:   map[string]int64{},
			live:    []string{},
		},
		{
			name: "an unchanged choice still withdraws a chat not yet withdrawn",
			before: func(tb testing.TB, e stEnv) {
				// The chat comes before any choice, so it leaves the choice as it is.
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, marketing: true})
				if _, err := e.s.SaveConsent(e.ctx, e.withdrawal(stKeyA, time.Minute)); err != nil {
					tb.Fatal(err)
				}
				e.startChat(tb, stChat{id: "chat2", vkey: stKeyA, at: 2 * time.Minute})
			},
			write: func(e stEnv) visitor.ConsentWrite {
				w := e.withdrawal(stKeyA, 3*time.Minute)
				w.UnlessChanged = true
				return w
			},
			withdrawn: []string{"chat1", "chat2"},
			choice:    func(e stEnv) visitor.Choice { return e.withdrawal(stKeyA, 3*time.Minute).Choice },
			records:   []stRecord{chatRec(0), withdrawRec(time.Minute), withdrawRec(3 * time.Minute)},
			marketing: map[string]bool{"chat1": false, "chat2": false},
			owed:      []string{"chat1", "chat2"},
			stats:     map[string]int64{},
			live:      []string{},
		},
		{
			name:   "a GPC withdrawal is kept cut to the keyed hash",
			before: func(tb testing.TB, e stEnv) { e.pageview(tb, stKeyA, "s1", 0, "/a") },
			write: func(e stEnv) visitor.ConsentWrite {
				w := e.consentWrite(stKeyA, time.Minute, false)
				w.Record = visitor.ConsentRecord{Subject: "subjA", Time: e.now.Add(time.Minute), Analytics: answered(false),
					Marketing: answered(false), PolicyVersion: "2026-11", TextSHA256: "ab12", Method: "gpc"}
				w.Count = visitor.ReasonGPC
				return w
			},
			choice:  func(e stEnv) visitor.Choice { return e.consentWrite(stKeyA, time.Minute, false).Choice },
			records: []stRecord{{Subject: "subjA", Method: "gpc", Analytics: no, Marketing: no, At: time.Minute}},
			stats:   map[string]int64{"tracked": 1, "gpc": 1},
			live:    []string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if tc.before != nil {
				tc.before(t, e)
			}
			w := tc.write(e)
			withdrawn, err := e.s.SaveConsent(e.ctx, w)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("SaveConsent error %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.withdrawn, withdrawn, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("withdrawn chats (-want +got):\n%s", diff)
			}
			d, err := e.s.VisitorData(e.ctx, e.site, stKeyA)
			if errors.Is(tc.wantErr, visitor.ErrErased) {
				if !errors.Is(err, visitor.ErrErased) {
					t.Errorf("VisitorData = %+v, %v; want ErrErased", d, err)
				}
				if c, ok, err := e.s.ConsentChoice(e.ctx, e.site, stKeyA); ok || err != nil {
					t.Errorf("an erased visitor's choice %+v, %v, %v; want none", c, ok, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c, ok, err := e.s.ConsentChoice(e.ctx, e.site, stKeyA)
			if err != nil || !ok {
				t.Fatalf("ConsentChoice = %v, %v; want the choice", ok, err)
			}
			if diff := cmp.Diff(tc.choice(e), c); diff != "" {
				t.Errorf("choice (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.records, e.records(t, d.Consents)); diff != "" {
				t.Errorf("consent records (-want +got):\n%s", diff)
			}
			if got := len(d.Sessions); got != tc.sessions {
				t.Errorf("%d sessions left, want %d", got, tc.sessions)
			}
			if (d.Profile != nil) != (tc.sessions > 0) {
				t.Errorf("profile %+v left with %d sessions", d.Profile, tc.sessions)
			}
			for id, want := range tc.marketing {
				ch, err := e.s.Chat(e.ctx, e.site, id)
				if err != nil {
					t.Fatal(err)
				}
				if ch.Marketing != want {
					t.Errorf("chat %s marketing %v, want %v", id, ch.Marketing, want)
				}
			}
			for _, ch := range d.Chats {
				if want, ok := tc.marketing[ch.ID]; ok && ch.Marketing != want {
					t.Errorf("VisitorData chat %s marketing %v, want %v", ch.ID, ch.Marketing, want)
				}
			}
			owed, err := e.s.OwedWithdrawals(e.ctx, e.site, stKeyA)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.owed, owed, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("owed withdrawals (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.stats, e.stats(t)); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.live, e.live(t, w.Record.Time.Sub(e.now))); diff != "" {
				t.Errorf("live sessions (-want +got):\n%s", diff)
			}
		})
	}
}

// OwedWithdrawals lists, sorted, the chats a withdrawal reached whose
// marketing.withdrawn is not queued yet: of that visitor only.
func TestOwedWithdrawals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		before func(tb testing.TB, e stEnv)
		want   []string
	}{
		{
			name:   "none without a withdrawal",
			before: func(tb testing.TB, e stEnv) { e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, marketing: true}) },
		},
		{
			name: "a withdrawal owes each chat, sorted",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chatB", vkey: stKeyA, marketing: true})
				e.startChat(tb, stChat{id: "chatA", vkey: stKeyA, at: time.Minute, marketing: true})
				e.withdrawMarketing(tb, stKeyA, 2*time.Minute)
			},
			want: []string{"chatA", "chatB"},
		},
		{
			name: "a chat after the withdrawal is not owed",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, marketing: true})
				e.withdrawMarketing(tb, stKeyA, time.Minute)
				e.startChat(tb, stChat{id: "chat2", vkey: stKeyA, at: 2 * time.Minute, marketing: true})
			},
			want: []string{"chat1"},
		},
		{
			name: "another visitor's withdrawal is not listed",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, marketing: true})
				e.startChat(tb, stChat{id: "chat2", vkey: stKeyB, marketing: true})
				e.withdrawMarketing(tb, stKeyB, time.Minute)
			},
		},
		{
			name: "an erased chat is no longer owed",
			before: func(tb testing.TB, e stEnv) {
				e.startChat(tb, stChat{id: "chat1", vkey: stKeyA, marketing: true})
				e.startChat(tb, stChat{id: "chat2", vkey: stKeyA, marketing: true})
				e.withdrawMarketing(tb, stKeyA, time.Minute)
				if err := e.s.Erase(e.ctx, e.site, visitor.Erasure{ChatID: "chat1", Subject: "subjC"}); err != nil {
					tb.Fatal(err)
				}
			},
			want: []string{"chat2"},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			tc.before(t, e)
			got, err := e.s.OwedWithdrawals(e.ctx, e.site, stKeyA)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("OwedWithdrawals (-want +got):\n%s", diff)
			}
		})
	}
}

// SettleWithdrawals takes the chats whose marketing.withdrawn is queued out
// of the owed ones; a settled chat is not owed again by a repeated withdrawal.
func TestSettleWithdrawals(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name          string
		settle        []string
		againWithdraw bool // a repeated withdrawal after settling
		againOwes     []string
		want          []string
	}{
		{name: "settling one leaves the other", settle: []string{"chat1"}, want: []string{"chat2"}},
		{name: "settling all leaves none", settle: []string{"chat2", "chat1"}},
		{name: "settling nothing changes nothing", want: []string{"chat1", "chat2"}},
		{name: "settling an unknown chat changes nothing", settle: []string{"chatX"}, want: []string{"chat1", "chat2"}},
		{name: "a repeated withdrawal owes no settled chat", settle: []string{"chat1", "chat2"}, againWithdraw: true},
		{name: "a repeated withdrawal still owes the unsettled one", settle: []string{"chat1"}, againWithdraw: true,
			againOwes: []string{"chat2"}, want: []string{"chat2"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			e.startChat(t, stChat{id: "chat1", vkey: stKeyA, marketing: true})
			e.startChat(t, stChat{id: "chat2", vkey: stKeyA, at: time.Second, marketing: true})
			if got := e.withdrawMarketing(t, stKeyA, time.Minute); !cmp.Equal(got, []string{"chat1", "chat2"}) {
				t.Fatalf("withdrawal owes %v, want both chats", got)
			}
			if err := e.s.SettleWithdrawals(e.ctx, e.site, stKeyA, tc.settle); err != nil {
				t.Fatal(err)
			}
			if tc.againWithdraw {
				got := e.withdrawMarketing(t, stKeyA, 2*time.Minute)
				if diff := cmp.Diff(tc.againOwes, got, cmpopts.EquateEmpty()); diff != "" {
					t.Errorf("repeated withdrawal owes (-want +got):\n%s", diff)
				}
			}
			got, err := e.s.OwedWithdrawals(e.ctx, e.site, stKeyA)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("owed after settling (-want +got):\n%s", diff)
			}
		})
	}
}

// CountRefused adds to the site's per-day counter of a reason: each reason,
// day and site apart, read back through StatsDays.
func TestCountRefused(t *testing.T) {
	t.Parallel()
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	blog := &visitor.Site{ID: "blog", SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour, Retention: stRetention}
	type count struct {
		at     time.Time
		reason visitor.Reason
		blog   bool // on the other site
	}
	tests := []struct {
		name   string
		counts []count
		want   []map[string]int64 // of day, the day after
	}{
		{name: "nothing counted", want: []map[string]int64{{}, {}}},
		{
			name:   "repeats of a reason add up",
			counts: []count{{day.Add(time.Hour), visitor.ReasonDNT, false}, {day.Add(2 * time.Hour), visitor.ReasonDNT, false}, {day.Add(3 * time.Hour), visitor.ReasonDNT, false}},
			want:   []map[string]int64{{"dnt": 3}, {}},
		},
		{
			name: "each reason apart",
			counts: []count{{day, visitor.ReasonDNT, false}, {day, visitor.ReasonGPC, false}, {day, visitor.ReasonBot, false},
				{day, visitor.ReasonNoConsent, false}, {day, visitor.ReasonRefusal, false}, {day, visitor.ReasonGPC, false}},
			want: []map[string]int64{{"dnt": 1, "gpc": 2, "bot": 1, "no_consent": 1, "refusal": 1}, {}},
		},
		{
			name: "each UTC day apart, at its edges",
			counts: []count{{day, visitor.ReasonBot, false}, {day.Add(24*time.Hour - time.Millisecond), visitor.ReasonBot, false},
				{day.Add(24 * time.Hour), visitor.ReasonBot, false}},
			want: []map[string]int64{{"bot": 2}, {"bot": 1}},
		},
		{
			name:   "another site's counts are its own",
			counts: []count{{day, visitor.ReasonDNT, true}, {day, visitor.ReasonBot, false}},
			want:   []map[string]int64{{"bot": 1}, {}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			for _, c := range tc.counts {
				site := e.site
				if c.blog {
					site = blog
				}
				if err := e.s.CountRefused(e.ctx, site, c.at, c.reason); err != nil {
					t.Fatal(err)
				}
			}
			got, err := e.s.StatsDays(e.ctx, e.site, []time.Time{day, day.AddDate(0, 0, 1)})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("counters by day (-want +got):\n%s", diff)
			}
		})
	}
}

// The consent methods answer ErrStoreUnavailable within a short deadline when
// Redis is down or hung.
func TestConsentStoreUnavailable(t *testing.T) {
	t.Parallel()
	stRunUnavailable(t, []stCall{
		{name: "consent choice", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, _, err := s.ConsentChoice(ctx, site, stKeyA)
			return err
		}},
		{name: "save consent", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.SaveConsent(ctx, visitor.ConsentWrite{Site: site, Retention: stRetention, VisitorKey: stKeyA,
				Record: visitor.ConsentRecord{VisitorID: stVidA, Time: now, Analytics: answered(false), PolicyVersion: "2026-11", Method: "banner"},
				Choice: visitor.Choice{PolicyVersion: "2026-11", Given: now, ValidUntil: now.Add(consentValid)},
				Forget: true, Count: visitor.ReasonRefusal})
			return err
		}},
		{name: "owed withdrawals", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.OwedWithdrawals(ctx, site, stKeyA)
			return err
		}},
		{name: "settle withdrawals", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			return s.SettleWithdrawals(ctx, site, stKeyA, []string{"chat1"})
		}},
		{name: "count refused", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			return s.CountRefused(ctx, site, now, visitor.ReasonDNT)
		}},
	})
}

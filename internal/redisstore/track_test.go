package redisstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// The per-method tests of the store (track_test.go, consent_test.go,
// chat_test.go, operator_test.go, privacy_test.go) share the helpers below,
// named st…: each test has its own Redis, writes through the store's methods
// and reads back through its read methods only.

// stRetention is the retention of the per-method tests' site.
var stRetention = visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365}

// The visitors of the per-method tests.
const (
	stKeyA, stVidA = "vkA0000000000000", "vidA"
	stKeyB, stVidB = "vkB0000000000000", "vidB"
)

// stVidOf is the visitor id behind a test's vkey: "vkA000…" is "vidA".
func stVidOf(vkey string) string { return "vid" + vkey[2:3] }

// stDevice, stLocation, stIP and stReferrer are what every page view of the
// per-method tests observes.
var (
	stDevice   = visitor.Device{Browser: "Firefox", Version: "133.0", OS: "Linux", Mobile: true}
	stLocation = visitor.Location{Country: "DE", Region: "BE", City: "Berlin", TimeZone: "Europe/Berlin"}
)

const (
	stIP       = "192.0.2.0"
	stReferrer = "https://search.example"
)

// stEnv is a store over a Redis of its own. now is the test's pinned clock:
// every time a test writes is an offset from it. It is taken from the wall
// clock once, because Redis expires keys by its own clock.
type stEnv struct {
	s      *Store
	site   *visitor.Site
	sealer *visitor.Sealer
	ctx    context.Context
	now    time.Time
	// c is the store's client, for checks of an invariant over every key
	// (redistest.DumpValues), never to read a key by its name.
	c *redis.Client
}

// stStart starts a Redis for tb and a store over it; at cleanup it checks
// that every key written has a TTL (invariant 3).
func stStart(tb testing.TB) stEnv {
	tb.Helper()
	return stOn(tb, redistest.Start(tb).Client(tb))
}

// stOn is stStart over the client c of a Redis the test started.
func stOn(tb testing.TB, c *redis.Client) stEnv {
	tb.Helper()
	tb.Cleanup(func() {
		redistest.AssertAllKeysHaveTTL(tb, c, func(k string) bool { return strings.HasPrefix(k, "cfg:") })
	})
	site := &visitor.Site{ID: "shop", SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour,
		ConsentValidDays: 180, PolicyVersion: "2026-11", Retention: stRetention}
	sealer, err := visitor.NewSealer([]visitor.DataKey{{ID: "k1", Key: bytes.Repeat([]byte("d"), 32)}})
	if err != nil {
		tb.Fatal(err)
	}
	return stEnv{s: New(c, WithSites(site.ID)), site: site, sealer: sealer, ctx: context.Background(),
		now: time.Now().UTC().Truncate(time.Millisecond), c: c}
}

// stHit is one hit of a test, at an offset from the test's clock.
type stHit struct {
	at    time.Duration
	typ   visitor.HitType // pageview when empty
	url   string
	sid   string // the session the hit opens, if it opens one
	grant bool   // the hit requires an analytics grant
	first bool   // the visitor's first page view, its id minted for it (NewVisitor)
	vkey  string // stKeyA when empty
}

// record writes h through RecordHit and returns its outcome.
func (e stEnv) record(tb testing.TB, h stHit) visitor.HitOutcome {
	tb.Helper()
	out, err := e.s.RecordHit(e.ctx, e.hitWrite(h))
	if err != nil {
		tb.Fatalf("RecordHit(%+v): %v", h, err)
	}
	return out
}

func (e stEnv) hitWrite(h stHit) visitor.HitWrite {
	typ := h.typ
	if typ == "" {
		typ = visitor.HitPageview
	}
	vkey := h.vkey
	if vkey == "" {
		vkey = stKeyA
	}
	vid := stVidOf(vkey)
	w := visitor.HitWrite{Site: e.site, Retention: stRetention, VisitorID: vid, VisitorKey: vkey, Type: typ,
		Now: e.now.Add(h.at), NewSessionID: h.sid, RequireGrant: h.grant, NewVisitor: h.first}
	if typ == visitor.HitPageview {
		w.Page = visitor.Page{URL: "https://shop.example" + h.url, Title: "T" + h.url, Referrer: stReferrer}
		w.Device, w.Location, w.IP, w.Count = stDevice, stLocation, stIP, true
	}
	return w
}

// pageview records a page view that must open session sid: a new visitor's
// first (its id minted for it, NewVisitor) when the store holds no profile of
// vkey, else a returning visitor's.
func (e stEnv) pageview(tb testing.TB, vkey, sid string, at time.Duration, url string) {
	tb.Helper()
	d, err := e.s.VisitorData(e.ctx, e.site, vkey)
	if err != nil {
		tb.Fatalf("VisitorData(%s): %v", vkey, err)
	}
	if out := e.record(tb, stHit{at: at, url: url, sid: sid, first: d.Profile == nil, vkey: vkey}); out != visitor.OutcomeNewSession {
		tb.Fatalf("page view of %s at %v = %v, want a new session", vkey, at, out)
	}
}

// grant saves an analytics (and marketing) grant of vkey at at, valid for valid.
func (e stEnv) grant(tb testing.TB, vkey, vid string, at, valid time.Duration, policy string) {
	tb.Helper()
	t0 := e.now.Add(at)
	_, err := e.s.SaveConsent(e.ctx, visitor.ConsentWrite{Site: e.site, Retention: stRetention, VisitorKey: vkey,
		Record: visitor.ConsentRecord{VisitorID: vid, Time: t0, Analytics: answered(true), Marketing: answered(true),
			PolicyVersion: policy, TextSHA256: "ab12", Method: "banner", IP: stIP, UserAgent: "Firefox"},
		Choice: visitor.Choice{Analytics: true, Marketing: true, PolicyVersion: policy, Given: t0, ValidUntil: t0.Add(valid)}})
	if err != nil {
		tb.Fatalf("grant of %s: %v", vkey, err)
	}
}

// refuse saves a refusal of vkey at at, which forgets its behaviour data.
func (e stEnv) refuse(tb testing.TB, vkey string, at time.Duration) {
	tb.Helper()
	if _, err := e.s.SaveConsent(e.ctx, e.consentWrite(vkey, at, false)); err != nil {
		tb.Fatalf("refusal of %s: %v", vkey, err)
	}
}

// erase erases visitor vkey (vid) under the keyed hash subject.
func (e stEnv) erase(tb testing.TB, vkey, vid, subject string) {
	tb.Helper()
	if err := e.s.Erase(e.ctx, e.site, visitor.Erasure{VisitorKey: vkey, VisitorID: vid, Subject: subject}); err != nil {
		tb.Fatalf("erase %s: %v", vkey, err)
	}
}

// stats returns the site's counters summed over the three days from the test's
// clock (a test's hits may cross midnight), without zero counters (a counter
// taken back reads 0).
func (e stEnv) stats(tb testing.TB) map[string]int64 {
	tb.Helper()
	day := e.now.Truncate(24 * time.Hour)
	got, err := e.s.StatsDays(e.ctx, e.site, []time.Time{day, day.AddDate(0, 0, 1), day.AddDate(0, 0, 2)})
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]int64{}
	for _, m := range got {
		for k, n := range m {
			out[k] += n
		}
	}
	for k, n := range out {
		if n == 0 {
			delete(out, k)
		}
	}
	return out
}

// live returns the session ids of the live view at the test's clock plus at,
// within the last 5 minutes, most recent first.
func (e stEnv) live(tb testing.TB, at time.Duration) []string {
	tb.Helper()
	rows, _, err := e.s.Live(e.ctx, e.site, e.now.Add(at-5*time.Minute), visitor.LivePos{}, 200)
	if err != nil {
		tb.Fatal(err)
	}
	ids := []string{}
	for _, r := range rows {
		ids = append(ids, r.SessionID)
	}
	return ids
}

// stPage is what a test compares of a stored page: its URL path and the time
// on it.
type stPage struct {
	URL string
	Dur time.Duration
}

// trail returns a session's pages as stPages.
func (e stEnv) trail(tb testing.TB, vkey, sid string) []stPage {
	tb.Helper()
	pages, err := e.s.Trail(e.ctx, e.site, vkey, sid)
	if err != nil {
		tb.Fatal(err)
	}
	return stPages(pages)
}

func stPages(pages []visitor.PageVisit) []stPage {
	out := []stPage{}
	for _, p := range pages {
		out = append(out, stPage{URL: strings.TrimPrefix(p.URL, "https://shop.example"), Dur: p.Duration})
	}
	return out
}

// stCall is one store call of a TestXStoreUnavailable table.
type stCall struct {
	name string
	call func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error
}

// stUnavailableTimeout is the time budget of a call in the store-unavailable
// tests: short, as a page view's VISITORD_TRACK_TIMEOUT is.
const stUnavailableTimeout = 100 * time.Millisecond

// stUnavailableBound is how long such a call may take in all on a loaded
// machine: far below go-redis' own ReadTimeout (3 s), which a call that
// ignored its context's deadline would wait for.
const stUnavailableBound = time.Second

// stConnect starts a Redis of the test's own and a client of it built as the
// service builds one (Connect).
func stConnect(t *testing.T) (*redistest.Server, redis.UniversalClient) {
	t.Helper()
	rs := redistest.Start(t)
	c, err := Connect(rs.URL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return rs, c
}

// stRunUnavailable runs each call against a Redis that is stopped and against
// one that is up but answers nothing (CLIENT PAUSE ALL), each through a client
// built as the service builds it (Connect), and checks that it answers
// visitor.ErrStoreUnavailable within its context's short deadline.
func stRunUnavailable(t *testing.T, calls []stCall) {
	t.Helper()
	for _, state := range []string{"stopped", "hung"} {
		for _, tc := range calls {
			t.Run(state+"/"+tc.name, func(t *testing.T) {
				t.Parallel()
				rs, c := stConnect(t)
				switch state {
				case "stopped":
					rs.Stop()
				case "hung":
					// Longer than the test: the server's end at cleanup ends it,
					// before the client closes (its auto-pipeliner waits on a
					// batch the hung server holds).
					if err := rs.Client(t).Do(context.Background(), "CLIENT", "PAUSE", 60_000, "ALL").Err(); err != nil {
						t.Fatal(err)
					}
					t.Cleanup(rs.Kill)
				}
				site := &visitor.Site{ID: "shop", SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour,
					ConsentValidDays: 180, PolicyVersion: "2026-11", Retention: stRetention}
				ctx, cancel := context.WithTimeout(context.Background(), stUnavailableTimeout)
				defer cancel()
				start := time.Now()
				err := tc.call(ctx, New(c, WithSites(site.ID)), site, time.Now().UTC())
				took := time.Since(start)
				if !errors.Is(err, visitor.ErrStoreUnavailable) {
					t.Errorf("error %v, want visitor.ErrStoreUnavailable", err)
				}
				if took > stUnavailableBound {
					t.Errorf("took %v, want at most %v with a %v deadline", took, stUnavailableBound, stUnavailableTimeout)
				}
			})
		}
	}
}

// stProfile is what a test compares of a visitor's profile.
type stProfile struct {
	Sessions       int
	CurrentSession string
}

// everyNth returns n page views every step from 0 on, the first opening sid.
func everyNth(n int, step time.Duration, sid string) []stHit {
	out := make([]stHit, n)
	for i := range out {
		out[i] = stHit{at: time.Duration(i) * step, url: fmt.Sprintf("/p%d", i)}
	}
	out[0].sid, out[0].first = sid, true
	return out
}

// outcomes returns first, then n-1 times rest.
func outcomes(n int, first, rest visitor.HitOutcome) []visitor.HitOutcome {
	out := make([]visitor.HitOutcome, n)
	for i := range out {
		out[i] = rest
	}
	out[0] = first
	return out
}

// pagesOf returns the pages /p<from>…/p<to-1>, each dur long.
func pagesOf(from, to int, dur time.Duration) []stPage {
	var out []stPage
	for i := from; i < to; i++ {
		out = append(out, stPage{URL: fmt.Sprintf("/p%d", i), Dur: dur})
	}
	return out
}

// RecordHit against real Redis: sessions open, continue and close by the
// site's session_timeout and session_max, time on page is closed by the next
// hit and capped, a session stores at most MaxSessionPages pages, and the
// script refuses an erased visitor and a missing grant, taking back the index
// entries written on the expectation of a tracked hit. Everything is read back
// through VisitorData, Trail, Live and StatsDays.
func TestRecordHit(t *testing.T) {
	t.Parallel()
	const timeout = 30 * time.Minute // the site's session_timeout; its session_max is 4h
	P, H, L := visitor.HitPageview, visitor.HitHeartbeat, visitor.HitLeave
	New, Ok, NoSession, NoConsent, Erased := visitor.OutcomeNewSession, visitor.OutcomeTracked, visitor.OutcomeNoSession,
		visitor.OutcomeNoConsent, visitor.OutcomeErased
	// Every 25 minutes, within session_timeout, until past session_max.
	untilMax := append(everyNth(10, 25*time.Minute, "s1"), stHit{at: 250 * time.Minute, url: "/p10", sid: "s2"})
	capped := everyNth(MaxSessionPages+2, time.Second, "s1")
	tests := []struct {
		name    string
		before  func(tb testing.TB, e stEnv)
		hits    []stHit
		want    []visitor.HitOutcome
		profile *stProfile // nil: no profile stored
		trails  map[string][]stPage
		// pageViews is the current session's count of page views (past the cap too).
		pageViews int
		stats     map[string]int64
		live      []string // session ids, at the last hit
		erased    bool     // VisitorData answers ErrErased
	}{
		{
			name:    "first page view opens a session",
			hits:    []stHit{{url: "/a", sid: "s1", first: true}},
			want:    []visitor.HitOutcome{New},
			profile: &stProfile{1, "s1"}, trails: map[string][]stPage{"s1": {{"/a", 0}}}, pageViews: 1,
			stats: map[string]int64{"tracked": 1}, live: []string{"s1"},
		},
		{
			name:    "returning within session_timeout continues the session and closes the page",
			hits:    []stHit{{url: "/a", sid: "s1", first: true}, {at: 10 * time.Minute, url: "/b", sid: "s2"}},
			want:    []visitor.HitOutcome{New, Ok},
			profile: &stProfile{1, "s1"}, trails: map[string][]stPage{"s1": {{"/a", 10 * time.Minute}, {"/b", 0}}}, pageViews: 2,
			stats: map[string]int64{"tracked": 2}, live: []string{"s1"},
		},
		{
			name:    "returning exactly session_timeout later continues the session",
			hits:    []stHit{{url: "/a", sid: "s1", first: true}, {at: timeout, url: "/b", sid: "s2"}},
			want:    []visitor.HitOutcome{New, Ok},
			profile: &stProfile{1, "s1"}, trails: map[string][]stPage{"s1": {{"/a", timeout}, {"/b", 0}}}, pageViews: 2,
			stats: map[string]int64{"tracked": 2}, live: []string{"s1"},
		},
		{
			name:    "returning after session_timeout opens a new session",
			hits:    []stHit{{url: "/a", sid: "s1", first: true}, {at: timeout + time.Millisecond, url: "/b", sid: "s2"}},
			want:    []visitor.HitOutcome{New, New},
			profile: &stProfile{2, "s2"}, trails: map[string][]stPage{"s1": {{"/a", 0}}, "s2": {{"/b", 0}}}, pageViews: 1,
			stats: map[string]int64{"tracked": 2}, live: []string{"s2"},
		},
		{
			name:    "session_max opens a new session while the visitor stays active",
			hits:    untilMax,
			want:    append(outcomes(10, New, Ok), New),
			profile: &stProfile{2, "s2"},
			trails:  map[string][]stPage{"s1": pagesOf(0, 10, 25*time.Minute), "s2": {{"/p10", 0}}}, pageViews: 1,
			stats: map[string]int64{"tracked": 11}, live: []string{"s2"},
		},
		{
			name:    "a session stores MaxSessionPages pages and counts the later ones",
			hits:    capped,
			want:    outcomes(MaxSessionPages+2, New, Ok),
			profile: &stProfile{1, "s1"},
			trails:  map[string][]stPage{"s1": pagesOf(0, MaxSessionPages, time.Second)}, pageViews: MaxSessionPages + 2,
			stats: map[string]int64{"tracked": MaxSessionPages + 2}, live: []string{"s1"},
		},
		{
			name:    "a heartbeat closes the time on the current page and is not counted",
			hits:    []stHit{{url: "/a", sid: "s1", first: true}, {at: 20 * time.Minute, typ: H}},
			want:    []visitor.HitOutcome{New, Ok},
			profile: &stProfile{1, "s1"}, trails: map[string][]stPage{"s1": {{"/a", 20 * time.Minute}}}, pageViews: 1,
			stats: map[string]int64{"tracked": 1}, live: []string{"s1"},
		},
		{
			name: "time on a page is capped at session_timeout",
			hits: []stHit{{url: "/a", sid: "s1", first: true}, {at: 25 * time.Minute, typ: H}, {at: 50 * time.Minute, typ: H}},
			want: []visitor.HitOutcome{New, Ok, Ok},
			// The second heartbeat is within session_timeout of the first, but the
			// page has been open for 50 minutes.
			profile: &stProfile{1, "s1"}, trails: map[string][]stPage{"s1": {{"/a", timeout}}}, pageViews: 1,
			stats: map[string]int64{"tracked": 1}, live: []string{"s1"},
		},
		{
			name:    "a leave closes the page and the next page view does not reopen its time",
			hits:    []stHit{{url: "/a", sid: "s1", first: true}, {at: 5 * time.Minute, typ: L}, {at: 8 * time.Minute, typ: P, url: "/b"}},
			want:    []visitor.HitOutcome{New, Ok, Ok},
			profile: &stProfile{1, "s1"}, trails: map[string][]stPage{"s1": {{"/a", 5 * time.Minute}, {"/b", 0}}}, pageViews: 2,
			stats: map[string]int64{"tracked": 2}, live: []string{"s1"},
		},
		{
			name:  "a heartbeat without a session creates nothing",
			hits:  []stHit{{typ: H}, {at: time.Second, typ: L}},
			want:  []visitor.HitOutcome{NoSession, NoSession},
			stats: map[string]int64{}, live: []string{},
		},
		{
			name:    "a heartbeat after session_timeout has no session",
			hits:    []stHit{{url: "/a", sid: "s1", first: true}, {at: timeout + time.Second, typ: H}},
			want:    []visitor.HitOutcome{New, NoSession},
			profile: &stProfile{1, "s1"}, trails: map[string][]stPage{"s1": {{"/a", 0}}}, pageViews: 1,
			stats: map[string]int64{"tracked": 1}, live: []string{},
		},
		{
			name:   "an erased visitor is refused and its index entries are taken back",
			before: func(tb testing.TB, e stEnv) { e.erase(tb, stKeyA, stVidA, "subjA") },
			hits:   []stHit{{url: "/a", sid: "s1"}, {at: time.Minute, url: "/b", sid: "s2"}},
			want:   []visitor.HitOutcome{Erased, Erased},
			erased: true, stats: map[string]int64{}, live: []string{},
		},
		{
			name:  "a grant required and missing is refused and counted as no_consent",
			hits:  []stHit{{url: "/a", sid: "s1", grant: true, first: true}},
			want:  []visitor.HitOutcome{NoConsent},
			stats: map[string]int64{"no_consent": 1}, live: []string{},
		},
		{
			name:    "a grant required and given is tracked",
			before:  func(tb testing.TB, e stEnv) { e.grant(tb, stKeyA, stVidA, -time.Minute, time.Hour, "2026-11") },
			hits:    []stHit{{url: "/a", sid: "s1", grant: true}},
			want:    []visitor.HitOutcome{New},
			profile: &stProfile{1, "s1"}, trails: map[string][]stPage{"s1": {{"/a", 0}}}, pageViews: 1,
			stats: map[string]int64{"tracked": 1}, live: []string{"s1"},
		},
		{
			name:   "a grant of another policy version is no grant",
			before: func(tb testing.TB, e stEnv) { e.grant(tb, stKeyA, stVidA, -time.Minute, time.Hour, "2026-10") },
			hits:   []stHit{{url: "/a", sid: "s1", grant: true}},
			want:   []visitor.HitOutcome{NoConsent},
			stats:  map[string]int64{"no_consent": 1}, live: []string{},
		},
		{
			name:   "a lapsed grant is no grant",
			before: func(tb testing.TB, e stEnv) { e.grant(tb, stKeyA, stVidA, 0, time.Hour, "2026-11") },
			hits:   []stHit{{at: time.Hour, url: "/a", sid: "s1", grant: true}},
			want:   []visitor.HitOutcome{NoConsent},
			stats:  map[string]int64{"no_consent": 1}, live: []string{},
		},
		{
			name:   "a refusal stands where no grant is required (opt-out)",
			before: func(tb testing.TB, e stEnv) { e.refuse(tb, stKeyA, -time.Minute) },
			hits:   []stHit{{url: "/a", sid: "s1"}, {at: time.Minute, typ: H}},
			want:   []visitor.HitOutcome{NoConsent, NoConsent},
			// The refusal's own count, then the refused page view; the heartbeat counts nothing.
			stats: map[string]int64{"refusal": 1, "no_consent": 1}, live: []string{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if tc.before != nil {
				tc.before(t, e)
			}
			var got []visitor.HitOutcome
			for _, h := range tc.hits {
				got = append(got, e.record(t, h))
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("outcomes (-want +got):\n%s", diff)
			}
			d, err := e.s.VisitorData(e.ctx, e.site, stKeyA)
			if tc.erased {
				if !errors.Is(err, visitor.ErrErased) {
					t.Errorf("VisitorData = %+v, %v; want ErrErased", d, err)
				}
			} else if err != nil {
				t.Fatal(err)
			}
			var profile *stProfile
			if d.Profile != nil {
				profile = &stProfile{d.Profile.Sessions, d.Profile.CurrentSession}
				if want := e.now.Add(tc.hits[0].at); !d.Profile.FirstSeen.Equal(want) {
					t.Errorf("first seen %v, want %v", d.Profile.FirstSeen, want)
				}
				if d.Profile.VisitorID != stVidA {
					t.Errorf("profile visitor id %q, want %q", d.Profile.VisitorID, stVidA)
				}
			}
			if diff := cmp.Diff(tc.profile, profile); diff != "" {
				t.Errorf("profile (-want +got):\n%s", diff)
			}
			trails := map[string][]stPage{}
			for _, sd := range d.Sessions {
				trails[sd.ID] = e.trail(t, stKeyA, sd.ID)
				if diff := cmp.Diff(stPages(sd.Pages), trails[sd.ID]); diff != "" {
					t.Errorf("session %s: VisitorData and Trail differ (-export +trail):\n%s", sd.ID, diff)
				}
				if sd.Device != stDevice || sd.Location != stLocation || sd.IP != stIP || sd.Referrer != stReferrer {
					t.Errorf("session %s observed %+v %+v %q %q, want the page view's device, location, IP and referrer",
						sd.ID, sd.Device, sd.Location, sd.IP, sd.Referrer)
				}
				if profile != nil && sd.ID == profile.CurrentSession && sd.PageViews != tc.pageViews {
					t.Errorf("current session's page views %d, want %d", sd.PageViews, tc.pageViews)
				}
			}
			if tc.trails == nil {
				tc.trails = map[string][]stPage{}
			}
			if diff := cmp.Diff(tc.trails, trails); diff != "" {
				t.Errorf("trails (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.stats, e.stats(t)); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.live, e.live(t, tc.hits[len(tc.hits)-1].at)); diff != "" {
				t.Errorf("live sessions (-want +got):\n%s", diff)
			}
		})
	}
}

// RecordHit answers ErrStoreUnavailable within its short deadline when Redis
// is down or hung: a page view is best effort.
func TestTrackStoreUnavailable(t *testing.T) {
	t.Parallel()
	stRunUnavailable(t, []stCall{
		{name: "record hit", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.RecordHit(ctx, visitor.HitWrite{Site: site, Retention: stRetention, VisitorID: stVidA, VisitorKey: stKeyA,
				Type: visitor.HitPageview, Now: now, Page: visitor.Page{URL: "https://shop.example/a"}, NewSessionID: "s1",
				Count: true, NewVisitor: true})
			return err
		}},
	})
}

// A minted id's hit (NewVisitor: drawn for this hit) reads nothing: it must
// store what the reading path stores for a visitor without any data, and
// refuse what that path refuses.
func TestRecordHitMintedWritesAsTheReadingPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		grant bool // a grant is stored with the id before its hit (a chat start)
		hit   stHit
		want  visitor.HitOutcome
	}{
		{name: "page view opens the first session", hit: stHit{url: "/a?utm_source=x", sid: "s1"}, want: visitor.OutcomeNewSession},
		{name: "heartbeat finds no session", hit: stHit{typ: visitor.HitHeartbeat}, want: visitor.OutcomeNoSession},
		{name: "leave finds no session", hit: stHit{typ: visitor.HitLeave}, want: visitor.OutcomeNoSession},
		{name: "a grant required is missing", hit: stHit{url: "/a", sid: "s1", grant: true}, want: visitor.OutcomeNoConsent},
		{name: "a grant required was stored with the id", grant: true, hit: stHit{url: "/a", sid: "s1", grant: true},
			want: visitor.OutcomeNewSession},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if tc.grant {
				e.grant(t, stKeyA, stVidA, -time.Second, time.Hour, "2026-11")
				e.grant(t, stKeyB, stVidB, -time.Second, time.Hour, "2026-11")
			}
			minted, read := tc.hit, tc.hit
			minted.vkey, minted.first = stKeyA, true
			read.vkey = stKeyB
			if got := e.record(t, minted); got != tc.want {
				t.Errorf("minted id's outcome %v, want %v", got, tc.want)
			}
			if got := e.record(t, read); got != tc.want {
				t.Errorf("reading path's outcome %v, want %v", got, tc.want)
			}
			a, err := e.s.VisitorData(e.ctx, e.site, stKeyA)
			if err != nil {
				t.Fatal(err)
			}
			b, err := e.s.VisitorData(e.ctx, e.site, stKeyB)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(b, a, cmpopts.IgnoreFields(visitor.Profile{}, "VisitorID"), cmpopts.IgnoreFields(visitor.ConsentRecord{}, "VisitorID")); diff != "" {
				t.Errorf("minted id's data (-reading path +minted):\n%s", diff)
			}
			if a.Profile != nil && a.Profile.VisitorID != stVidA {
				t.Errorf("minted profile's visitor id %q, want %q", a.Profile.VisitorID, stVidA)
			}
			// Both entered the subject index alike (the reading path by the
			// raise it asks for).
			if tc.want == visitor.OutcomeNewSession {
				sa, sb := e.c.ZScore(e.ctx, subjectsKey("shop"), stKeyA).Val(), e.c.ZScore(e.ctx, subjectsKey("shop"), stKeyB).Val()
				if sa == 0 || sa != sb {
					t.Errorf("subject-index scores %v (minted), %v (reading path): want equal, set", sa, sb)
				}
			}
		})
	}
}

// A hit within a session refreshes the visitor's TTLs only when they were last
// refreshed (the profile's w) more than the slack ago, and then writes w; a hit
// that opens a session refreshes them always. No key is ever short of its window
// (from the last write) by more than the slack.
func TestRecordHitRefreshesTTLsPastTheSlack(t *testing.T) {
	t.Parallel()
	sessions, profiles := days(stRetention.Sessions), days(stRetention.Profiles)
	slack := ttlSlackOf(stRetention)
	for _, tc := range []struct {
		name string
		// aged is how far short of their windows the visitor's TTLs are
		// before the hit (as if the last refresh were that long ago).
		aged time.Duration
		hit  stHit
		sid  string // the session current after the hit
		// lowIndex makes the visitor's subject-index entry end before its
		// data would: the hit must raise it.
		lowIndex  bool
		refreshed bool
	}{
		{name: "a page within the slack", aged: slack / 2, hit: stHit{at: time.Minute, url: "/b"}, sid: "s1"},
		{name: "a page past the slack", aged: 2 * slack, hit: stHit{at: time.Minute, url: "/b"}, sid: "s1", refreshed: true},
		{name: "a heartbeat within the slack", aged: slack / 2, hit: stHit{at: time.Minute, typ: visitor.HitHeartbeat}, sid: "s1"},
		{name: "a leave past the slack", aged: 2 * slack, hit: stHit{at: time.Minute, typ: visitor.HitLeave}, sid: "s1", refreshed: true},
		{name: "a page raising the subject-index entry within the slack", aged: slack / 2, hit: stHit{at: time.Minute, url: "/b"}, sid: "s1",
			lowIndex: true, refreshed: true},
		{name: "a page opening a session within the slack", aged: slack / 2, hit: stHit{at: time.Hour, url: "/b", sid: "s2"}, sid: "s2",
			refreshed: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			e.pageview(t, stKeyA, "s1", 0, "/a")
			k := keysOf(e.site.ID, stKeyA)
			for key, window := range map[string]time.Duration{k.profile: profiles, k.sessions: profiles,
				sessionKey(k.profile, "s1"): sessions} {
				if err := e.c.PExpire(e.ctx, key, window-tc.aged).Err(); err != nil {
					t.Fatal(err)
				}
			}
			// The profile's w tells the script when the TTLs were refreshed.
			if err := e.c.HSet(e.ctx, k.profile, "w", ms(e.now.Add(-tc.aged))).Err(); err != nil {
				t.Fatal(err)
			}
			if tc.lowIndex {
				if err := e.c.HSet(e.ctx, k.profile, "ix", ms(e.now.Add(profiles/2))).Err(); err != nil {
					t.Fatal(err)
				}
			}
			e.record(t, tc.hit)
			want := map[string]time.Duration{k.profile: profiles, sessionKey(k.profile, tc.sid): sessions}
			// The session index names the earlier sessions: it exists once a
			// session replaced s1.
			if tc.sid != "s1" {
				want[k.sessions] = profiles
			} else if n := e.c.Exists(e.ctx, k.sessions).Val(); n != 0 {
				t.Errorf("%s exists with one session, want no session index", k.sessions)
			}
			wantW := ms(e.now.Add(-tc.aged))
			if tc.refreshed {
				wantW = ms(e.now.Add(tc.hit.at))
			}
			if w, err := e.c.HGet(e.ctx, k.profile, "w").Int64(); err != nil || w != wantW {
				t.Errorf("profile's w %d (%v), want %d: the time of the last refresh", w, err, wantW)
			}
			for key, window := range want {
				ttl, err := e.c.PTTL(e.ctx, key).Result()
				if err != nil {
					t.Fatal(err)
				}
				switch short := window - ttl; {
				case tc.refreshed && short > time.Minute:
					t.Errorf("%s: TTL %v short of its window %v by %v, want it refreshed", key, ttl, window, short)
				case !tc.refreshed && (short < tc.aged || short > tc.aged+time.Minute):
					t.Errorf("%s: TTL %v short of its window %v by %v, want it kept (%v short)", key, ttl, window, short, tc.aged)
				case short > slack+time.Minute:
					t.Errorf("%s: TTL %v short of its window by %v, past the slack %v", key, ttl, short, slack)
				}
			}
		})
	}
}

// BenchmarkRecordHitNewVisitor is a new visitor's page view at the store, its
// site-level data buffered as while RunFlusher runs: time and allocations of
// the store's part of the page view (the key name of each visitor included).
func BenchmarkRecordHitNewVisitor(b *testing.B) {
	e := stStart(b).aggregating()
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w := e.hitWrite(stHit{url: "/a", sid: "s1", first: true, vkey: fmt.Sprintf("vk%014d", i)})
		if _, err := e.s.RecordHit(e.ctx, w); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRecordHitReturning is a returning visitor's page view within its
// session at the store (hit.lua), 1,000 visitors in turn, each page a second
// after its visitor's last: the page view a returning visitor of the DESIGN.md
// corpus makes.
func BenchmarkRecordHitReturning(b *testing.B) {
	e := stStart(b).aggregating()
	const visitors = 1000
	vkeys := make([]string, visitors)
	for v := range vkeys {
		vkeys[v] = fmt.Sprintf("vk%014d", v)
		if _, err := e.s.RecordHit(e.ctx, e.hitWrite(stHit{url: "/a", sid: "s1", first: true, vkey: vkeys[v]})); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		w := e.hitWrite(stHit{at: time.Duration(1+i/visitors) * time.Second, url: "/b", vkey: vkeys[i%visitors]})
		out, err := e.s.RecordHit(e.ctx, w)
		if err != nil || out != visitor.OutcomeTracked {
			b.Fatalf("RecordHit = %v, %v; want tracked", out, err)
		}
	}
}

// A page view sends its site's windows as boxed once per site and retention:
// a retention that changes reaches the next page view's TTLs.
func TestRecordHitFollowsRetentionChanges(t *testing.T) {
	t.Parallel()
	e := stStart(t)
	for i, r := range []visitor.Retention{stRetention, {Sessions: 10, Profiles: 20, Chats: 90, Consents: 1095, Audit: 365}, stRetention} {
		vkey := fmt.Sprintf("vk%014d", i)
		w := e.hitWrite(stHit{url: "/a", sid: "s1", first: true, vkey: vkey})
		w.Retention = r
		if _, err := e.s.RecordHit(e.ctx, w); err != nil {
			t.Fatal(err)
		}
		k := keysOf(e.site.ID, vkey)
		for key, window := range map[string]time.Duration{k.profile: days(r.Profiles), sessionKey(k.profile, "s1"): days(r.Sessions)} {
			if ttl := e.c.PTTL(e.ctx, key).Val(); ttl > window || ttl < window-time.Minute {
				t.Errorf("retention %d: %s TTL %v, want %v", i, key, ttl, window)
			}
		}
	}
}

// The session index names a visitor's earlier sessions, each scored by its
// opening; the profile's sid names the current one. A one-session visitor has
// no index, and the visitor's data still lists every session.
func TestSessionIndexNamesEarlierSessions(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		sids  []string // sessions opened an hour apart
		index []string // the index after them
	}{
		{name: "one session", sids: []string{"s1"}},
		{name: "two sessions", sids: []string{"s1", "s2"}, index: []string{"s1"}},
		{name: "three sessions", sids: []string{"s1", "s2", "s3"}, index: []string{"s1", "s2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			for i, sid := range tc.sids {
				e.pageview(t, stKeyA, sid, time.Duration(i)*time.Hour, "/p")
			}
			k := keysOf(e.site.ID, stKeyA)
			got, err := e.c.ZRangeWithScores(e.ctx, k.sessions, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			var names []string
			for i, z := range got {
				names = append(names, z.Member.(string))
				if want := ms(e.now.Add(time.Duration(i) * time.Hour)); int64(z.Score) != want {
					t.Errorf("%s scored %d, want its opening %d", z.Member, int64(z.Score), want)
				}
			}
			if fmt.Sprint(names) != fmt.Sprint(tc.index) {
				t.Errorf("session index %v, want %v", names, tc.index)
			}
			d, err := e.s.VisitorData(e.ctx, e.site, stKeyA)
			if err != nil {
				t.Fatal(err)
			}
			var listed []string
			for _, s := range d.Sessions {
				listed = append(listed, s.ID)
			}
			slices.Sort(listed)
			if fmt.Sprint(listed) != fmt.Sprint(tc.sids) {
				t.Errorf("VisitorData lists sessions %v, want %v", listed, tc.sids)
			}
		})
	}
}

// With Redis hung, the auto-pipeliner holds at most its queue of page views;
// the ones past it are refused at once as the store unavailable, and counted
// (PipelineRejected), instead of queueing to run after their callers gave up.
func TestRecordHitPipelineQueueBound(t *testing.T) {
	t.Parallel()
	rs, c := stConnect(t)
	const queue, calls = 4, 40
	s := New(c, WithSites("shop"), WithPipelineQueue(queue))
	if err := s.LoadScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := rs.Client(t).Do(context.Background(), "CLIENT", "PAUSE", 60_000, "ALL").Err(); err != nil {
		t.Fatal(err)
	}
	// Before the client closes: its pipeliner's batch waits on the hung server.
	t.Cleanup(rs.Kill)
	site := &visitor.Site{ID: "shop", SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour,
		ConsentValidDays: 180, PolicyVersion: "2026-11", Retention: stRetention}
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), stUnavailableTimeout)
			defer cancel()
			_, err := s.RecordHit(ctx, visitor.HitWrite{Site: site, Retention: stRetention, VisitorID: fmt.Sprintf("vid%d", i),
				VisitorKey: fmt.Sprintf("vk%014d", i), Type: visitor.HitPageview, Now: time.Now().UTC(),
				Page: visitor.Page{URL: "https://shop.example/a"}, NewSessionID: "s1", Count: true, NewVisitor: true})
			errs <- err
		}()
	}
	for range calls {
		if err := <-errs; !errors.Is(err, visitor.ErrStoreUnavailable) {
			t.Errorf("page view with Redis hung: %v, want visitor.ErrStoreUnavailable", err)
		}
	}
	if got := s.PipelineRejected(); got < calls-queue {
		t.Errorf("PipelineRejected = %d, want at least %d of %d page views past a queue of %d", got, calls-queue, calls, queue)
	}
}

package redisstore

import (
	"context"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/visitor"
)

// More visitors of the operator tests: stKey(C…G) is "vkC000…".
func stKey(letter string) string { return "vk" + letter + "0000000000000" }

// visit is a page view of the visitor of letter opening session "s<letter>".
func visit(letter string, at time.Duration) stHit {
	return stHit{vkey: stKey(letter), sid: "s" + letter, at: at, url: "/" + letter, first: true}
}

// Live lists the sessions active within the window, most recent first, the
// current session only; a cursor pages through them without loss or repeat,
// ties included; a refused or erased visitor leaves the list at once.
func TestLive(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		hits   []stHit
		after  func(tb testing.TB, e stEnv)
		at     time.Duration // when the list is read
		within time.Duration
		limit  int
		want   [][]string // session ids, page by page
		// first is the first row in full, when set.
		first func(e stEnv) visitor.LiveEntry
	}{
		{
			name: "sessions active within the window, most recent first",
			hits: []stHit{visit("A", 0), visit("B", time.Minute)},
			at:   2 * time.Minute, within: 5 * time.Minute, limit: 10,
			want: [][]string{{"sB", "sA"}},
		},
		{
			name: "a session quiet for longer than the window is left out",
			hits: []stHit{visit("A", 0), visit("B", 10*time.Minute)},
			at:   11 * time.Minute, within: 5 * time.Minute, limit: 10,
			want: [][]string{{"sB"}},
		},
		{
			name: "the window's start is inside it",
			hits: []stHit{visit("A", 0)},
			at:   5 * time.Minute, within: 5 * time.Minute, limit: 10,
			want: [][]string{{"sA"}},
		},
		{
			name: "nothing live is an empty list",
			at:   time.Minute, within: 5 * time.Minute, limit: 10,
			want: [][]string{{}},
		},
		{
			name: "a row is the current session only, with what it observed",
			hits: []stHit{visit("A", 0), {vkey: stKey("A"), sid: "s2", at: 40 * time.Minute, url: "/b"},
				{vkey: stKey("A"), at: 42 * time.Minute, url: "/c"}},
			at: 43 * time.Minute, within: 5 * time.Minute, limit: 10,
			want: [][]string{{"s2"}},
			first: func(e stEnv) visitor.LiveEntry {
				return visitor.LiveEntry{SessionID: "s2", CurrentURL: "https://shop.example/c", CurrentTitle: "T/c", Pages: 2,
					SessionStart: e.now.Add(40 * time.Minute), LastSeen: e.now.Add(42 * time.Minute),
					Location: stLocation, Device: stDevice, Referrer: stReferrer}
			},
		},
		{
			name: "pages of limit follow the cursor",
			hits: []stHit{visit("C", time.Minute), visit("D", 2*time.Minute), visit("E", 3*time.Minute),
				visit("F", 4*time.Minute), visit("G", 5*time.Minute)},
			at: 6 * time.Minute, within: 10 * time.Minute, limit: 2,
			want: [][]string{{"sG", "sF"}, {"sE", "sD"}, {"sC"}},
		},
		{
			name: "ties at one time page without loss or repeat",
			hits: []stHit{visit("C", time.Minute), visit("D", time.Minute), visit("E", time.Minute), visit("F", 2*time.Minute)},
			at:   3 * time.Minute, within: 10 * time.Minute, limit: 2,
			want: [][]string{{"sF", "sE"}, {"sD", "sC"}},
		},
		{
			name: "a tie split across pages",
			hits: []stHit{visit("C", time.Minute), visit("D", time.Minute), visit("E", time.Minute)},
			at:   3 * time.Minute, within: 10 * time.Minute, limit: 2,
			want: [][]string{{"sE", "sD"}, {"sC"}},
		},
		{
			name:  "an erased visitor leaves the list",
			hits:  []stHit{visit("A", 0), visit("B", time.Minute)},
			after: func(tb testing.TB, e stEnv) { e.erase(tb, stKeyA, stVidA, "subjA") },
			at:    2 * time.Minute, within: 5 * time.Minute, limit: 10,
			want: [][]string{{"sB"}},
		},
		{
			name:  "a refused visitor leaves the list",
			hits:  []stHit{visit("A", 0), visit("B", time.Minute)},
			after: func(tb testing.TB, e stEnv) { e.refuse(tb, stKeyA, 90*time.Second) },
			at:    2 * time.Minute, within: 5 * time.Minute, limit: 10,
			want: [][]string{{"sB"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			for _, h := range tc.hits {
				e.record(t, h)
			}
			if tc.after != nil {
				tc.after(t, e)
			}
			since := e.now.Add(tc.at - tc.within)
			var pages [][]string
			var first *visitor.LiveEntry
			pos := visitor.LivePos{}
			for range 10 {
				rows, next, err := e.s.Live(e.ctx, e.site, since, pos, tc.limit)
				if err != nil {
					t.Fatal(err)
				}
				ids := []string{}
				for _, r := range rows {
					ids = append(ids, r.SessionID)
					if first == nil {
						first = &r
					}
				}
				pages = append(pages, ids)
				if next == nil {
					break
				}
				pos = *next
			}
			if diff := cmp.Diff(tc.want, pages); diff != "" {
				t.Errorf("Live pages (-want +got):\n%s", diff)
			}
			if tc.first != nil {
				if first == nil {
					t.Fatal("no row")
				}
				if diff := cmp.Diff(tc.first(e), *first); diff != "" {
					t.Errorf("first row (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// stDay is the pinned day of the counter tests (UTC).
var stDay = time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)

// Stats reads a site's per-day counters, the sum of every shard: tracked
// page views (not heartbeats or leaves) and refusals by reason, each day and
// site apart.
func TestStats(t *testing.T) {
	t.Parallel()
	blog := &visitor.Site{ID: "blog", SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour, Retention: stRetention}
	tests := []struct {
		name   string
		before func(tb testing.TB, e stEnv)
		day    time.Time
		want   map[string]int64
	}{
		{name: "no counts", day: stDay, want: map[string]int64{}},
		{
			name: "tracked page views add up across shards",
			before: func(tb testing.TB, e stEnv) {
				for _, l := range []string{"A", "B", "C", "D", "E"} {
					e.record(tb, visit(l, time.Minute))
				}
				e.record(tb, stHit{at: 2 * time.Minute, url: "/again"})
			},
			day: stDay, want: map[string]int64{"tracked": 6},
		},
		{
			name: "heartbeats and leaves are not counted",
			before: func(tb testing.TB, e stEnv) {
				e.record(tb, visit("A", 0))
				e.record(tb, stHit{vkey: stKey("A"), at: time.Minute, typ: visitor.HitHeartbeat})
				e.record(tb, stHit{vkey: stKey("A"), at: 2 * time.Minute, typ: visitor.HitLeave})
			},
			day: stDay, want: map[string]int64{"tracked": 1},
		},
		{
			name: "tracked and refused apart, a taken-back view reads 0",
			before: func(tb testing.TB, e stEnv) {
				e.record(tb, stHit{url: "/a", sid: "s1", grant: true, first: true})
				e.record(tb, visit("B", 0))
				e.refuse(tb, stKey("C"), time.Minute)
				if err := e.s.CountRefused(e.ctx, e.site, e.now, visitor.ReasonDNT); err != nil {
					tb.Fatal(err)
				}
			},
			day: stDay, want: map[string]int64{"tracked": 1, "no_consent": 1, "refusal": 1, "dnt": 1},
		},
		{
			name:   "any time of the day reads the whole day",
			before: func(tb testing.TB, e stEnv) { e.record(tb, visit("A", 0)) },
			day:    stDay.Add(23*time.Hour + 59*time.Minute), want: map[string]int64{"tracked": 1},
		},
		{
			name:   "another day's counts are apart",
			before: func(tb testing.TB, e stEnv) { e.record(tb, visit("A", 14*time.Hour)) },
			day:    stDay, want: map[string]int64{},
		},
		{
			name: "another site's counts are apart",
			before: func(tb testing.TB, e stEnv) {
				if err := e.s.CountRefused(e.ctx, blog, e.now, visitor.ReasonBot); err != nil {
					tb.Fatal(err)
				}
			},
			day: stDay, want: map[string]int64{},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			e.now = stDay.Add(10 * time.Hour)
			if tc.before != nil {
				tc.before(t, e)
			}
			got, err := e.s.Stats(e.ctx, e.site, tc.day)
			if err != nil {
				t.Fatal(err)
			}
			for k, n := range got {
				if n == 0 {
					delete(got, k)
				}
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Stats (-want +got):\n%s", diff)
			}
		})
	}
}

// StatsDays reads the counters of each day asked, in the order asked; a view
// counts on the UTC day it was made.
func TestStatsDaysPerDay(t *testing.T) {
	t.Parallel()
	d0, d1, d2 := stDay, stDay.AddDate(0, 0, 1), stDay.AddDate(0, 0, 2)
	tests := []struct {
		name string
		hits []stHit // at offsets from stDay
		days []time.Time
		want []map[string]int64
	}{
		{name: "no days asked", hits: []stHit{visit("A", time.Hour)}, want: []map[string]int64{}},
		{
			name: "days in the order asked, an empty day empty",
			hits: []stHit{visit("A", time.Hour), visit("B", 48*time.Hour+time.Minute)},
			days: []time.Time{d2, d0, d1},
			want: []map[string]int64{{"tracked": 1}, {"tracked": 1}, {}},
		},
		{
			name: "a session across midnight counts each view on its day",
			hits: []stHit{visit("A", 24*time.Hour-time.Minute), {vkey: stKey("A"), at: 24*time.Hour + time.Minute, url: "/b"}},
			days: []time.Time{d0, d1},
			want: []map[string]int64{{"tracked": 1}, {"tracked": 1}},
		},
		{
			name: "a day asked twice reads the same",
			hits: []stHit{visit("A", time.Hour), visit("B", 2*time.Hour)},
			days: []time.Time{d0, d0.Add(12 * time.Hour)},
			want: []map[string]int64{{"tracked": 2}, {"tracked": 2}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			e.now = stDay
			for _, h := range tc.hits {
				e.record(t, h)
			}
			got, err := e.s.StatsDays(e.ctx, e.site, tc.days)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("StatsDays (-want +got):\n%s", diff)
			}
		})
	}
}

// HoldStream and ReleaseStream: an API key holds at most max places among its
// open live streams of a site; a renewal keeps its place, a release or a lease
// that ended frees one; keys and sites have places of their own.
func TestStreamLease(t *testing.T) {
	t.Parallel()
	const lease = 45 * time.Second
	type op struct {
		release bool
		site    string // "shop" when empty
		key     string // "agent-1" when empty
		id      string
		at      time.Duration
		max     int // 2 when 0
		want    bool
	}
	hold := func(id string, at time.Duration, want bool) op { return op{id: id, at: at, want: want} }
	tests := []struct {
		name string
		ops  []op
	}{
		{name: "up to max places", ops: []op{hold("a", 0, true), hold("b", 0, true), hold("c", 0, false)}},
		{name: "a renewal keeps its place when all are held", ops: []op{hold("a", 0, true), hold("b", 0, true), hold("a", 10*time.Second, true)}},
		{name: "a release frees a place", ops: []op{hold("a", 0, true), hold("b", 0, true), {release: true, id: "b"}, hold("c", 0, true), hold("d", 0, false)}},
		{name: "a lease that ended frees its place", ops: []op{hold("a", 0, true), hold("b", time.Second, true), hold("c", lease+time.Millisecond, true), hold("d", lease+time.Millisecond, false)}},
		{name: "a lease ending now still holds", ops: []op{hold("a", 0, true), hold("b", 0, true), hold("c", lease, false)}},
		{name: "a renewed lease outlasts its first end", ops: []op{hold("a", 0, true), hold("b", 0, true), hold("a", 30*time.Second, true), hold("c", lease+time.Second, true), hold("d", lease+time.Second, false)}},
		{name: "another key has places of its own", ops: []op{hold("a", 0, true), hold("b", 0, true), {key: "dpo", id: "x", want: true}}},
		{name: "another site has places of its own", ops: []op{hold("a", 0, true), hold("b", 0, true), {site: "blog", id: "x", want: true}}},
		{name: "releasing a stream that holds nothing is no error", ops: []op{{release: true, id: "zz"}, hold("a", 0, true)}},
		{name: "max one", ops: []op{{id: "a", max: 1, want: true}, {id: "b", max: 1, want: false}, {id: "a", max: 1, at: time.Second, want: true}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			for i, o := range tc.ops {
				site := e.site
				if o.site != "" {
					site = &visitor.Site{ID: o.site, SessionTimeout: 30 * time.Minute, Retention: stRetention}
				}
				key, max := o.key, o.max
				if key == "" {
					key = "agent-1"
				}
				if max == 0 {
					max = 2
				}
				if o.release {
					if err := e.s.ReleaseStream(e.ctx, site, key, o.id); err != nil {
						t.Fatalf("op %d: ReleaseStream: %v", i, err)
					}
					continue
				}
				at := e.now.Add(o.at)
				got, err := e.s.HoldStream(e.ctx, site, key, o.id, at, at.Add(lease), max)
				if err != nil {
					t.Fatalf("op %d: HoldStream: %v", i, err)
				}
				if got != o.want {
					t.Errorf("op %d: HoldStream(%s/%s/%s at %v) = %v, want %v", i, site.ID, key, o.id, o.at, got, o.want)
				}
			}
		})
	}
}

// The operator methods answer ErrStoreUnavailable within a short deadline
// when Redis is down or hung.
func TestOperatorStoreUnavailable(t *testing.T) {
	t.Parallel()
	stRunUnavailable(t, []stCall{
		{name: "live", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, _, err := s.Live(ctx, site, now.Add(-5*time.Minute), visitor.LivePos{}, 50)
			return err
		}},
		{name: "stats", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.Stats(ctx, site, now)
			return err
		}},
		{name: "stats days", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.StatsDays(ctx, site, []time.Time{now, now.AddDate(0, 0, -1)})
			return err
		}},
		{name: "hold stream", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			_, err := s.HoldStream(ctx, site, "agent-1", "a", now, now.Add(time.Minute), 2)
			return err
		}},
		{name: "release stream", call: func(ctx context.Context, s *Store, site *visitor.Site, now time.Time) error {
			return s.ReleaseStream(ctx, site, "agent-1", "a")
		}},
	})
}

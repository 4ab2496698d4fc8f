package redisstore

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/visitord/visitord/internal/visitor"
)

// hitOf is a page view of vkey at now with the windows and limits of a site
// (30 min timeout, 4 h maximum, 500 pages).
func hitOf(vkey string, op visitor.HitType, now time.Time) hitArgs {
	return hitArgs{
		keys: keysOf("shop", vkey), op: op, now: now, policy: "v1",
		sessionTimeout: 30 * time.Minute, sessionMax: 4 * time.Hour,
		sessionsTTL: 30 * 24 * time.Hour, profilesTTL: 90 * 24 * time.Hour,
		newSessionID: "s-" + fmt.Sprint(now.UnixMilli()), visitorID: "vid-" + vkey,
		page:     visitor.Page{URL: "https://shop.example/p", Title: "P", Referrer: "https://ref.example/"},
		device:   visitor.Device{Browser: "Firefox", Version: "130", OS: "Linux"},
		location: visitor.Location{Country: "DE", Region: "BE", City: "Berlin", TimeZone: "Europe/Berlin"},
		ip:       "192.0.2.0", maxPages: visitor.MaxSessionPages,
		indexNeeds: now.Add(90 * 24 * time.Hour), indexWrite: now.Add(97 * 24 * time.Hour),
	}
}

func (e luaEnv) hit(tb testing.TB, a hitArgs) hitReply {
	tb.Helper()
	c, err := a.call()
	if err != nil {
		tb.Fatal(err)
	}
	e.run(tb, c)
	r, err := decodeHit(c)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// hit.lua: sessions open, continue and close by the limits given; a hit
// without a session, of an erased visitor or past the page cap is handled as
// the header says.
func TestHitScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name string
		// before runs first (earlier hits), then the hit of last.
		before []func(vkey string) hitArgs
		last   func(vkey string) hitArgs
		want   hitReply
		pages  int // pages stored in the current session's list, -1: not checked
		views  int // np of the current session
	}{
		{name: "first page view opens a session", last: func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0) },
			want: hitReply{outcome: visitor.OutcomeNewSession, raiseIndex: true}, pages: 1, views: 1},
		{name: "new visitor written by the caller does not ask to raise the index",
			last: func(v string) hitArgs {
				a := hitOf(v, visitor.HitPageview, luaT0)
				a.minted = true
				return a
			},
			want: hitReply{outcome: visitor.OutcomeNewSession}, pages: 1, views: 1},
		{name: "page view within the timeout continues the session",
			before: []func(string) hitArgs{func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0) }},
			last:   func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0.Add(time.Minute)) },
			want:   hitReply{outcome: visitor.OutcomeTracked}, pages: 2, views: 2},
		{name: "page view after the timeout opens another",
			before: []func(string) hitArgs{func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0) }},
			last:   func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0.Add(31*time.Minute)) },
			want:   hitReply{outcome: visitor.OutcomeNewSession}, pages: 1, views: 1},
		{name: "page view at the timeout continues the session",
			before: []func(string) hitArgs{func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0) }},
			last:   func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0.Add(30*time.Minute)) },
			want:   hitReply{outcome: visitor.OutcomeTracked}, pages: 2, views: 2},
		{name: "page view a millisecond past the timeout opens another",
			before: []func(string) hitArgs{func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0) }},
			last: func(v string) hitArgs {
				return hitOf(v, visitor.HitPageview, luaT0.Add(30*time.Minute+time.Millisecond))
			},
			want: hitReply{outcome: visitor.OutcomeNewSession}, pages: 1, views: 1},
		// The script compares times as strings: one of fewer digits is the
		// earlier (its last activity, 12 digits, before the bound, 13).
		{name: "a last activity of fewer digits than the bound is before it",
			before: []func(string) hitArgs{func(v string) hitArgs { return hitOf(v, visitor.HitPageview, time.UnixMilli(999_999_999_000)) }},
			last: func(v string) hitArgs {
				return hitOf(v, visitor.HitPageview, time.UnixMilli(999_999_999_000).Add(31*time.Minute))
			},
			want: hitReply{outcome: visitor.OutcomeNewSession}, pages: 1, views: 1},
		{name: "a bound of fewer digits than the last activity is before it",
			before: []func(string) hitArgs{func(v string) hitArgs { return hitOf(v, visitor.HitPageview, time.UnixMilli(1_000_000_000_500)) }},
			last: func(v string) hitArgs {
				return hitOf(v, visitor.HitPageview, time.UnixMilli(1_000_000_000_500).Add(time.Minute))
			},
			want: hitReply{outcome: visitor.OutcomeTracked}, pages: 2, views: 2},
		{name: "page view at the session maximum continues the session",
			before: []func(string) hitArgs{
				func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0) },
				func(v string) hitArgs { return hitOf(v, visitor.HitHeartbeat, luaT0.Add(8*time.Minute)) },
			},
			last: func(v string) hitArgs {
				a := hitOf(v, visitor.HitPageview, luaT0.Add(10*time.Minute))
				a.sessionMax = 10 * time.Minute
				return a
			},
			want: hitReply{outcome: visitor.OutcomeTracked}, pages: 2, views: 2},
		{name: "page view a millisecond past the session maximum opens another",
			before: []func(string) hitArgs{
				func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0) },
				func(v string) hitArgs { return hitOf(v, visitor.HitHeartbeat, luaT0.Add(8*time.Minute)) },
			},
			last: func(v string) hitArgs {
				a := hitOf(v, visitor.HitPageview, luaT0.Add(10*time.Minute+time.Millisecond))
				a.sessionMax = 10 * time.Minute
				return a
			},
			want: hitReply{outcome: visitor.OutcomeNewSession}, pages: 1, views: 1},
		{name: "page view past the session maximum opens another",
			before: []func(string) hitArgs{
				func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0) },
				func(v string) hitArgs { return hitOf(v, visitor.HitHeartbeat, luaT0.Add(20*time.Minute)) },
			},
			last: func(v string) hitArgs {
				a := hitOf(v, visitor.HitPageview, luaT0.Add(25*time.Minute))
				a.sessionMax = 10 * time.Minute
				return a
			},
			want: hitReply{outcome: visitor.OutcomeNewSession}, pages: 1, views: 1},
		{name: "heartbeat keeps the session", before: []func(string) hitArgs{func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0) }},
			last: func(v string) hitArgs { return hitOf(v, visitor.HitHeartbeat, luaT0.Add(time.Minute)) },
			want: hitReply{outcome: visitor.OutcomeTracked}, pages: 1, views: 1},
		{name: "heartbeat without a session", last: func(v string) hitArgs { return hitOf(v, visitor.HitHeartbeat, luaT0) },
			want: hitReply{outcome: visitor.OutcomeNoSession}, pages: -1},
		{name: "leave after the timeout finds no session",
			before: []func(string) hitArgs{func(v string) hitArgs { return hitOf(v, visitor.HitPageview, luaT0) }},
			last:   func(v string) hitArgs { return hitOf(v, visitor.HitLeave, luaT0.Add(time.Hour)) },
			want:   hitReply{outcome: visitor.OutcomeNoSession}, pages: 1, views: 1},
		{name: "pages past the cap are counted, not stored",
			before: []func(string) hitArgs{
				func(v string) hitArgs { a := hitOf(v, visitor.HitPageview, luaT0); a.maxPages = 2; return a },
				func(v string) hitArgs {
					a := hitOf(v, visitor.HitPageview, luaT0.Add(time.Second))
					a.maxPages = 2
					return a
				},
			},
			last: func(v string) hitArgs {
				a := hitOf(v, visitor.HitPageview, luaT0.Add(2*time.Second))
				a.maxPages = 2
				return a
			},
			want: hitReply{outcome: visitor.OutcomeTracked}, pages: 2, views: 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vkey := "vk-" + tc.name
			for _, b := range tc.before {
				e.hit(t, b(vkey))
			}
			if got := e.hit(t, tc.last(vkey)); got != tc.want {
				t.Fatalf("reply %+v, want %+v", got, tc.want)
			}
			if tc.pages < 0 {
				return
			}
			k := keysOf("shop", vkey)
			sid, err := e.c.HGet(e.ctx, k.profile, "sid").Result()
			if err != nil {
				t.Fatal(err)
			}
			items, err := e.c.LRange(e.ctx, sessionKey(k.profile, sid), 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			np, err := strconv.Atoi(recordOf(items, nil)["np"])
			if err != nil {
				t.Fatal(err)
			}
			if got := len(parseTrail(items)); got != tc.pages || np != tc.views {
				t.Errorf("session stores %d pages and counts %d, want %d and %d", got, np, tc.pages, tc.views)
			}
		})
	}
}

// The time on a page is closed by the next hit, capped at the session timeout.
func TestHitScriptClosesPageTime(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name string
		// after are the hits after a page view at luaT0: their type and
		// offset; the page is closed by the last.
		after []hitAt
		want  time.Duration
	}{
		{name: "closed by a leave", after: []hitAt{{visitor.HitLeave, 12 * time.Second}, {visitor.HitPageview, 20 * time.Minute}}, want: 12 * time.Second},
		{name: "closed by the next page", after: []hitAt{{visitor.HitPageview, 90 * time.Second}}, want: 90 * time.Second},
		{name: "closed at the timeout", after: []hitAt{{visitor.HitPageview, 30 * time.Minute}}, want: 30 * time.Minute},
		{name: "kept open by heartbeats, capped at the timeout",
			after: []hitAt{{visitor.HitHeartbeat, 25 * time.Minute}, {visitor.HitHeartbeat, 50 * time.Minute}}, want: 30 * time.Minute},
		{name: "a heartbeat closes it so far", after: []hitAt{{visitor.HitHeartbeat, 25 * time.Minute}}, want: 25 * time.Minute},
		{name: "a hit stamped before the page's start (another pod's clock) gives 0",
			after: []hitAt{{visitor.HitPageview, -time.Second}}, want: 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vkey := "vk-" + tc.name
			k := keysOf("shop", vkey)
			e.hit(t, hitOf(vkey, visitor.HitPageview, luaT0))
			for _, h := range tc.after {
				e.hit(t, hitOf(vkey, h.op, luaT0.Add(h.at)))
			}
			sid, _ := e.c.HGet(e.ctx, k.profile, "sid").Result()
			items, err := e.c.LRange(e.ctx, sessionKey(k.profile, sid), 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			if got := parseTrail(items); len(got) == 0 || got[0].Duration != tc.want {
				t.Errorf("trail %+v, want the first page closed at %v", got, tc.want)
			}
		})
	}
}

// hitAt is a hit of a test: its type and its offset from the test's clock.
type hitAt struct {
	op visitor.HitType
	at time.Duration
}

// The grant hit.lua checks is the rule of the domain's visitor.Token.HasGrant
// for the same choice: analytics granted, for the policy asked, valid at now.
// Without a grant required, only a refusal refuses.
func TestHitScriptGrantIsTheDomainsRule(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name    string
		choice  *visitor.Choice // nil: no choice stored
		require bool
	}{
		{name: "granted", choice: &visitor.Choice{Analytics: true, PolicyVersion: "v1", ValidUntil: luaT0.Add(time.Hour)}, require: true},
		{name: "granted for another policy", choice: &visitor.Choice{Analytics: true, PolicyVersion: "v0", ValidUntil: luaT0.Add(time.Hour)}, require: true},
		{name: "grant lapsed", choice: &visitor.Choice{Analytics: true, PolicyVersion: "v1", ValidUntil: luaT0}, require: true},
		{name: "refused", choice: &visitor.Choice{PolicyVersion: "v1", ValidUntil: luaT0.Add(time.Hour)}, require: true},
		{name: "no choice", require: true},
		{name: "refused on an opt-out site", choice: &visitor.Choice{PolicyVersion: "v1", ValidUntil: luaT0.Add(time.Hour)}},
		{name: "no choice on an opt-out site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vkey := "vk-" + tc.name
			k := keysOf("shop", vkey)
			tok := visitor.Token{Kind: visitor.KindID}
			refused := false
			if c := tc.choice; c != nil {
				if err := e.c.HSet(e.ctx, k.choice, "a", bit(c.Analytics), "m", "0", "pv", c.PolicyVersion, "t", ms(luaT0), "u", ms(c.ValidUntil)).Err(); err != nil {
					t.Fatal(err)
				}
				if c.Analytics {
					tok.ConsentPolicy, tok.ConsentUntil = c.PolicyVersion, c.ValidUntil
				}
				refused = !c.Analytics
			}
			a := hitOf(vkey, visitor.HitPageview, luaT0)
			a.requireGrant = tc.require
			want := visitor.OutcomeNewSession
			if (tc.require && !tok.HasGrant("v1", luaT0)) || (!tc.require && refused) {
				want = visitor.OutcomeNoConsent
			}
			if got := e.hit(t, a).outcome; got != want {
				t.Errorf("outcome %d, want %d", got, want)
			}
		})
	}
}

// An erased visitor's hit writes nothing.
func TestHitScriptErased(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	k := keysOf("shop", "vk")
	if err := e.c.Set(e.ctx, k.tombstone, "subject", time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	if got := e.hit(t, hitOf("vk", visitor.HitPageview, luaT0)); got.outcome != visitor.OutcomeErased {
		t.Fatalf("outcome %d, want erased", got.outcome)
	}
	if n, err := e.c.Exists(e.ctx, k.profile, k.sessions).Result(); err != nil || n != 0 {
		t.Errorf("an erased visitor's hit wrote %d keys (%v)", n, err)
	}
}

// site_index.lua adds to and removes from the live set and counts per day.
func TestSiteIndexScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	live, counters := liveKey("shop", 3), statsKey("shop", 3, luaT0)
	consts := newSiteConsts(time.Minute, visitor.StatsTTL, 2)
	base := siteArgs{live: live, counters: counters, now: luaT0, consts: consts}
	for _, tc := range []struct {
		name      string
		args      func(siteArgs) siteArgs
		wantLive  []string
		wantCount map[string]string
	}{
		{name: "add live and count", args: func(a siteArgs) siteArgs { a.op, a.vkey, a.add = liveAdd, "a", visitor.ReasonTracked; return a },
			wantLive: []string{"a"}, wantCount: map[string]string{"tracked": "1"}},
		{name: "count only", args: func(a siteArgs) siteArgs { a.add = visitor.ReasonDNT; return a },
			wantLive: []string{"a"}, wantCount: map[string]string{"tracked": "1", "dnt": "1"}},
		{name: "take back", args: func(a siteArgs) siteArgs {
			a.op, a.vkey, a.add, a.takeBack = liveRemove, "a", visitor.ReasonNoConsent, visitor.ReasonTracked
			return a
		}, wantLive: []string{}, wantCount: map[string]string{"tracked": "0", "dnt": "1", "no_consent": "1"}},
		{name: "trim keeps the most recent", args: func(a siteArgs) siteArgs {
			for i, v := range []string{"b", "c"} {
				e.run(t, siteArgs{live: live, counters: counters, op: liveAdd, vkey: v, now: luaT0.Add(time.Duration(i) * time.Second),
					consts: consts}.call())
			}
			a.op, a.vkey, a.now, a.trim = liveAdd, "d", luaT0.Add(5*time.Second), true
			return a
		}, wantLive: []string{"c", "d"}, wantCount: map[string]string{"tracked": "0", "dnt": "1", "no_consent": "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.run(t, tc.args(base).call())
			got, err := e.c.ZRange(e.ctx, live, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantLive, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("live set (-want +got):\n%s", diff)
			}
			counts, err := e.c.HGetAll(e.ctx, counters).Result()
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantCount, counts); diff != "" {
				t.Errorf("counters (-want +got):\n%s", diff)
			}
			if ttl := e.c.TTL(e.ctx, counters).Val(); ttl < visitor.StatsTTL-time.Minute {
				t.Errorf("counters TTL %v, want %v", ttl, visitor.StatsTTL)
			}
		})
	}
}

// A tombstone outlives every token of the identity it ends: a replayed token
// of an erased visitor finds it (the two windows are set apart, the identity's
// in site.go, the tombstone's in the record of processing).
func TestTombstoneOutlivesIdentity(t *testing.T) {
	t.Parallel()
	if visitor.MaxCookieLifetime > TombstoneTTL {
		t.Errorf("an identity lives %v, its tombstone %v", visitor.MaxCookieLifetime, TombstoneTTL)
	}
}

// Each Store keeps its own site-key cache: a Store built for a site with
// another session timeout (a test, a reloaded sites file) writes its own live
// TTL, not the one an earlier Store cached for the same site id.
func TestSiteKeysArePerStore(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name    string
		timeout time.Duration
	}{
		{name: "first store", timeout: time.Minute},
		{name: "second store, same site id", timeout: 10 * time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := New(e.c)
			site := &visitor.Site{ID: "shop", SessionTimeout: tc.timeout}
			if err := s.run(e.ctx, s.siteCall(site, "vk", luaT0, liveAdd, "", "")); err != nil {
				t.Fatal(err)
			}
			if ttl := e.c.PTTL(e.ctx, LiveKeyOf("shop", "vk")).Val(); ttl <= 2*tc.timeout-time.Minute || ttl > 2*tc.timeout {
				t.Errorf("live TTL %v, want %v", ttl, 2*tc.timeout)
			}
		})
	}
}

// A session written before its record moved into its list (the first item
// "#<start ms>\t<referrer>", the record in the hash <list>:m) reads as one
// written now by every reader: live, bind_chat, the visitor's data and the
// re-expiry job; a page view moves its record into the list and deletes the
// hash, and the same readers still agree.
func TestSessionRecordWrittenBeforeTheList(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		legacy bool
	}{{name: "record in the hash (older)", legacy: true}, {name: "record in the list"}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := luaStart(t)
			k := keysOf("shop", "vk")
			sk, mk := sessionKey(k.profile, "s1"), sessionMetaKey(k.profile, "s1")
			t0 := ms(luaT0)
			if tc.legacy {
				pipe := e.c.Pipeline()
				pipe.HSet(e.ctx, k.profile, "vid", "vid-vk", "sid", "s1", "ns", 1, "fs", t0, "w", t0)
				pipe.RPush(e.ctx, sk, fmt.Sprintf("#%d\thttps://ref.example/", t0), fmt.Sprintf("%d\t0\thttps://shop.example/p\tP", t0))
				pipe.HSet(e.ctx, mk, "ss", t0, "sl", t0, "ps", t0, "pc", "0", "np", "1", "cu", "https://shop.example/p", "ct", "P",
					"rf", "https://ref.example/", "br", "Firefox", "bv", "130", "os", "Linux", "mob", "0",
					"co", "DE", "rg", "BE", "ci", "Berlin", "tz", "Europe/Berlin", "ip", "192.0.2.0")
				for _, key := range []string{k.profile, sk, mk} {
					pipe.Expire(e.ctx, key, time.Hour)
				}
				if _, err := pipe.Exec(e.ctx); err != nil {
					t.Fatal(err)
				}
			} else {
				a := hitOf("vk", visitor.HitPageview, luaT0)
				a.newSessionID, a.minted = "s1", true
				e.hit(t, a)
			}
			wantLive := visitor.LiveEntry{SessionID: "s1", SessionStart: luaT0, LastSeen: luaT0, Pages: 1,
				CurrentURL: "https://shop.example/p", CurrentTitle: "P",
				Location: visitor.Location{Country: "DE", Region: "BE", City: "Berlin", TimeZone: "Europe/Berlin"},
				Device:   visitor.Device{Browser: "Firefox", Version: "130", OS: "Linux"}, Referrer: "https://ref.example/"}
			check := func(when string, want visitor.LiveEntry) {
				t.Helper()
				lc := liveArgs{keys: k}.call()
				e.run(t, lc)
				got, ok := decodeLive(lc)
				if diff := cmp.Diff(want, got); !ok || diff != "" {
					t.Errorf("%s: live (-want +got):\n%s", when, diff)
				}
				b, err := e.s.BindChat(e.ctx, &visitor.Site{ID: "shop", SessionTimeout: 30 * time.Minute}, "vk", want.LastSeen)
				if err != nil {
					t.Fatal(err)
				}
				if b.SessionID != "s1" || b.Device != want.Device || b.Location != want.Location || b.Referrer != want.Referrer {
					t.Errorf("%s: binding %+v, want session s1 with %+v, %+v, %q", when, b, want.Device, want.Location, want.Referrer)
				}
				d, err := e.s.VisitorData(e.ctx, &visitor.Site{ID: "shop"}, "vk")
				if err != nil {
					t.Fatal(err)
				}
				if len(d.Sessions) != 1 {
					t.Fatalf("%s: %d sessions in the visitor's data, want 1", when, len(d.Sessions))
				}
				s := d.Sessions[0]
				if s.Start != want.SessionStart || s.LastSeen != want.LastSeen || s.PageViews != want.Pages || s.Device != want.Device ||
					s.Location != want.Location || s.Referrer != want.Referrer || s.IP != "192.0.2.0" || s.CurrentURL != want.CurrentURL ||
					len(s.Pages) != want.Pages {
					t.Errorf("%s: session data %+v, want it to match %+v", when, s, want)
				}
			}
			check("before a page view", wantLive)

			later := luaT0.Add(time.Minute)
			a := hitOf("vk", visitor.HitPageview, later)
			a.page = visitor.Page{URL: "https://shop.example/q", Title: "Q"}
			if got := e.hit(t, a); got.outcome != visitor.OutcomeTracked {
				t.Fatalf("page view = %+v, want the session continued", got)
			}
			if n := e.c.Exists(e.ctx, mk).Val(); n != 0 {
				t.Error("the session's hash outlived the page view that moved its record into the list")
			}
			if head := e.c.LIndex(e.ctx, sk, 0).Val(); !strings.HasPrefix(head, "#r\t") {
				t.Errorf("the list's first item %q, want the record", head)
			}
			if ttl := e.c.PTTL(e.ctx, sk).Val(); ttl <= 0 {
				t.Errorf("the session's list has TTL %v after the page view", ttl)
			}
			wantLive.LastSeen, wantLive.Pages, wantLive.CurrentURL, wantLive.CurrentTitle = later, 2, "https://shop.example/q", "Q"
			check("after a page view", wantLive)
			items := e.c.LRange(e.ctx, sk, 0, -1).Val()
			if got := parseTrail(items); len(got) != 2 || got[0].Duration != time.Minute || got[1].Duration != 0 {
				t.Errorf("trail %+v, want the first page closed at a minute by the second", got)
			}
		})
	}
}

// The fields of a session's record are in the same order in lib_session.lua
// (which writes the record) and in recordFields (which reads it in Go).
func TestRecordFieldsAreTheScriptsOrder(t *testing.T) {
	src, err := luaFiles.ReadFile("lib_session.lua")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(src), "local RECORD = {")
	if !ok {
		t.Fatal("lib_session.lua declares no RECORD")
	}
	list, _, _ := strings.Cut(rest, "}")
	var lua []string
	for _, f := range strings.Split(list, ",") {
		lua = append(lua, strings.Trim(strings.TrimSpace(f), "'"))
	}
	if diff := cmp.Diff(recordFields[:], lua); diff != "" {
		t.Errorf("recordFields (-Go +Lua):\n%s", diff)
	}
}

// recordItem encodes a session's record as the list's first item, as
// lib_session.lua's record_item does: for tests and benchmarks that store
// sessions directly.
func recordItem(m map[string]string) string {
	v := make([]string, len(recordFields))
	for i, f := range recordFields {
		v[i] = m[f]
	}
	return "#r\t" + strings.Join(v, "\t")
}

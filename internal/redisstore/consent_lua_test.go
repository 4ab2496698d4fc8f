package redisstore

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/visitord/visitord/internal/visitor"
)

// consentOf is a choice of vkey made at luaT0 with a record kept 400 days.
func consentOf(vkey string, analytics, marketing bool) consentArgs {
	return consentArgs{
		keys:         keysOf("shop", vkey),
		choice:       visitor.Choice{Analytics: analytics, Marketing: marketing, PolicyVersion: "v1", Given: luaT0, ValidUntil: luaT0.Add(180 * 24 * time.Hour)},
		record:       `{"time":"` + luaT0.Format(time.RFC3339Nano) + `","policy_version":"v1","text_sha256":"x","method":"banner"}`,
		recordExpiry: luaT0.Add(400 * 24 * time.Hour), now: luaT0, choiceExpiry: luaT0.Add(180 * 24 * time.Hour),
	}
}

func (e luaEnv) consent(tb testing.TB, a consentArgs) consentReply {
	tb.Helper()
	c := a.call()
	e.run(tb, c)
	r, err := decodeConsent(c)
	if err != nil {
		tb.Fatal(err)
	}
	return r
}

// consent.lua writes the choice and its record, answers same for a repeated
// choice, refuses an erased visitor, forgets behaviour data and withdraws the
// marketing permission of the visitor's chats when asked.
func TestConsentScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name   string
		setup  func(t *testing.T, vkey string)
		before []func(string) consentArgs
		last   func(string) consentArgs
		want   consentReply
		// profile is "kept" or "gone": whether the profile remains after the
		// last call ("": not checked).
		profile string
	}{
		{name: "grant", last: func(v string) consentArgs { return consentOf(v, true, false) }, want: consentReply{owed: []string{}}},
		{name: "same choice unless changed",
			before: []func(string) consentArgs{func(v string) consentArgs { return consentOf(v, true, false) }},
			last: func(v string) consentArgs {
				a := consentOf(v, true, false)
				a.unlessChanged = true
				return a
			}, want: consentReply{same: true}},
		{name: "changed choice unless changed",
			before: []func(string) consentArgs{func(v string) consentArgs { return consentOf(v, true, false) }},
			last: func(v string) consentArgs {
				a := consentOf(v, false, false)
				a.unlessChanged = true
				return a
			}, want: consentReply{owed: []string{}}},
		{name: "erased visitor", setup: func(t *testing.T, vkey string) {
			if err := e.c.Set(e.ctx, keysOf("shop", vkey).tombstone, "subject", time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
		}, last: func(v string) consentArgs { return consentOf(v, true, false) }, want: consentReply{erased: true}},
		{name: "refusal keeps behaviour data unless asked to forget", setup: seedVisitor(e),
			last: func(v string) consentArgs { return consentOf(v, false, false) }, want: consentReply{owed: []string{}}, profile: "kept"},
		{name: "refusal forgets", setup: seedVisitor(e), last: func(v string) consentArgs {
			a := consentOf(v, false, false)
			a.forget = true
			return a
		}, want: consentReply{owed: []string{}}, profile: "gone"},
		{name: "withdrawal of marketing", setup: seedChats(e, "c2", "c1"), last: func(v string) consentArgs {
			a := consentOf(v, true, false)
			a.withdrawMarketing = true
			return a
		}, want: consentReply{owed: []string{"c1", "c2"}}},
		{name: "withdrawal repeated unless changed", setup: seedChats(e, "c1"),
			before: []func(string) consentArgs{func(v string) consentArgs {
				a := consentOf(v, true, false)
				a.withdrawMarketing = true
				return a
			}},
			last: func(v string) consentArgs {
				a := consentOf(v, true, false)
				a.withdrawMarketing, a.unlessChanged = true, true
				return a
			}, want: consentReply{same: true}},
		{name: "withdrawal still owed is answered again", setup: seedChats(e, "c1"),
			before: []func(string) consentArgs{func(v string) consentArgs {
				a := consentOf(v, true, false)
				a.withdrawMarketing = true
				return a
			}},
			last: func(v string) consentArgs {
				a := consentOf(v, true, false)
				a.withdrawMarketing = true
				return a
			}, want: consentReply{owed: []string{"c1"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vkey := "vk-" + tc.name
			k := keysOf("shop", vkey)
			if tc.setup != nil {
				tc.setup(t, vkey)
			}
			for _, b := range tc.before {
				e.consent(t, b(vkey))
			}
			got := e.consent(t, tc.last(vkey))
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(consentReply{}), cmpopts.EquateEmpty()); diff != "" {
				t.Fatalf("reply (-want +got):\n%s", diff)
			}
			if got.erased || got.same {
				return
			}
			a := tc.last(vkey)
			stored, err := e.c.HMGet(e.ctx, k.choice, "a", "pv").Result()
			if err != nil || stored[0] != bit(a.choice.Analytics) || stored[1] != "v1" {
				t.Errorf("choice %v (%v), want analytics %v of v1", stored, err, a.choice.Analytics)
			}
			if at := e.pexpireAt(t, k.choice); !at.Equal(a.choiceExpiry) {
				t.Errorf("choice expires %v, want %v", at, a.choiceExpiry)
			}
			if at := e.pexpireAt(t, k.records); !at.Equal(a.recordExpiry) {
				t.Errorf("records expire %v, want %v", at, a.recordExpiry)
			}
			n, err := e.c.Exists(e.ctx, k.profile).Result()
			if err != nil {
				t.Fatal(err)
			}
			if (tc.profile == "kept" && n != 1) || (tc.profile == "gone" && n != 0) {
				t.Errorf("profile exists %d, want %s", n, tc.profile)
			}
			if len(tc.want.owed) > 0 {
				withdrawn, _ := e.c.SMembers(e.ctx, k.withdrawn).Result()
				if diff := cmp.Diff(tc.want.owed, withdrawn, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
					t.Errorf("withdrawn chats (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// seedVisitor writes a profile with a current session and a session index.
func seedVisitor(e luaEnv) func(t *testing.T, vkey string) {
	return func(t *testing.T, vkey string) {
		t.Helper()
		e.hit(t, hitOf(vkey, visitor.HitPageview, luaT0.Add(-time.Minute)))
	}
}

// seedChats writes a profile and a chat index of ids.
func seedChats(e luaEnv, ids ...string) func(t *testing.T, vkey string) {
	return func(t *testing.T, vkey string) {
		t.Helper()
		k := keysOf("shop", vkey)
		seedVisitor(e)(t, vkey)
		for i, id := range ids {
			e.run(t, chatIndexArgs{keys: k, chatID: id, start: luaT0.Add(time.Duration(i) * time.Second),
				indexExpireAt: luaT0.Add(90 * 24 * time.Hour), now: luaT0}.call())
		}
	}
}

// forget.lua deletes every session (indexed or current), the session index
// and the profile; the consent choice stays.
func TestForgetScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name string
		hits []time.Time
	}{
		{name: "one session", hits: []time.Time{luaT0}},
		{name: "two sessions", hits: []time.Time{luaT0, luaT0.Add(time.Hour)}},
		{name: "nothing stored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vkey := "vk-" + tc.name
			k := keysOf("shop", vkey)
			var keys []string
			for _, at := range tc.hits {
				e.hit(t, hitOf(vkey, visitor.HitPageview, at))
				sid, _ := e.c.HGet(e.ctx, k.profile, "sid").Result()
				keys = append(keys, sessionKey(k.profile, sid), sessionMetaKey(k.profile, sid))
			}
			if err := e.c.HSet(e.ctx, k.choice, "a", "1").Err(); err != nil {
				t.Fatal(err)
			}
			e.run(t, forgetArgs{keys: k}.call())
			if n, err := e.c.Exists(e.ctx, append(keys, k.profile, k.sessions)...).Result(); err != nil || n != 0 {
				t.Errorf("%d behaviour keys left (%v)", n, err)
			}
			if n, _ := e.c.Exists(e.ctx, k.choice).Result(); n != 1 {
				t.Errorf("the consent choice went with the behaviour data")
			}
		})
	}
}

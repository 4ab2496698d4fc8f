package redisstore

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/visitord/visitord/internal/visitor"
)

// bind_chat.lua answers the open session with its device, location and
// referrer and the earlier chats; a quiet session binds none of it; an erased
// visitor binds nothing.
func TestBindChatScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	seen := hitOf("", visitor.HitPageview, luaT0)
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, vkey string)
		now   time.Time
		want  func(sid string) bindChatReply
	}{
		{name: "open session and earlier chats", setup: seedChats(e, "c1", "c2"), now: luaT0,
			want: func(sid string) bindChatReply {
				return bindChatReply{binding: visitor.ChatBinding{SessionID: sid, Device: seen.device, Location: seen.location,
					Referrer: seen.page.Referrer, Previous: []string{"c1", "c2"}}}
			}},
		// An ended session's device, location and referrer are not the
		// chat's (DESIGN.md invariant 4).
		{name: "quiet session binds nothing", setup: seedVisitor(e), now: luaT0.Add(time.Hour),
			want: func(string) bindChatReply { return bindChatReply{} }},
		{name: "unknown visitor", now: luaT0, want: func(string) bindChatReply { return bindChatReply{} }},
		{name: "erased visitor", setup: func(t *testing.T, vkey string) {
			if err := e.c.Set(e.ctx, keysOf("shop", vkey).tombstone, "s", time.Hour).Err(); err != nil {
				t.Fatal(err)
			}
		}, now: luaT0, want: func(string) bindChatReply { return bindChatReply{erased: true} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vkey := "vk-" + tc.name
			k := keysOf("shop", vkey)
			if tc.setup != nil {
				tc.setup(t, vkey)
			}
			sid, _ := e.c.HGet(e.ctx, k.profile, "sid").Result()
			c := bindChatArgs{keys: k, now: tc.now, sessionTimeout: 30 * time.Minute}.call()
			e.run(t, c)
			got, err := decodeBindChat(c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want(sid), got, cmp.AllowUnexported(bindChatReply{}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
		})
	}
}

// put_hash.lua writes a hash whole with its absolute expiry.
func TestPutHashScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name   string
		fields []any
		want   map[string]string
	}{
		{name: "one field", fields: []any{"a", "1"}, want: map[string]string{"a": "1"}},
		{name: "several fields", fields: []any{"a", "1", "b", 2, "c", ""}, want: map[string]string{"a": "1", "b": "2", "c": ""}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, at := "h:"+tc.name, luaT0.Add(time.Hour)
			e.run(t, putHashArgs{key: key, expireAt: at, fields: tc.fields}.call())
			if got := e.c.HGetAll(e.ctx, key).Val(); !cmp.Equal(got, tc.want) {
				t.Errorf("hash %v, want %v", got, tc.want)
			}
			if got := e.pexpireAt(t, key); !got.Equal(at) {
				t.Errorf("expires %v, want %v", got, at)
			}
		})
	}
}

// chat_index.lua enters a chat in its visitor's index (expiring with the
// newest), with a marketing record and the choice's flag, and the blind-index
// key in the visitor's list.
func TestChatIndexScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	rec := `{"time":"` + luaT0.Format(time.RFC3339Nano) + `","marketing":true,"policy_version":"v1","text_sha256":"x","method":"chat"}`
	for _, tc := range []struct {
		name       string
		choice     bool // a choice is stored
		record     string
		blindIndex string
		wantM      string // the choice's m after, "" when no choice
	}{
		{name: "plain chat"},
		{name: "marketing opt-in with a choice", choice: true, record: rec, wantM: "1"},
		{name: "marketing opt-in without a choice", record: rec},
		{name: "with an e-mail", blindIndex: emailKey("shop", "h1")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := keysOf("shop", "vk-"+tc.name)
			if tc.choice {
				if err := e.c.HSet(e.ctx, k.choice, "a", "1", "m", "0").Err(); err != nil {
					t.Fatal(err)
				}
			}
			until := luaT0.Add(90 * 24 * time.Hour)
			e.run(t, chatIndexArgs{keys: k, chatID: "c1", start: luaT0, indexExpireAt: until, record: tc.record,
				recordExpiry: luaT0.Add(400 * 24 * time.Hour), now: luaT0, blindIndex: tc.blindIndex}.call())
			if got := e.c.ZRange(e.ctx, k.chats, 0, -1).Val(); !cmp.Equal(got, []string{"c1"}) || !e.pexpireAt(t, k.chats).Equal(until) {
				t.Errorf("chat index %v expiring %v, want [c1] at %v", got, e.pexpireAt(t, k.chats), until)
			}
			if n := e.c.ZCard(e.ctx, k.records).Val(); (n == 1) != (tc.record != "") {
				t.Errorf("%d consent records, want one iff a record is given", n)
			}
			if got := e.c.HGet(e.ctx, k.choice, "m").Val(); got != tc.wantM {
				t.Errorf("choice m %q, want %q", got, tc.wantM)
			}
			if got := e.c.SMembers(e.ctx, k.indexes).Val(); (len(got) == 1 && got[0] == tc.blindIndex) != (tc.blindIndex != "") {
				t.Errorf("blind-index list %v, want [%s]", got, tc.blindIndex)
			}
		})
	}
}

// record.lua adds a record, trims the expired ones and expires the zset with
// the newest.
func TestRecordScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	key := chatKey("shop", "c1") + ":r"
	for _, tc := range []struct {
		name    string
		record  string
		expiry  time.Time
		now     time.Time
		want    []string
		wantExp time.Time
	}{
		{name: "first", record: "r1", expiry: luaT0.Add(time.Hour), now: luaT0, want: []string{"r1"}, wantExp: luaT0.Add(time.Hour)},
		{name: "newer", record: "r2", expiry: luaT0.Add(2 * time.Hour), now: luaT0, want: []string{"r1", "r2"}, wantExp: luaT0.Add(2 * time.Hour)},
		{name: "first lapsed", record: "r3", expiry: luaT0.Add(3 * time.Hour), now: luaT0.Add(90 * time.Minute),
			want: []string{"r2", "r3"}, wantExp: luaT0.Add(3 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.run(t, recordArgs{key: key, record: tc.record, expiry: tc.expiry, now: tc.now}.call())
			if got := e.c.ZRange(e.ctx, key, 0, -1).Val(); !cmp.Equal(got, tc.want) {
				t.Errorf("records %v, want %v", got, tc.want)
			}
			if got := e.pexpireAt(t, key); !got.Equal(tc.wantExp) {
				t.Errorf("expires %v, want %v", got, tc.wantExp)
			}
		})
	}
}

// blind_index.lua keeps each subject's latest expiry (never lowering it),
// trims the lapsed and expires the index with its highest score.
func TestBlindIndexScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	key := emailKey("shop", "h1")
	for _, tc := range []struct {
		name    string
		member  string
		expiry  time.Time
		now     time.Time
		want    map[string]int64
		wantExp time.Time
	}{
		{name: "visitor", member: "v:1", expiry: luaT0.Add(time.Hour), now: luaT0,
			want: map[string]int64{"v:1": ms(luaT0.Add(time.Hour))}, wantExp: luaT0.Add(time.Hour)},
		{name: "earlier expiry does not lower", member: "v:1", expiry: luaT0.Add(time.Minute), now: luaT0,
			want: map[string]int64{"v:1": ms(luaT0.Add(time.Hour))}, wantExp: luaT0.Add(time.Hour)},
		{name: "chat", member: "c:1", expiry: luaT0.Add(2 * time.Hour), now: luaT0,
			want: map[string]int64{"v:1": ms(luaT0.Add(time.Hour)), "c:1": ms(luaT0.Add(2 * time.Hour))}, wantExp: luaT0.Add(2 * time.Hour)},
		{name: "lapsed trimmed", member: "c:2", expiry: luaT0.Add(3 * time.Hour), now: luaT0.Add(90 * time.Minute),
			want: map[string]int64{"c:1": ms(luaT0.Add(2 * time.Hour)), "c:2": ms(luaT0.Add(3 * time.Hour))}, wantExp: luaT0.Add(3 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.run(t, blindIndexArgs{key: key, member: tc.member, expiry: tc.expiry, now: tc.now}.call())
			if got := zscores(t, e, key); !cmp.Equal(got, tc.want) {
				t.Errorf("index %v, want %v", got, tc.want)
			}
			if got := e.pexpireAt(t, key); !got.Equal(tc.wantExp) {
				t.Errorf("expires %v, want %v", got, tc.wantExp)
			}
		})
	}
}

// zscores reads a zset as member → score.
func zscores(tb testing.TB, e luaEnv, key string) map[string]int64 {
	tb.Helper()
	zs, err := e.c.ZRangeWithScores(e.ctx, key, 0, -1).Result()
	if err != nil {
		tb.Fatal(err)
	}
	out := map[string]int64{}
	for _, z := range zs {
		out[z.Member.(string)] = int64(z.Score)
	}
	return out
}

package redisstore

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
)

// migrate.lua moves the session fields a profile written before the session
// record held into the session's hash, while the session is stored, and drops
// them from the profile either way.
func TestMigrateScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name        string
		listTTL     time.Duration // the session list's TTL; 0: no list
		profile     map[string]any
		wantProfile map[string]string
		wantMeta    map[string]string
	}{
		{name: "legacy profile with its session stored", listTTL: time.Hour,
			profile:     map[string]any{"vid": "v1", "sid": "s1", "sl": "5", "ss": "1", "cu": "https://shop.example/", "br": "Firefox", "ip": "192.0.2.0", "ls": "5"},
			wantProfile: map[string]string{"vid": "v1", "sid": "s1"},
			wantMeta:    map[string]string{"sl": "5", "ss": "1", "cu": "https://shop.example/", "br": "Firefox", "ip": "192.0.2.0"}},
		{name: "legacy profile whose session is gone",
			profile:     map[string]any{"vid": "v1", "sid": "s1", "sl": "5", "br": "Firefox"},
			wantProfile: map[string]string{"vid": "v1", "sid": "s1"}, wantMeta: map[string]string{}},
		{name: "current profile", listTTL: time.Hour,
			profile:     map[string]any{"vid": "v1", "sid": "s1", "w": "5"},
			wantProfile: map[string]string{"vid": "v1", "sid": "s1", "w": "5"}, wantMeta: map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := keysOf("shop", "vk-"+tc.name)
			if err := e.c.HSet(e.ctx, k.profile, tc.profile).Err(); err != nil {
				t.Fatal(err)
			}
			if tc.listTTL > 0 {
				if err := e.c.RPush(e.ctx, sessionKey(k.profile, "s1"), "#1\t").Err(); err != nil {
					t.Fatal(err)
				}
				e.c.Expire(e.ctx, sessionKey(k.profile, "s1"), tc.listTTL)
			}
			e.run(t, migrateArgs{keys: k}.call())
			if diff := cmp.Diff(tc.wantProfile, e.c.HGetAll(e.ctx, k.profile).Val()); diff != "" {
				t.Errorf("profile (-want +got):\n%s", diff)
			}
			meta := sessionMetaKey(k.profile, "s1")
			if diff := cmp.Diff(tc.wantMeta, e.c.HGetAll(e.ctx, meta).Val()); diff != "" {
				t.Errorf("session hash (-want +got):\n%s", diff)
			}
			if len(tc.wantMeta) > 0 && e.c.PTTL(e.ctx, meta).Val() <= 0 {
				t.Errorf("the session hash has no TTL")
			}
		})
	}
}

// rectify.lua rewrites the fields of a chat that exists, and creates none.
func TestRectifyScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name   string
		exists bool
		want   map[string]string
	}{
		{name: "existing chat", exists: true, want: map[string]string{"t": "1", "email": "new", "ei": "e:{shop:h2}"}},
		{name: "erased chat", want: map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck := chatKey("shop", tc.name)
			if tc.exists {
				e.c.HSet(e.ctx, ck, "t", "1", "email", "old")
			}
			e.run(t, rectifyArgs{chat: ck, fields: []any{"email", "new", "ei", "e:{shop:h2}"}}.call())
			if diff := cmp.Diff(tc.want, e.c.HGetAll(e.ctx, ck).Val()); diff != "" {
				t.Errorf("chat (-want +got):\n%s", diff)
			}
		})
	}
}

// replace_set.lua replaces a set whole with its absolute expiry.
func TestReplaceSetScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name    string
		before  []string
		members []string
	}{
		{name: "new set", members: []string{"a"}},
		{name: "replaced", before: []string{"x", "y"}, members: []string{"a", "b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key, at := "set:"+tc.name, luaT0.Add(time.Hour)
			for _, m := range tc.before {
				e.c.SAdd(e.ctx, key, m)
			}
			e.run(t, replaceSetArgs{key: key, expireAt: at, members: tc.members}.call())
			got := e.c.SMembers(e.ctx, key).Val()
			if diff := cmp.Diff(tc.members, got, cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("set (-want +got):\n%s", diff)
			}
			if !e.pexpireAt(t, key).Equal(at) {
				t.Errorf("expires %v, want %v", e.pexpireAt(t, key), at)
			}
		})
	}
}

// erase_chat.lua deletes a chat and the delivery it names, answering that
// delivery's key.
func TestEraseChatScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name     string
		delivery bool
	}{
		{name: "with a queued delivery", delivery: true},
		{name: "without"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck := chatKey("shop", tc.name)
			want := ""
			e.c.HSet(e.ctx, ck, "t", "1")
			if tc.delivery {
				want = ck + ":w:d1"
				e.c.HSet(e.ctx, want, "i", "d1")
				e.c.HSet(e.ctx, ck, "wd", want)
			}
			c := eraseChatArgs{chat: ck}.call()
			e.run(t, c)
			got, err := decodeEraseChat(c)
			if err != nil || got != want {
				t.Fatalf("reply %q, %v; want %q", got, err, want)
			}
			if n := e.c.Exists(e.ctx, ck, ck+":w:d1").Val(); n != 0 {
				t.Errorf("%d keys left", n)
			}
		})
	}
}

// replace_records.lua replaces a records zset whole, expiring it with the
// newest.
func TestReplaceRecordsScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name    string
		records []redis.Z
	}{
		{name: "one", records: []redis.Z{{Member: "r1", Score: float64(ms(luaT0.Add(time.Hour)))}}},
		{name: "two", records: []redis.Z{{Member: "r1", Score: float64(ms(luaT0.Add(2 * time.Hour)))}, {Member: "r2", Score: float64(ms(luaT0.Add(time.Hour)))}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := proofKey("shop", tc.name)
			e.c.ZAdd(e.ctx, key, redis.Z{Member: "old", Score: 1})
			e.run(t, replaceRecordsArgs{key: key, records: tc.records}.call())
			want, top := map[string]int64{}, int64(0)
			for _, z := range tc.records {
				want[z.Member.(string)] = int64(z.Score)
				top = max(top, int64(z.Score))
			}
			if got := zscores(t, e, key); !cmp.Equal(got, want) {
				t.Errorf("records %v, want %v", got, want)
			}
			if got := e.pexpireAt(t, key); ms(got) != top {
				t.Errorf("expires %v, want %d", got, top)
			}
		})
	}
}

// settle_erasure.lua writes the audit entry of an erasure that still owes,
// once, and drops its marker either way.
func TestSettleErasureScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	site := &visitor.Site{ID: "shop"}
	entry := visitor.AuditEntry{Time: luaT0, Actor: "dpo", Action: "subject.erase", Target: "subj"}
	for _, tc := range []struct {
		name    string
		owes    bool
		entries int // audit entries after
	}{
		{name: "owed", owes: true, entries: 1},
		{name: "settled already", entries: 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.c.ZAdd(e.ctx, erasuresKey("shop"), redis.Z{Member: "m1", Score: 1})
			if tc.owes {
				e.c.HSet(e.ctx, erasuresOwedKey("shop"), "m1", "{}")
			}
			c := settleErasureArgs{site: "shop", marker: "m1", entry: entry, window: 365 * 24 * time.Hour}.call()
			e.run(t, c)
			if wrote, err := decodeLeft(c); err != nil || wrote != tc.owes {
				t.Errorf("wrote %v, %v; want %v", wrote, err, tc.owes)
			}
			log, _, err := e.s.AuditLog(e.ctx, site, "", 10)
			if err != nil || len(log) != tc.entries || log[0].Target != "subj" || log[0].Count != 1 {
				t.Errorf("audit log %+v, %v; want %d entry of subj", log, err, tc.entries)
			}
			if n := e.c.Exists(e.ctx, erasuresKey("shop"), erasuresOwedKey("shop")).Val(); n != 0 {
				t.Errorf("marker or owed left: %d keys", n)
			}
		})
	}
}

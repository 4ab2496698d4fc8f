package redisstore

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// enqueue.lua writes a delivery with its expiry and enters one of a visitor
// in the visitor's delivery set, which lasts as long as its newest delivery.
func TestEnqueueScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	k := keysOf("shop", "vk")
	for _, tc := range []struct {
		name     string
		delivery string
		set      string
		expireAt time.Time
		wantSet  []string
		setUntil time.Time
	}{
		{name: "ids only", delivery: hookKey("shop", "d1"), expireAt: luaT0.Add(time.Hour)},
		{name: "a visitor's", delivery: k.profile + ":w:d2", set: k.deliveries, expireAt: luaT0.Add(2 * time.Hour),
			wantSet: []string{k.profile + ":w:d2"}, setUntil: luaT0.Add(2 * time.Hour)},
		{name: "an earlier one does not shorten the set", delivery: k.profile + ":w:d3", set: k.deliveries, expireAt: luaT0.Add(time.Hour),
			wantSet: []string{k.profile + ":w:d2", k.profile + ":w:d3"}, setUntil: luaT0.Add(2 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.run(t, enqueueArgs{delivery: tc.delivery, set: tc.set, expireAt: tc.expireAt, fields: []any{"i", "id", "n", 0}}.call())
			if got := e.c.HGetAll(e.ctx, tc.delivery).Val(); !cmp.Equal(got, map[string]string{"i": "id", "n": "0"}) {
				t.Errorf("delivery %v", got)
			}
			if !e.pexpireAt(t, tc.delivery).Equal(tc.expireAt) {
				t.Errorf("delivery expires %v, want %v", e.pexpireAt(t, tc.delivery), tc.expireAt)
			}
			if tc.set == "" {
				return
			}
			if diff := cmp.Diff(tc.wantSet, e.c.SMembers(e.ctx, tc.set).Val(), cmpopts.SortSlices(func(a, b string) bool { return a < b })); diff != "" {
				t.Errorf("delivery set (-want +got):\n%s", diff)
			}
			if !e.pexpireAt(t, tc.set).Equal(tc.setUntil) {
				t.Errorf("set expires %v, want %v", e.pexpireAt(t, tc.set), tc.setUntil)
			}
		})
	}
}

// queue.lua schedules a delivery (a later call moves it) and renews the
// queue's TTL; claim.lua leases the due ones, at most max, in due order.
func TestQueueAndClaimScripts(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	q := queueKey("shop")
	for _, d := range []struct {
		key string
		due time.Time
	}{{"d1", luaT0}, {"d2", luaT0.Add(time.Second)}, {"d3", luaT0.Add(time.Hour)}, {"d1", luaT0.Add(2 * time.Second)}} {
		e.run(t, queueArgs{key: q, delivery: d.key, due: d.due, ttl: time.Hour}.call())
	}
	if ttl := e.c.PTTL(e.ctx, q).Val(); ttl <= 59*time.Minute {
		t.Errorf("queue TTL %v, want an hour", ttl)
	}
	for _, tc := range []struct {
		name string
		now  time.Time
		max  int
		want []string
	}{
		{name: "nothing due yet", now: luaT0.Add(-time.Second), max: 10, want: []string{}},
		{name: "at most max, earliest first", now: luaT0.Add(5 * time.Second), max: 1, want: []string{"d2"}},
		{name: "a leased one is not claimed again", now: luaT0.Add(5 * time.Second), max: 10, want: []string{"d1"}},
		{name: "after the lease (same lease end: member order)", now: luaT0.Add(2 * time.Minute), max: 10, want: []string{"d1", "d2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := claimArgs{key: q, now: tc.now, lease: time.Minute, max: tc.max}.call()
			e.run(t, c)
			got, err := decodeKeys(c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("claimed (-want +got):\n%s", diff)
			}
			for _, k := range got {
				if s := e.c.ZScore(e.ctx, q, k).Val(); int64(s) != ms(tc.now.Add(time.Minute)) {
					t.Errorf("%s leased until %v, want %v", k, int64(s), ms(tc.now.Add(time.Minute)))
				}
			}
		})
	}
}

// retry.lua records attempts on a delivery that exists and creates none.
func TestRetryScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name   string
		exists bool
		want   map[string]string
	}{
		{name: "queued", exists: true, want: map[string]string{"i": "d1", "n": "3"}},
		{name: "erased meanwhile", want: map[string]string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := hookKey("shop", tc.name)
			if tc.exists {
				e.c.HSet(e.ctx, key, "i", "d1", "n", "0")
			}
			e.run(t, retryArgs{delivery: key, attempts: 3}.call())
			if diff := cmp.Diff(tc.want, e.c.HGetAll(e.ctx, key).Val()); diff != "" {
				t.Errorf("delivery (-want +got):\n%s", diff)
			}
		})
	}
}

// purge.lua deletes every delivery a visitor's set names and the set;
// purge_chat.lua those that name a chat (or name none: written before the
// field), and drops gone ones from the set.
func TestPurgeScripts(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name    string
		chat    string // "" for purge.lua
		want    []string
		wantSet []string
	}{
		{name: "purge all", want: []string{"w:a", "w:b", "w:old"}},
		{name: "purge a chat's", chat: "c1", want: []string{"w:a", "w:old"}, wantSet: []string{"w:b"}},
		{name: "purge a chat named nowhere", chat: "c9", want: []string{"w:old"}, wantSet: []string{"w:a", "w:b"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := keysOf("shop", "vk-"+tc.name)
			d := func(s string) string { return k.profile + ":" + s }
			e.c.HSet(e.ctx, d("w:a"), "i", "a", "c", "c1,c2")
			e.c.HSet(e.ctx, d("w:b"), "i", "b", "c", "c2")
			e.c.HSet(e.ctx, d("w:old"), "i", "old")
			e.c.SAdd(e.ctx, k.deliveries, d("w:a"), d("w:b"), d("w:old"), d("w:gone"))
			c := purgeArgs{set: k.deliveries}.call()
			if tc.chat != "" {
				c = purgeChatArgs{set: k.deliveries, chatID: tc.chat}.call()
			}
			e.run(t, c)
			got, err := decodeKeys(c)
			if err != nil {
				t.Fatal(err)
			}
			var want, wantSet []string
			for _, s := range tc.want {
				want = append(want, d(s))
			}
			for _, s := range tc.wantSet {
				wantSet = append(wantSet, d(s))
			}
			if tc.chat == "" {
				want = append(want, d("w:gone")) // purge.lua answers what the set named
			}
			sorted := cmpopts.SortSlices(func(a, b string) bool { return a < b })
			if diff := cmp.Diff(want, got, sorted); diff != "" {
				t.Errorf("purged (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(wantSet, e.c.SMembers(e.ctx, k.deliveries).Val(), sorted, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("delivery set (-want +got):\n%s", diff)
			}
			for _, s := range tc.want {
				if e.c.Exists(e.ctx, d(s)).Val() != 0 {
					t.Errorf("%s not deleted", s)
				}
			}
		})
	}
}

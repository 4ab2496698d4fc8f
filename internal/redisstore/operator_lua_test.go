package redisstore

import (
	"testing"
	"time"

	"github.com/visitord/visitord/internal/visitor"
)

// live.lua answers a visitor's current session, nothing for a visitor
// without one.
func TestLiveScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name  string
		hits  []hitArgs
		want  bool
		pages int
	}{
		{name: "no visitor"},
		{name: "one page", hits: []hitArgs{hitOf("x", visitor.HitPageview, luaT0)}, want: true, pages: 1},
		{name: "two pages", hits: []hitArgs{hitOf("x", visitor.HitPageview, luaT0), hitOf("x", visitor.HitPageview, luaT0.Add(time.Minute))},
			want: true, pages: 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vkey := "vk-" + tc.name
			k := keysOf("shop", vkey)
			for _, h := range tc.hits {
				h.keys = k
				e.hit(t, h)
			}
			c := liveArgs{keys: k}.call()
			e.run(t, c)
			got, ok := decodeLive(c)
			if ok != tc.want {
				t.Fatalf("found %v, want %v", ok, tc.want)
			}
			if !ok {
				return
			}
			last := tc.hits[len(tc.hits)-1]
			sid := e.c.HGet(e.ctx, k.profile, "sid").Val()
			if got.SessionID != sid || got.Pages != tc.pages || !got.LastSeen.Equal(last.now) || !got.SessionStart.Equal(luaT0) ||
				got.CurrentURL != last.page.URL || got.Device != last.device || got.Location != last.location || got.Referrer != last.page.Referrer {
				t.Errorf("live entry %+v, want session %s of %d pages last seen %v", got, sid, tc.pages, last.now)
			}
		})
	}
}

// stream_hold.lua gives a key at most max places, renews a held one and
// drops leases that ended.
func TestStreamHoldScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	key := streamsKey("shop", "agent-1")
	for _, tc := range []struct {
		name   string
		stream string
		now    time.Time
		want   bool
	}{
		{name: "first", stream: "a", now: luaT0, want: true},
		{name: "second", stream: "b", now: luaT0, want: true},
		{name: "third over the limit", stream: "c", now: luaT0, want: false},
		{name: "renewal of a held place", stream: "a", now: luaT0.Add(time.Second), want: true},
		{name: "after the others' leases ended", stream: "c", now: luaT0.Add(2 * time.Minute), want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			until := tc.now.Add(time.Minute)
			c := streamHoldArgs{key: key, now: tc.now, until: until, streamID: tc.stream, max: 2}.call()
			e.run(t, c)
			got, err := decodeStreamHold(c)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.want {
				t.Fatalf("held %v, want %v", got, tc.want)
			}
			if tc.want && !e.pexpireAt(t, key).Equal(until) {
				t.Errorf("expires %v, want %v (the last lease)", e.pexpireAt(t, key), until)
			}
		})
	}
}

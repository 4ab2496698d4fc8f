package redisstore

import (
	"crypto/sha1"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// flush_live.lua and flush_subjects.lua (lib_flush.lua) add what a pod
// buffered, never move an entry back, leave out the vkeys an erasure marked,
// and answer how many entries they wrote.
func TestFlushScripts(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	mark := func(t *testing.T, key string, vkeys ...string) {
		t.Helper()
		for _, v := range vkeys {
			sum := sha1.Sum([]byte(v))
			if err := e.c.ZAdd(e.ctx, key, redis.Z{Score: 1, Member: hex.EncodeToString(sum[:])}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	type entry struct {
		vkey  string
		score int64
	}
	// A subject's score is when its data expires (ms): the rows' scores are
	// offsets from an hour ahead, as the index trims what has expired and
	// expires itself with its highest score.
	now := time.Now().UnixMilli()
	base := now + time.Hour.Milliseconds()
	args := func(head []any, off int64, es ...entry) []any {
		for _, x := range es {
			head = append(head, x.vkey, strconv.FormatInt(off+x.score, 10))
		}
		return head
	}
	for _, tc := range []struct {
		name    string
		subject bool // flush_subjects.lua, else flush_live.lua
		before  []entry
		erased  []string
		flush   []entry
		want    int64
		scores  map[string]float64 // what the set holds after; absent: not there
	}{
		{name: "live: adds every entry", flush: []entry{{"a", 5000}, {"b", 6000}}, want: 2,
			scores: map[string]float64{"a": 5000, "b": 6000}},
		{name: "live: leaves out an erased visitor", erased: []string{"b"}, flush: []entry{{"a", 5000}, {"b", 6000}}, want: 1,
			scores: map[string]float64{"a": 5000}},
		{name: "live: never moves an entry back", before: []entry{{"a", 9000}}, flush: []entry{{"a", 5000}}, want: 1,
			scores: map[string]float64{"a": 9000}},
		{name: "live: only erased visitors writes nothing", erased: []string{"a"}, flush: []entry{{"a", 5000}}, want: 0,
			scores: map[string]float64{}},
		{name: "subjects: adds every entry", subject: true, flush: []entry{{"a", 5000}, {"b", 6000}}, want: 2,
			scores: map[string]float64{"a": 5000, "b": 6000}},
		{name: "subjects: leaves out an erased visitor", subject: true, erased: []string{"a"}, flush: []entry{{"a", 5000}, {"b", 6000}}, want: 1,
			scores: map[string]float64{"b": 6000}},
		{name: "subjects: a score only grows", subject: true, before: []entry{{"a", 9000}}, flush: []entry{{"a", 5000}}, want: 1,
			scores: map[string]float64{"a": 9000}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := "s" + strconv.Itoa(len(tc.name)) + tc.name[:3] + strconv.FormatBool(tc.subject)
			set, marks := liveKey(site, 0), erasedShardKey(site, 0)
			if tc.subject {
				set, marks = subjectsKey(site), erasedKey(site)
			}
			var off int64
			if tc.subject {
				off = base
			}
			for _, x := range tc.before {
				if err := e.c.ZAdd(e.ctx, set, redis.Z{Score: float64(off + x.score), Member: x.vkey}).Err(); err != nil {
					t.Fatal(err)
				}
			}
			mark(t, marks, tc.erased...)
			c := &call{script: flushLiveScript, keys: []string{set, marks}, args: args([]any{int64(60_000), 1000, int64(6000)}, 0, tc.flush...)}
			if tc.subject {
				c = &call{script: flushSubjectsScript, keys: []string{set, marks}, args: args([]any{now}, base, tc.flush...)}
			}
			e.run(t, c)
			if n, err := c.cmd.Int64(); err != nil || n != tc.want {
				t.Errorf("reply %d, %v; want %d entries written", n, err, tc.want)
			}
			got := map[string]float64{}
			for _, z := range e.c.ZRangeWithScores(e.ctx, set, 0, -1).Val() {
				got[z.Member.(string)] = z.Score
			}
			if len(got) != len(tc.scores) {
				t.Fatalf("set holds %v, want %v", got, tc.scores)
			}
			for v, s := range tc.scores {
				if got[v] != s+float64(off) {
					t.Errorf("%s scored %v, want %v (set %v)", v, got[v], s, got)
				}
			}
		})
	}
}

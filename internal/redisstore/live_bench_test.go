package redisstore

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// benchLiveVisitors is how many live visitors BenchmarkLive100k puts on one site.
const benchLiveVisitors = 100_000

// benchPopulateLive writes n live visitors of site straight into Redis, as the
// hit script leaves them: a profile hash, its current session's hash with the
// fields the live view reads and an entry in the live set, every key with a TTL
// (invariant 3).
func benchPopulateLive(tb testing.TB, c redis.UniversalClient, site string, n int, now time.Time) {
	tb.Helper()
	ctx := context.Background()
	const batch = 5000
	for start := 0; start < n; start += batch {
		pipe := c.Pipeline()
		members := map[int][]redis.Z{}
		for i := start; i < min(start+batch, n); i++ {
			vkey := fmt.Sprintf("bench%011d", i) // 16 characters, as Hasher.Short gives
			last := now.Add(-time.Duration(i%240_000) * time.Millisecond)
			profile, sid := keysOf(site, vkey).profile, fmt.Sprintf("s%015d", i)
			pipe.HSet(ctx, profile, "vid", vkey, "sid", sid, "ns", 1, "fs", ms(last), "w", ms(last))
			pipe.Expire(ctx, profile, time.Hour)
			list := sessionKey(profile, sid)
			pipe.RPush(ctx, list, recordItem(map[string]string{"ss": fmt.Sprint(ms(last.Add(-10 * time.Minute))), "sl": fmt.Sprint(ms(last)),
				"np": fmt.Sprint(1 + i%9), "cu": fmt.Sprintf("https://bench.example/products/%d?utm_source=news", i),
				"ct": "A product page of some length", "co": "DE", "br": "Chrome", "os": "Windows 10"}))
			pipe.Expire(ctx, list, time.Hour)
			members[shardOf(vkey)] = append(members[shardOf(vkey)], redis.Z{Score: float64(ms(last)), Member: vkey})
		}
		for shard, m := range members {
			pipe.ZAdd(ctx, liveKey(site, shard), m...)
			pipe.Expire(ctx, liveKey(site, shard), time.Hour)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			tb.Fatalf("populate: %v", err)
		}
	}
}

// BenchmarkLive100k measures one page of 200 of the live view over a site with
// 100k live visitors, and reports the time to walk all of them in pages of 200
// (keyset paging across the live set's shards: each page reads up to 201 entries
// per shard, before the previous page's last activity time).
func BenchmarkLive100k(b *testing.B) {
	rs := redistest.Start(b)
	c := rs.Client(b)
	s := New(c)
	site := &visitor.Site{ID: "bench", SessionTimeout: 30 * time.Minute}
	now := time.Now().UTC()
	benchPopulateLive(b, c, site.ID, benchLiveVisitors, now)
	ctx := context.Background()
	since := now.Add(-5 * time.Minute)

	for b.Loop() {
		rows, more, err := s.Live(ctx, site, since, visitor.LivePos{}, 200)
		if err != nil || len(rows) != 200 || more == nil {
			b.Fatalf("Live = %d rows, more %v, err %v", len(rows), more, err)
		}
	}
	b.StopTimer()

	start := time.Now()
	total, pages := 0, 0
	seen := map[string]bool{}
	for pos := (visitor.LivePos{}); ; {
		rows, next, err := s.Live(ctx, site, since, pos, 200)
		if err != nil {
			b.Fatal(err)
		}
		for _, r := range rows {
			if seen[r.SessionID] {
				b.Fatalf("session %s listed twice", r.SessionID)
			}
			seen[r.SessionID] = true
		}
		total += len(rows)
		pages++
		if next == nil {
			break
		}
		pos = *next
	}
	walk := time.Since(start)
	if total != benchLiveVisitors {
		b.Fatalf("walk saw %d visitors in %d pages, want %d", total, pages, benchLiveVisitors)
	}
	b.ReportMetric(float64(walk.Microseconds())/1000, "ms/full-walk")
	redistest.AssertAllKeysHaveTTL(b, c, nil)
}

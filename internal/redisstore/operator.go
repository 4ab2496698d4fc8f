package redisstore

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
)

// liveScript reads a live visitor's current session: the profile's current
// session id and that session's hash (live.lua).
var liveScript = declare("live.lua", "lib_session.lua")

// liveArgs are live.lua's KEYS by name; it takes no ARGV.
type liveArgs struct{ keys visitorKeys }

func (a liveArgs) call() *call {
	return &call{script: liveScript, keys: []string{a.keys.profile}}
}

// decodeLive reads live.lua's reply: the visitor's current session, false
// when it has none (the live entry outlived the visitor).
func decodeLive(c *call) (visitor.LiveEntry, bool) {
	v, _ := c.cmd.Slice()
	if len(v) != 15 {
		return visitor.LiveEntry{}, false
	}
	str := func(j int) string { s, _ := v[j].(string); return s }
	if str(0) == "" {
		return visitor.LiveEntry{}, false
	}
	np, _ := strconv.Atoi(str(3))
	return visitor.LiveEntry{
		SessionID: str(0), SessionStart: msTime(str(1)), LastSeen: msTime(str(2)), Pages: np,
		CurrentURL: str(4), CurrentTitle: str(5),
		Location: visitor.Location{Country: str(6), Region: str(7), City: str(8), TimeZone: str(9)},
		Device:   visitor.Device{Browser: str(10), Version: str(11), OS: str(12), Mobile: str(13) == "1"},
		Referrer: str(14),
	}, true
}

// streamHoldScript takes or renews a place among an API key's open live
// streams (stream_hold.lua).
var streamHoldScript = declare("stream_hold.lua")

// streamHoldArgs are stream_hold.lua's KEYS and ARGV by name.
type streamHoldArgs struct {
	key      string // ls:{site}:<key id>
	now      time.Time
	until    time.Time // the end of this stream's lease
	streamID string
	max      int // how many streams the key may hold
}

func (a streamHoldArgs) call() *call {
	return &call{script: streamHoldScript, keys: []string{a.key}, args: []any{ms(a.now), ms(a.until), a.streamID, a.max}}
}

// decodeStreamHold reads stream_hold.lua's reply: whether the stream holds its place.
func decodeStreamHold(c *call) (bool, error) {
	n, err := c.cmd.Int()
	if err != nil {
		return false, translate(err)
	}
	return n == 1, nil
}

// HoldStream takes or renews stream id's place among keyID's open live streams
// of site until until; false when max other streams hold theirs.
func (s *Store) HoldStream(ctx context.Context, site *visitor.Site, keyID, id string, now, until time.Time, max int) (bool, error) {
	c := streamHoldArgs{key: streamsKey(site.ID, keyID), now: now, until: until, streamID: id, max: max}.call()
	if err := s.run(ctx, c); err != nil {
		return false, fmt.Errorf("hold stream: %w", err)
	}
	held, err := decodeStreamHold(c)
	if err != nil {
		return false, fmt.Errorf("hold stream: %w", err)
	}
	return held, nil
}

// ReleaseStream gives stream id's place back.
func (s *Store) ReleaseStream(ctx context.Context, site *visitor.Site, keyID, id string) error {
	if err := s.c.ZRem(ctx, streamsKey(site.ID, keyID), id).Err(); err != nil {
		return fmt.Errorf("release stream: %w", translate(err))
	}
	return nil
}

// Live returns the sessions active since, most recent first, from pos on,
// merged across the live set's shards. Entries whose visitor has gone are
// dropped from the live set as they are met (read repair).
func (s *Store) Live(ctx context.Context, site *visitor.Site, since time.Time, pos visitor.LivePos, limit int) ([]visitor.LiveEntry, *visitor.LivePos, error) {
	max := "+inf"
	if pos.Before > 0 {
		max = strconv.FormatInt(pos.Before, 10)
	}
	pipe := s.c.Pipeline()
	shards := make([]*redis.ZSliceCmd, SiteShards)
	for i := range shards {
		shards[i] = pipe.ZRevRangeByScoreWithScores(ctx, liveKey(site.ID, i), &redis.ZRangeBy{
			Min: strconv.FormatInt(ms(since), 10), Max: max, Count: int64(limit + pos.Skip + 1),
		})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("live: %w", translate(err))
	}
	type entry struct {
		score int64
		vkey  string
		shard int
	}
	var all []entry
	for i, cmd := range shards {
		for _, z := range cmd.Val() {
			m, _ := z.Member.(string)
			all = append(all, entry{score: int64(z.Score), vkey: m, shard: i})
		}
	}
	// Most recent first; ties in a fixed order, so that a position can skip them.
	sort.Slice(all, func(a, b int) bool {
		if all[a].score != all[b].score {
			return all[a].score > all[b].score
		}
		return all[a].vkey > all[b].vkey
	})
	skip := 0
	for skip < pos.Skip && skip < len(all) && all[skip].score == pos.Before {
		skip++
	}
	all = all[skip:]
	var next *visitor.LivePos
	if len(all) > limit {
		all = all[:limit]
		last := all[len(all)-1].score
		n := 0
		for _, e := range all {
			if e.score == last {
				n++
			}
		}
		if last == pos.Before {
			n += skip
		}
		next = &visitor.LivePos{Before: last, Skip: n}
	}
	calls := make([]*call, len(all))
	for i, e := range all {
		calls[i] = liveArgs{keys: keysOf(site.ID, e.vkey)}.call()
	}
	if err := s.run(ctx, calls...); err != nil {
		return nil, nil, fmt.Errorf("live: %w", err)
	}
	repair := s.c.Pipeline()
	rows := make([]visitor.LiveEntry, 0, len(all))
	for i, c := range calls {
		row, ok := decodeLive(c)
		if !ok {
			repair.ZRem(ctx, liveKey(site.ID, all[i].shard), all[i].vkey)
			continue
		}
		if row.LastSeen.Before(since) {
			continue // the session went quiet since the live entry was written
		}
		rows = append(rows, row)
	}
	if repair.Len() > 0 {
		if _, err := repair.Exec(ctx); err != nil {
			return nil, nil, fmt.Errorf("live repair: %w", translate(err))
		}
	}
	return rows, next, nil
}

// Stats returns a site's per-day counters: the sum of its shards.
func (s *Store) Stats(ctx context.Context, site *visitor.Site, day time.Time) (map[string]int64, error) {
	pipe := s.c.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, SiteShards)
	for i := range cmds {
		cmds[i] = pipe.HGetAll(ctx, statsKey(site.ID, i, day))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("stats: %w", translate(err))
	}
	out := map[string]int64{}
	for _, cmd := range cmds {
		for k, v := range cmd.Val() {
			n, _ := strconv.ParseInt(v, 10, 64)
			out[k] += n
		}
	}
	return out, nil
}

// StatsDays returns a site's per-day counters of each of days, in their order:
// every shard of every day in one pipeline.
func (s *Store) StatsDays(ctx context.Context, site *visitor.Site, days []time.Time) ([]map[string]int64, error) {
	pipe := s.c.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, 0, len(days)*SiteShards)
	for _, day := range days {
		for i := range SiteShards {
			cmds = append(cmds, pipe.HGetAll(ctx, statsKey(site.ID, i, day)))
		}
	}
	if len(cmds) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("stats: %w", translate(err))
		}
	}
	out := make([]map[string]int64, len(days))
	for d := range days {
		m := map[string]int64{}
		for _, cmd := range cmds[d*SiteShards : (d+1)*SiteShards] {
			for k, v := range cmd.Val() {
				n, _ := strconv.ParseInt(v, 10, 64)
				m[k] += n
			}
		}
		out[d] = m
	}
	return out, nil
}

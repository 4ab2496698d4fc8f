package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
)

// streamsKey names the places of one API key's open live streams on a site.
func streamsKey(site, keyID string) string { return "ls:{" + site + "}:" + keyID }

// streamHoldScript takes or renews a place among an API key's open live streams.
//
//	KEYS[1]  ls:{site}:<key id>   zset of stream ids scored by the end of their lease (ms)
//	ARGV[1]  now (ms): leases that ended before are dropped (a pod that died)
//	ARGV[2]  the end of this stream's lease (ms)
//	ARGV[3]  the stream's id
//	ARGV[4]  how many streams the key may hold
//
// Reply: 1 when the stream holds its place, 0 when the others hold them all.
// The key expires with its last lease.
var streamHoldScript = redis.NewScript(`
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
if not redis.call('ZSCORE', KEYS[1], ARGV[3]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIREAT', KEYS[1], top[2])
return 1
`)

// HoldStream takes or renews stream id's place among keyID's open live streams
// of site until until; false when max other streams hold theirs.
func (s *Store) HoldStream(ctx context.Context, site *visitor.Site, keyID, id string, now, until time.Time, max int) (bool, error) {
	n, err := streamHoldScript.Run(ctx, s.c, []string{streamsKey(site.ID, keyID)}, ms(now), ms(until), id, max).Int()
	if err != nil {
		return false, fmt.Errorf("hold stream: %w", translate(err))
	}
	return n == 1, nil
}

// ReleaseStream gives stream id's place back.
func (s *Store) ReleaseStream(ctx context.Context, site *visitor.Site, keyID, id string) error {
	if err := s.c.ZRem(ctx, streamsKey(site.ID, keyID), id).Err(); err != nil {
		return fmt.Errorf("release stream: %w", translate(err))
	}
	return nil
}

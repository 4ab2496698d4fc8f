package redisstore

import (
	"context"
	"fmt"
	"time"

	"github.com/go-redis/redis_rate/v10"

	"github.com/visitord/visitord/internal/visitor"
)

var _ visitor.RateLimiter = (*RateLimiter)(nil)

// RateLimiter is visitor.RateLimiter over redis_rate: a GCRA limit counted in
// one Redis key per caller key (redis_rate prefixes "rate:", see keys.go), so
// every pod applies the same limit. redis_rate gives each key a TTL of its
// window; a refused request writes nothing. It is safe for concurrent use.
type RateLimiter struct {
	l *redis_rate.Limiter
}

// NewRateLimiter returns a RateLimiter over the store's Redis.
func NewRateLimiter(s *Store) *RateLimiter {
	return &RateLimiter{l: redis_rate.NewLimiter(s.c)}
}

// Allow counts one request under key against perMinute requests a minute (a
// burst of perMinute, refilled evenly). A perMinute below 1 allows everything.
// On an error it returns ok true with the error (wrapping
// visitor.ErrStoreUnavailable when Redis cannot be reached in time): limits
// fail open, and the caller logs.
func (r *RateLimiter) Allow(ctx context.Context, key string, perMinute int) (bool, time.Duration, error) {
	if perMinute < 1 {
		return true, 0, nil
	}
	res, err := r.l.Allow(ctx, key, redis_rate.PerMinute(perMinute))
	if err != nil {
		return true, 0, fmt.Errorf("rate limit: %w", translate(err))
	}
	if res.Allowed > 0 {
		return true, 0, nil
	}
	return false, res.RetryAfter, nil
}

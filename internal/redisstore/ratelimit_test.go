package redisstore_test

import (
	"bytes"
	"context"
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

func newHasher(tb testing.TB) *visitor.Hasher {
	tb.Helper()
	h, err := visitor.NewHasher(bytes.Repeat([]byte("k"), visitor.MinIndexKeyBytes))
	if err != nil {
		tb.Fatal(err)
	}
	return h
}

func TestRateLimiterAllow(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	c := rs.Client(t)
	rl := redisstore.NewRateLimiter(redisstore.New(c))
	h := newHasher(t)
	ctx := context.Background()
	ip := netip.MustParseAddr("203.0.113.77")
	key := visitor.RateLimitKey(h, "shop", visitor.LimitChat, visitor.BlockSubject(ip))

	for i := range 5 {
		ok, retry, err := rl.Allow(ctx, key, 5)
		if err != nil || !ok || retry != 0 {
			t.Fatalf("request %d: Allow = %v, %v, %v; want allowed", i+1, ok, retry, err)
		}
	}
	ok, retry, err := rl.Allow(ctx, key, 5)
	if err != nil || ok {
		t.Fatalf("6th request: Allow = %v, %v, %v; want refused", ok, retry, err)
	}
	// 5 a minute refill one every 12 s.
	if retry <= 0 || retry > 12*time.Second {
		t.Errorf("6th request: retryAfter %v, want in (0, 12s]", retry)
	}

	for _, tc := range []struct {
		name string
		key  string
	}{
		{name: "another ip", key: visitor.RateLimitKey(h, "shop", visitor.LimitChat, visitor.BlockSubject(netip.MustParseAddr("198.51.100.7")))},
		{name: "another site", key: visitor.RateLimitKey(h, "blog", visitor.LimitChat, visitor.BlockSubject(ip))},
		{name: "another kind", key: visitor.RateLimitKey(h, "shop", visitor.LimitConsent, visitor.BlockSubject(ip))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if ok, _, err := rl.Allow(ctx, tc.key, 5); err != nil || !ok {
				t.Errorf("Allow(%s) = %v, %v; want allowed", tc.key, ok, err)
			}
		})
	}

	// The same /24 shares the budget: it is the truncated IP that is counted.
	neighbour := visitor.RateLimitKey(h, "shop", visitor.LimitChat, visitor.BlockSubject(netip.MustParseAddr("203.0.113.8")))
	if neighbour != key {
		t.Errorf("key of a neighbour in the same /24 = %q, want %q", neighbour, key)
	}

	keys := redistest.Keys(t, c)
	if len(keys) != 4 {
		t.Errorf("keys = %q, want one per (site, kind, IP block): 4", keys)
	}
	for _, k := range keys {
		if !strings.HasPrefix(k, "rate:rl:{") {
			t.Errorf("key %q is not a rate-limit key", k)
		}
		for _, leak := range []string{"203.0.113", "198.51.100", "/24"} {
			if strings.Contains(k, leak) {
				t.Errorf("key %q holds %q", k, leak)
			}
		}
	}
	ttl, err := c.TTL(ctx, "rate:"+key).Result()
	if err != nil {
		t.Fatal(err)
	}
	if ttl <= 0 || ttl > time.Minute {
		t.Errorf("TTL of %s = %v, want in (0, 1m]", key, ttl)
	}
	redistest.AssertAllKeysHaveTTL(t, c, nil)
}

func TestRateLimiterNoLimit(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	c := rs.Client(t)
	rl := redisstore.NewRateLimiter(redisstore.New(c))
	for range 10 {
		if ok, _, err := rl.Allow(context.Background(), "rl:{shop}:chat:x", 0); err != nil || !ok {
			t.Fatalf("Allow with no limit = %v, %v; want allowed", ok, err)
		}
	}
	if keys := redistest.Keys(t, c); len(keys) != 0 {
		t.Errorf("no limit wrote keys %q", keys)
	}
}

func TestRateLimiterFailsOpen(t *testing.T) {
	t.Parallel()
	rs := redistest.Start(t)
	rl := redisstore.NewRateLimiter(redisstore.New(rs.Client(t)))
	rs.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	ok, retry, err := rl.Allow(ctx, "rl:{shop}:chat:x", 5)
	if !ok || retry != 0 {
		t.Errorf("Allow with Redis down = %v, %v; want allowed (fail open)", ok, retry)
	}
	if !errors.Is(err, visitor.ErrStoreUnavailable) {
		t.Errorf("Allow with Redis down: error %v, want ErrStoreUnavailable", err)
	}
}

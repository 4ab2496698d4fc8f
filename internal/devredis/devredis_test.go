package devredis_test

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/devredis"
	"github.com/visitord/visitord/internal/redisstore"
)

// waitBound bounds every poll: the embedded clock ticks every 250ms.
const waitBound = 5 * time.Second

// client starts an embedded Redis and connects to it as cmd/visitord does in
// development: through its URL and redisstore.Connect.
func client(t *testing.T) redis.UniversalClient {
	t.Helper()
	srv, err := devredis.Start()
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	t.Cleanup(srv.Close)
	c, err := redisstore.Connect(srv.URL())
	if err != nil {
		t.Fatalf("redisstore.Connect(%q): %v", srv.URL(), err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// Keys expire as wall-clock time passes, without anyone fast-forwarding the
// embedded Redis: every key visitord writes has a TTL (invariant 3), and in
// development they must really go, however the expiry was set (the store
// re-expires records with EXPIREAT when retention shrinks).
func TestKeysExpireAsTimePasses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		expire func(ctx context.Context, c redis.UniversalClient, key string) error
	}{
		{name: "set ex", expire: func(ctx context.Context, c redis.UniversalClient, key string) error {
			return c.Do(ctx, "SET", key, "v", "EX", 1).Err()
		}},
		{name: "set px", expire: func(ctx context.Context, c redis.UniversalClient, key string) error {
			return c.Do(ctx, "SET", key, "v", "PX", 1000).Err()
		}},
		{name: "expire", expire: func(ctx context.Context, c redis.UniversalClient, key string) error {
			if err := c.HSet(ctx, key, "f", "v").Err(); err != nil {
				return err
			}
			return c.Expire(ctx, key, time.Second).Err()
		}},
		{name: "expireat", expire: func(ctx context.Context, c redis.UniversalClient, key string) error {
			if err := c.RPush(ctx, key, "v").Err(); err != nil {
				return err
			}
			return c.PExpireAt(ctx, key, time.Now().Add(time.Second)).Err()
		}},
		{name: "script", expire: func(ctx context.Context, c redis.UniversalClient, key string) error {
			return c.Eval(ctx, `redis.call("ZADD", KEYS[1], 1, "m"); return redis.call("EXPIRE", KEYS[1], 1)`, []string{key}).Err()
		}},
	}
	// One server holds every row's key, so the test waits out one second, not
	// one a row.
	ctx := context.Background()
	c := client(t)
	if err := c.Set(ctx, "long", "v", time.Hour).Err(); err != nil {
		t.Fatalf("SET EX 3600: %v", err)
	}
	for _, tt := range tests {
		if err := tt.expire(ctx, c, tt.name); err != nil {
			t.Fatalf("%s: write with a 1s expiry: %v", tt.name, err)
		}
		if n, err := c.Exists(ctx, tt.name).Result(); err != nil || n != 1 {
			t.Fatalf("%s: EXISTS right after the write = %d, %v; want 1", tt.name, n, err)
		}
	}
	start := time.Now()
	gone := make(map[string]time.Duration, len(tests))
	for len(gone) < len(tests) {
		for _, tt := range tests {
			if _, ok := gone[tt.name]; ok {
				continue
			}
			n, err := c.Exists(ctx, tt.name).Result()
			if err != nil {
				t.Fatalf("%s: EXISTS: %v", tt.name, err)
			}
			if n == 0 {
				gone[tt.name] = time.Since(start)
			}
		}
		if time.Since(start) > waitBound {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, tt := range tests {
		elapsed, ok := gone[tt.name]
		switch {
		case !ok:
			t.Errorf("%s: key with a 1s expiry still there after %s", tt.name, waitBound)
		case elapsed < 500*time.Millisecond:
			t.Errorf("%s: key with a 1s expiry went after %s, before its second was up", tt.name, elapsed)
		}
	}
	if n, err := c.Exists(ctx, "long").Result(); err != nil || n != 1 {
		t.Errorf("EXISTS long = %d, %v; a key with EX 3600 must survive", n, err)
	}
}

func TestTTLDecreases(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c := client(t)
	if err := c.Set(ctx, "k", "v", 10*time.Second).Err(); err != nil {
		t.Fatalf("SET EX 10: %v", err)
	}
	first, err := c.PTTL(ctx, "k").Result()
	if err != nil || first <= 9*time.Second || first > 10*time.Second {
		t.Fatalf("PTTL right after SET EX 10 = %v, %v; want about 10s", first, err)
	}
	start := time.Now()
	for {
		ttl, err := c.PTTL(ctx, "k").Result()
		if err != nil {
			t.Fatalf("PTTL: %v", err)
		}
		if ttl < first {
			if ttl < 8*time.Second {
				t.Errorf("PTTL fell from %v to %v in %s: faster than the wall clock", first, ttl, time.Since(start))
			}
			break
		}
		if time.Since(start) > waitBound {
			t.Fatalf("PTTL still %v after %s, want it to decrease", ttl, time.Since(start))
		}
		time.Sleep(50 * time.Millisecond)
	}
	ttl, err := c.TTL(ctx, "k").Result()
	if err != nil || ttl <= 0 || ttl > 10*time.Second {
		t.Errorf("TTL = %v, %v; want a positive TTL of at most 10s", ttl, err)
	}
}

func TestCloseStopsServing(t *testing.T) {
	t.Parallel()
	srv, err := devredis.Start()
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	c := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1, DialTimeout: time.Second})
	defer c.Close()
	ctx := context.Background()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING: %v", err)
	}
	srv.Close()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Error("PING after Close succeeded")
	}
}

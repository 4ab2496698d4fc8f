package redistest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// scanCount is the COUNT hint for SCAN.
	scanCount = 1000
	// inspectTimeout bounds one AssertAllKeysHaveTTL, Keys or DumpValues.
	inspectTimeout = 30 * time.Second
)

// AssertAllKeysHaveTTL fails tb, listing every offending key, if any key in c
// has no expiry (TTL -1) and allow(key) is false; a nil allow permits none.
// On a cluster client it scans every master.
func AssertAllKeysHaveTTL(tb testing.TB, c redis.UniversalClient, allow func(key string) bool) {
	tb.Helper()
	var mu sync.Mutex
	var persistent []string
	err := forEachNode(c, func(ctx context.Context, node *redis.Client) error {
		keys, err := scanKeys(ctx, node)
		if err != nil {
			return err
		}
		for _, key := range keys {
			ttl, err := node.TTL(ctx, key).Result()
			if err != nil {
				return fmt.Errorf("TTL %q: %w", key, err)
			}
			// -2 means the key expired since SCAN saw it.
			if ttl != -1 || (allow != nil && allow(key)) {
				continue
			}
			mu.Lock()
			persistent = append(persistent, key)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: check TTLs: %v", err)
	}
	if len(persistent) > 0 {
		slices.Sort(persistent)
		tb.Errorf("redistest: %d key(s) without TTL:\n\t%s", len(persistent), strings.Join(persistent, "\n\t"))
	}
}

// Keys returns every key in c, sorted. On a cluster client it scans every
// master.
func Keys(tb testing.TB, c redis.UniversalClient) []string {
	tb.Helper()
	var mu sync.Mutex
	var all []string
	err := forEachNode(c, func(ctx context.Context, node *redis.Client) error {
		keys, err := scanKeys(ctx, node)
		if err != nil {
			return err
		}
		mu.Lock()
		all = append(all, keys...)
		mu.Unlock()
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: list keys: %v", err)
	}
	slices.Sort(all)
	return all
}

// DumpValues returns the value of every key in c rendered as text, one item a
// line: a string as is, a hash as "field=value", a list as its items, a set as
// its members, a sorted set as "member score", a stream as
// "id field=value ...". Hash fields, set and sorted set members are sorted.
// It fails tb on any other type, so that a search of the result for a
// plaintext cannot miss a value. On a cluster client it reads every master.
func DumpValues(tb testing.TB, c redis.UniversalClient) map[string]string {
	tb.Helper()
	var mu sync.Mutex
	values := make(map[string]string)
	err := forEachNode(c, func(ctx context.Context, node *redis.Client) error {
		keys, err := scanKeys(ctx, node)
		if err != nil {
			return err
		}
		for _, key := range keys {
			v, ok, err := renderValue(ctx, node, key)
			if err != nil {
				return fmt.Errorf("read %q: %w", key, err)
			}
			if !ok {
				continue // expired since SCAN saw it
			}
			mu.Lock()
			values[key] = v
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("redistest: dump values: %v", err)
	}
	return values
}

// renderValue reads key as text; ok is false if the key no longer exists.
func renderValue(ctx context.Context, c *redis.Client, key string) (text string, ok bool, err error) {
	typ, err := c.Type(ctx, key).Result()
	if err != nil {
		return "", false, err
	}
	var lines []string
	switch typ {
	case "none":
		return "", false, nil
	case "string":
		s, err := c.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return "", false, nil
		}
		return s, err == nil, err
	case "hash":
		m, err := c.HGetAll(ctx, key).Result()
		if err != nil {
			return "", false, err
		}
		for f, v := range m {
			lines = append(lines, f+"="+v)
		}
		slices.Sort(lines)
	case "list":
		if lines, err = c.LRange(ctx, key, 0, -1).Result(); err != nil {
			return "", false, err
		}
	case "set":
		if lines, err = c.SMembers(ctx, key).Result(); err != nil {
			return "", false, err
		}
		slices.Sort(lines)
	case "zset":
		zs, err := c.ZRangeWithScores(ctx, key, 0, -1).Result()
		if err != nil {
			return "", false, err
		}
		for _, z := range zs {
			lines = append(lines, fmt.Sprint(z.Member)+" "+strconv.FormatFloat(z.Score, 'g', -1, 64))
		}
	case "stream":
		msgs, err := c.XRange(ctx, key, "-", "+").Result()
		if err != nil {
			return "", false, err
		}
		for _, m := range msgs {
			fields := make([]string, 0, len(m.Values))
			for f, v := range m.Values {
				fields = append(fields, f+"="+fmt.Sprint(v))
			}
			slices.Sort(fields)
			lines = append(lines, m.ID+" "+strings.Join(fields, " "))
		}
	default:
		return "", false, fmt.Errorf("unsupported type %q", typ)
	}
	return strings.Join(lines, "\n"), true, nil
}

// scanKeys returns every key on one node, without duplicates.
func scanKeys(ctx context.Context, c *redis.Client) ([]string, error) {
	seen := make(map[string]struct{})
	var cursor uint64
	for {
		keys, next, err := c.Scan(ctx, cursor, "*", scanCount).Result()
		if err != nil {
			return nil, fmt.Errorf("SCAN %s: %w", c.Options().Addr, err)
		}
		for _, k := range keys {
			seen[k] = struct{}{}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	return keys, nil
}

// forEachNode calls fn with a client for every node that owns keys: each
// master of a cluster, each shard of a ring, or c itself. fn may run
// concurrently, so it must not call tb methods that end the test. It does not
// use tb.Context(), which is already cancelled when tb.Cleanup functions run,
// a natural place for AssertAllKeysHaveTTL.
func forEachNode(c redis.UniversalClient, fn func(context.Context, *redis.Client) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), inspectTimeout)
	defer cancel()
	switch c := c.(type) {
	case *redis.ClusterClient:
		return c.ForEachMaster(ctx, fn)
	case *redis.Ring:
		return c.ForEachShard(ctx, fn)
	case *redis.Client:
		return fn(ctx, c)
	default:
		return fmt.Errorf("unsupported client type %T", c)
	}
}

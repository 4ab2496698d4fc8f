package redisstore

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
)

// Store is visitord's Redis store. It is safe for concurrent use.
type Store struct {
	c           redis.UniversalClient
	minReplicas int
	sites       []string
	// siteKeys caches each site's index key names (site id → *siteKeys).
	siteKeys sync.Map
	// siteCalls counts site-index updates: it picks a shard for a counter
	// without a visitor and the calls that trim (trimEvery).
	siteCalls atomic.Uint64
}

// Option sets an optional tunable of the Store.
type Option func(*Store)

// WithSites names the sites whose configuration the store reads.
func WithSites(ids ...string) Option { return func(s *Store) { s.sites = ids } }

// WithMinReplicas makes consent and chat writes wait until n replicas hold them.
func WithMinReplicas(n int) Option { return func(s *Store) { s.minReplicas = n } }

// New returns a Store over c.
func New(c redis.UniversalClient, opts ...Option) *Store {
	s := &Store{c: c}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Ping reports whether Redis answers; ErrStoreUnavailable otherwise.
func (s *Store) Ping(ctx context.Context) error {
	return translate(s.c.Ping(ctx).Err())
}

// LoadScripts loads the store's scripts on every node, so the first page views
// after a start need no fallback; scripts missing later (a restart, a failover)
// are sent whole once.
func (s *Store) LoadScripts(ctx context.Context) error {
	load := func(ctx context.Context, c *redis.Client) error {
		for _, sc := range declared {
			if err := sc.Load(ctx, c).Err(); err != nil {
				return translate(err)
			}
		}
		return nil
	}
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, load)
	}
	for _, sc := range declared {
		if err := sc.Load(ctx, s.c).Err(); err != nil {
			return translate(err)
		}
	}
	return nil
}

// call is one script call of a pipeline.
type call struct {
	script *script
	keys   []string
	args   []any
	cmd    *redis.Cmd
}

// run sends calls in one pipeline: one round trip on a single Redis, one per node
// involved on a Cluster. A call whose script the node lost (NOSCRIPT after a
// restart or failover) is sent again whole; the others ran once.
func (s *Store) run(ctx context.Context, calls ...*call) error {
	return runOn(ctx, s.c, calls...)
}

// runner is what run needs: the client, or one connection of it (redis.Conn).
type runner interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// runOn is run on r: with a redis.Conn every command, fallbacks included, goes
// over that one connection.
func runOn(ctx context.Context, r runner, calls ...*call) error {
	pipe := r.Pipeline()
	for _, c := range calls {
		c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	if _, err := pipe.Exec(ctx); err == nil {
		return nil
	}
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			c.cmd = c.script.Eval(ctx, r, c.keys, c.args...)
		}
	}
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return translate(err)
		}
	}
	return nil
}

// translate turns a driver error into a domain one: a Redis that cannot be reached
// in time is ErrStoreUnavailable; a Redis that answers with an error is a bug.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !redis.HasErrorPrefix(err, "LOADING") && !redis.HasErrorPrefix(err, "READONLY") &&
		!redis.HasErrorPrefix(err, "CLUSTERDOWN") && !redis.HasErrorPrefix(err, "TRYAGAIN") && !redis.HasErrorPrefix(err, "MASTERDOWN") {
		return fmt.Errorf("redis: %w", err)
	}
	return fmt.Errorf("%w: %v", visitor.ErrStoreUnavailable, err)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func msTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// durable returns where a consent or chat write goes and a function that
// releases it. WAIT counts only the writes of the connection it runs on, and
// go-redis pools connections: a WAIT sent through the pool may run on another
// connection and return at once, acknowledging a write no replica holds. So with
// WithMinReplicas on a single Redis or a Sentinel master (a *redis.Client) the
// write and its WAIT share one connection, held until release. A Cluster spreads
// a write over several nodes, each needing its own WAIT; not done yet, so there
// WAIT still goes through the pool and proves nothing.
func (s *Store) durable() (runner, func()) {
	if s.minReplicas > 0 {
		if c, ok := s.c.(*redis.Client); ok {
			conn := c.Conn()
			return conn, func() { _ = conn.Close() }
		}
	}
	return s.c, func() {}
}

// waitReplicas blocks until minReplicas replicas acknowledged the writes made
// on the connection durable returned; ErrStoreUnavailable when fewer did within
// WAIT's timeout. A write that was not acknowledged may still be on the master.
func (s *Store) waitReplicas(ctx context.Context, on runner) error {
	if s.minReplicas <= 0 {
		return nil
	}
	n, err := on.Do(ctx, "WAIT", s.minReplicas, 1000).Int()
	if err != nil {
		return fmt.Errorf("wait for replicas: %w", translate(err))
	}
	if n < s.minReplicas {
		return fmt.Errorf("%w: %d of %d replicas acknowledged the write", visitor.ErrStoreUnavailable, n, s.minReplicas)
	}
	return nil
}

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
	// agg buffers and flushes the site-level data of page views (aggregate.go).
	agg aggregation
	// ap is the client's auto-pipeliner (group commit) for the page-view path;
	// it holds at most pipelineQueue commands not yet answered, and
	// pipelineRejected counts the calls it refused past that.
	ap               *redis.AutoPipeliner
	pipelineQueue    int
	pipelineRejected atomic.Uint64
	// functions is the server's Functions support as last found
	// (functionsUnknown, functionsLoaded, functionsMissing: functions.go).
	functions atomic.Int32
}

// DefaultPipelineQueue bounds the page-view scripts a Store's auto-pipeliner
// holds not yet answered: a second of a busy pod's page views. Past it (a
// Redis that stopped answering), a page view is refused at once as the store
// unavailable, instead of queueing in memory to run long after its caller
// gave up.
const DefaultPipelineQueue = 10000

// The auto-pipeliner sends a batch of at most about pipelineBatch page-view
// scripts, and keeps up to pipelineBatches batches in flight at once, each on
// a connection of its own. Redis answers a batch only once it has run all of
// it; with one batch of every waiting script in flight (go-redis' default),
// the service and its callers sat idle while Redis ran it. Smaller batches
// that overlap keep both busy: on the bench of a new visitor per page view
// and on DESIGN.md's corpus (make bench, 2 cores shared with Redis and the
// load generator), 2–12% more page views a second (6% on average over ten
// interleaved pairs of runs) at about the same CPU a page view, with 0.07
// round trips a page view instead of 0.04. The batches may
// run in any order: a page view sends one script and waits for its reply
// before sending anything else, so no caller depends on the order of two
// calls.
const (
	pipelineBatch   = 16
	pipelineBatches = 4
)

// Option sets an optional tunable of the Store.
type Option func(*Store)

// WithSites names the configured sites. Retentions finds every override saved
// through SaveRetention without it; with it, it also finds the overrides of
// these sites saved before the store indexed overridden sites.
func WithSites(ids ...string) Option { return func(s *Store) { s.sites = ids } }

// WithMinReplicas makes consent and chat writes wait until n replicas hold them.
func WithMinReplicas(n int) Option { return func(s *Store) { s.minReplicas = n } }

// WithPipelineQueue sets how many page-view scripts the auto-pipeliner may
// hold not yet answered (DefaultPipelineQueue). The client's auto-pipeliner
// is shared: the first Store over a client sets it.
func WithPipelineQueue(n int) Option { return func(s *Store) { s.pipelineQueue = n } }

// New returns a Store over c.
func New(c redis.UniversalClient, opts ...Option) *Store {
	s := &Store{c: c, pipelineQueue: DefaultPipelineQueue}
	s.agg.pod = newPodID()
	for _, o := range opts {
		o(s)
	}
	if c, ok := c.(interface {
		AsyncAutoPipelineWithOptions(*redis.AutoPipelineOptions) (*redis.AutoPipeliner, error)
	}); ok {
		o := redis.DefaultAutoPipelineOptions()
		o.MaxQueuedCommands = s.pipelineQueue
		o.MaxBatchSize, o.MaxConcurrentBatches, o.Unordered = pipelineBatch, pipelineBatches, true
		if ap, err := c.AsyncAutoPipelineWithOptions(o); err == nil {
			s.ap = ap
		}
	}
	return s
}

// PipelineRejected counts the page-view scripts refused because the
// auto-pipeliner held DefaultPipelineQueue (WithPipelineQueue) unanswered.
func (s *Store) PipelineRejected() uint64 { return s.pipelineRejected.Load() }

// Ping reports whether Redis answers; ErrStoreUnavailable otherwise.
func (s *Store) Ping(ctx context.Context) error {
	return translate(s.c.Ping(ctx).Err())
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

package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
)

// The site-level data a page view derives (its live entry, its per-day
// counter, its subject-index entry) is not the visitor's record: DESIGN.md lets
// a pod aggregate it and flush it at least every second. While RunFlusher runs,
// the Store buffers it per site and flushes it every interval, in one pipeline:
// one script per live-set shard touched, one for the counters, one for the
// subject index, each carrying every entry buffered since the last flush. So a
// page view costs Redis its own script alone, and a busy site's indexes take a
// few commands a second instead of several per page view. Without RunFlusher
// (tests, tools) each write is flushed before it returns.
//
// A crash loses at most the last interval of counts and entries; the live set
// and the subject index are repaired by later page views and reads. An erasure
// drops the visitor from this pod's buffer and leaves a short-lived record of
// the erased visitor key beside the live-set shard and the subject index
// (erasedWindow), which the flush scripts of every pod consult, so that no
// pod's late flush brings the erased visitor back.

// DefaultFlushEvery is how often RunFlusher flushes in visitord: well within
// DESIGN.md's second, so that a live stream, which reads every second, shows a
// page view on any pod within two.
const DefaultFlushEvery = 500 * time.Millisecond

const (
	// flushRetryFor is how long a flush that fails is tried again before its
	// data is dropped (and counted): it must stay below erasedWindow.
	flushRetryFor = 5 * time.Minute
	// erasedWindow is how long an erasure's record beside the live set and the
	// subject index lasts: longer than any entry waits in a pod's buffer.
	erasedWindow = 2 * flushRetryFor
	// receiptTTL keeps a counters batch's receipt while the batch may be retried.
	receiptTTL = 2 * flushRetryFor
	// finalFlushTimeout bounds the flush RunFlusher makes when it stops.
	finalFlushTimeout = 5 * time.Second
	// flushChunk bounds the entries one flush script carries.
	flushChunk = 2000
)

// The flush scripts (flush_live.lua, flush_counts.lua, flush_subjects.lua).
var (
	flushLiveScript     = declare("flush_live.lua", "lib_flush.lua")
	flushCountsScript   = declare("flush_counts.lua")
	flushSubjectsScript = declare("flush_subjects.lua", "lib_flush.lua")
)

// siteBuffer is what a pod holds of a site's derived data and has not flushed.
type siteBuffer struct {
	mu sync.Mutex
	// live maps a vkey to its last activity (ms); subjects a vkey to the
	// subject-index score it needs (ms).
	live, subjects map[string]int64
	// counts maps a day (days since the epoch) to its counters.
	counts map[int64]map[visitor.Reason]int64
	// latest is the latest hit time buffered (ms), what the trims count from.
	latest int64
	// since is when the oldest entry not flushed was buffered (zero: none).
	since time.Time
}

// add buffers a hit's derived data: a live entry for vkey at at (none when
// vkey is ""), a subject-index score (none when 0) and one to the counter
// reason of the day of at (none when "").
func (b *siteBuffer) add(vkey string, at time.Time, subject int64, reason visitor.Reason) {
	t := ms(at)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.since.IsZero() {
		b.since = time.Now()
	}
	if t > b.latest {
		b.latest = t
	}
	if vkey != "" {
		if b.live == nil {
			b.live = map[string]int64{}
		}
		if t > b.live[vkey] {
			b.live[vkey] = t
		}
		if subject > 0 {
			if b.subjects == nil {
				b.subjects = map[string]int64{}
			}
			if subject > b.subjects[vkey] {
				b.subjects[vkey] = subject
			}
		}
	}
	if reason != "" {
		if b.counts == nil {
			b.counts = map[int64]map[visitor.Reason]int64{}
		}
		day := t / (24 * 3600 * 1000)
		c := b.counts[day]
		if c == nil {
			c = map[visitor.Reason]int64{}
			b.counts[day] = c
		}
		c[reason]++
	}
}

// forget drops vkey from the buffer.
func (b *siteBuffer) forget(vkey string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.live, vkey)
	delete(b.subjects, vkey)
}

// take empties the buffer and returns what it held.
func (b *siteBuffer) take() (live, subjects map[string]int64, counts map[int64]map[visitor.Reason]int64, latest int64, since time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	live, subjects, counts, latest, since = b.live, b.subjects, b.counts, b.latest, b.since
	// The next interval holds about as many visitors as this one.
	if len(live) > 0 {
		b.live = make(map[string]int64, len(live))
	}
	if len(subjects) > 0 {
		b.subjects = make(map[string]int64, len(subjects))
	}
	b.counts, b.latest, b.since = nil, 0, time.Time{}
	return live, subjects, counts, latest, since
}

// putBack returns entries of a failed flush to the buffer, unless a newer
// entry of the same visitor came meanwhile (or an erasure dropped it: it is
// then no longer in the set being put back).
func (b *siteBuffer) putBack(live, subjects []entry, latest int64, since time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.since.IsZero() || since.Before(b.since) {
		b.since = since
	}
	if latest > b.latest {
		b.latest = latest
	}
	merge := func(m *map[string]int64, es []entry) {
		if len(es) == 0 {
			return
		}
		if *m == nil {
			*m = make(map[string]int64, len(es))
		}
		for _, e := range es {
			if e.score > (*m)[e.member] {
				(*m)[e.member] = e.score
			}
		}
	}
	merge(&b.live, live)
	merge(&b.subjects, subjects)
}

// entry is a member of a sorted set and its score (ms).
type entry struct {
	member string
	score  int64
}

// aggregation is the Store's state of buffering and flushing.
type aggregation struct {
	// running is set while RunFlusher runs: writes buffer; otherwise each
	// write flushes before it returns.
	running atomic.Bool
	// flushMu makes flushes one at a time, so that a write that flushes returns
	// once its data is in Redis.
	flushMu sync.Mutex
	// pod names this Store's counter batches; batch numbers them.
	pod   string
	batch atomic.Uint64
	// retry holds the counter batches whose flush failed (under flushMu).
	retry []countBatch
	// failures counts flush scripts that failed, dropped the entries and
	// counts given up after flushRetryFor.
	failures, dropped atomic.Uint64
}

// countBatch is a counters flush to send again: its receipt makes it count once.
type countBatch struct {
	c     *call
	n     int64 // the page views it counts
	since time.Time
	// retried says the batch keeps a receipt: without one, sending it again
	// could count it twice, so it is dropped (and counted) instead.
	retried bool
}

func newPodID() string {
	b := make([]byte, 6)
	_, _ = rand.Read(b) // never fails (Go ≥ 1.24)
	return hex.EncodeToString(b)
}

// FlushFailures is how many flush scripts failed (each is tried again).
func (s *Store) FlushFailures() uint64 { return s.agg.failures.Load() }

// FlushDropped is how many buffered entries and counts were given up after
// their flush failed for flushRetryFor.
func (s *Store) FlushDropped() uint64 { return s.agg.dropped.Load() }

// RunFlusher buffers the site-level data of page views (see aggregate.go) and
// flushes it every interval until ctx is done; then it flushes once more,
// bounded by finalFlushTimeout, and later writes flush themselves again.
// Failures are logged (without PII) and counted (FlushFailures).
func (s *Store) RunFlusher(ctx context.Context, every time.Duration, log *slog.Logger) {
	s.agg.running.Store(true)
	t := time.NewTicker(every)
	defer t.Stop()
	flush := func(ctx context.Context) {
		if err := s.Flush(ctx); err != nil {
			log.Warn("flush site data", slog.String("error", err.Error()))
		}
	}
	for {
		select {
		case <-ctx.Done():
			s.agg.running.Store(false)
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), finalFlushTimeout)
			flush(fctx)
			cancel()
			return
		case <-t.C:
			fctx, cancel := context.WithTimeout(ctx, every)
			flush(fctx)
			cancel()
		}
	}
}

// flushed flushes after a write unless RunFlusher is running.
func (s *Store) flushed(ctx context.Context) error {
	if s.agg.running.Load() {
		return nil
	}
	return s.Flush(ctx)
}

// bufferOf is site's buffer.
func (s *Store) bufferOf(site *visitor.Site) *siteBuffer { return &s.siteKeysOf(site).buf }

// forgetBuffered drops vkey from this pod's buffer of site.
func (s *Store) forgetBuffered(siteID, vkey string) {
	if k, ok := s.siteKeys.Load(siteID); ok {
		k.(*siteKeys).buf.forget(vkey)
	}
}

// flushPart is one script of a flush and what to do when it fails.
type flushPart struct {
	c       *call
	site    *siteKeys
	entries []entry // a live or subjects script's entries
	isLive  bool
	latest  int64
	since   time.Time
	count   *countBatch
}

// Flush writes what this pod buffered to Redis now: one pipeline, one script
// per live-set shard, counters and subject index of each site. What fails is
// kept and tried again by the next flush, for flushRetryFor; the error says
// how many scripts failed (no PII).
func (s *Store) Flush(ctx context.Context) error {
	s.agg.flushMu.Lock()
	defer s.agg.flushMu.Unlock()
	var parts []flushPart
	s.siteKeys.Range(func(_, v any) bool {
		parts = s.drain(v.(*siteKeys), parts)
		return true
	})
	for i := range s.agg.retry {
		b := &s.agg.retry[i]
		parts = append(parts, flushPart{c: b.c, count: b})
	}
	if len(parts) == 0 {
		return nil
	}
	calls := make([]*call, len(parts))
	for i, p := range parts {
		calls[i] = p.c
	}
	_ = runOn(ctx, s.c, calls...) // each call's own error is read below
	now := time.Now()
	var retry []countBatch
	var failed int
	var first error
	for _, p := range parts {
		err := p.c.cmd.Err()
		if err == nil {
			continue
		}
		failed++
		if first == nil {
			first = translate(err)
		}
		switch {
		case p.count != nil:
			if !p.count.retried || now.Sub(p.count.since) > flushRetryFor {
				s.agg.dropped.Add(uint64(p.count.n))
				continue
			}
			retry = append(retry, *p.count)
		case now.Sub(p.since) > flushRetryFor:
			s.agg.dropped.Add(uint64(len(p.entries)))
		case p.isLive:
			p.site.buf.putBack(p.entries, nil, p.latest, p.since)
		default:
			p.site.buf.putBack(nil, p.entries, p.latest, p.since)
		}
	}
	s.agg.retry = retry
	if failed == 0 {
		return nil
	}
	s.agg.failures.Add(uint64(failed))
	return fmt.Errorf("flush site data: %d of %d scripts failed: %w", failed, len(parts), first)
}

// drain empties k's buffer into flush scripts appended to parts.
func (s *Store) drain(k *siteKeys, parts []flushPart) []flushPart {
	live, subjects, counts, latest, since := k.buf.take()
	if since.IsZero() {
		return parts
	}
	var shards [SiteShards][]entry
	for vkey, at := range live {
		i := shardOf(vkey)
		shards[i] = append(shards[i], entry{vkey, at})
	}
	for i, es := range shards {
		for len(es) > 0 {
			n := min(len(es), flushChunk)
			args := make([]any, 0, 3+2*n)
			args = append(args, k.consts.liveTTL, k.consts.maxLivePerShard, latest)
			for _, e := range es[:n] {
				args = append(args, e.member, e.score)
			}
			sh := k.shards[i]
			parts = append(parts, flushPart{
				c:    &call{script: flushLiveScript, keys: []string{sh.live, erasedShardKey(k.site, i)}, args: args},
				site: k, entries: es[:n], isLive: true, latest: latest, since: since,
			})
			es = es[n:]
		}
	}
	es := make([]entry, 0, len(subjects))
	for vkey, score := range subjects {
		es = append(es, entry{vkey, score})
	}
	for len(es) > 0 {
		n := min(len(es), flushChunk)
		args := make([]any, 0, 1+2*n)
		args = append(args, latest)
		for _, e := range es[:n] {
			args = append(args, e.member, e.score)
		}
		parts = append(parts, flushPart{
			c:    &call{script: flushSubjectsScript, keys: []string{subjectsKey(k.site), erasedKey(k.site)}, args: args},
			site: k, entries: es[:n], latest: latest, since: since,
		})
		es = es[n:]
	}
	if len(counts) > 0 {
		batch := s.agg.batch.Add(1)
		shard := int(batch % SiteShards)
		// A batch is retried only while RunFlusher runs (a write that flushes
		// itself returns the failure instead): only then does it need a receipt.
		retried := s.agg.running.Load()
		keys := []string{receiptKey(k.site, shard, s.agg.pod, batch)}
		args := []any{k.consts.countersTTL, receiptTTL.Milliseconds(), bit(retried)}
		var total int64
		for day, c := range counts {
			keys = append(keys, statsKey(k.site, shard, time.UnixMilli(day*24*3600*1000)))
			args = append(args, len(c))
			for reason, n := range c {
				args = append(args, string(reason), n)
				total += n
			}
		}
		b := &countBatch{c: &call{script: flushCountsScript, keys: keys, args: args}, n: total, since: since, retried: retried}
		parts = append(parts, flushPart{c: b.c, site: k, count: b})
	}
	return parts
}

// markErased records, beside the live-set shard of vkey and the subject index,
// that vkey was erased, for erasedWindow: the flush scripts of every pod skip
// it, so that no late flush brings the erased visitor back.
func markErased(ctx context.Context, pipe redis.Pipeliner, site, vkey string, now time.Time) {
	// The record holds the SHA-1 of vkey (the flush scripts compare with
	// redis.sha1hex), so that no key but the tombstone's name holds the
	// erased visitor's key.
	sum := sha1.Sum([]byte(vkey))
	member := hex.EncodeToString(sum[:])
	for _, key := range []string{erasedShardKey(site, shardOf(vkey)), erasedKey(site)} {
		pipe.ZAdd(ctx, key, redis.Z{Score: float64(ms(now)), Member: member})
		pipe.ZRemRangeByScore(ctx, key, "-inf", strconv.FormatInt(ms(now.Add(-erasedWindow)), 10))
		pipe.PExpire(ctx, key, erasedWindow)
	}
}

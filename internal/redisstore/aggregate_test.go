package redisstore

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/visitor"
)

// aggregating makes e's store buffer site-level data as it does while
// RunFlusher runs, without a flusher: the test flushes when it says.
func (e stEnv) aggregating() stEnv {
	e.s.agg.running.Store(true)
	return e
}

// onPod is e over another Store on the same Redis: another pod.
func (e stEnv) onPod() stEnv {
	e.s = New(e.c, WithSites(e.site.ID))
	return e.aggregating()
}

// flush flushes e's store.
func (e stEnv) flush(tb testing.TB) {
	tb.Helper()
	if err := e.s.Flush(e.ctx); err != nil {
		tb.Fatalf("Flush: %v", err)
	}
}

// subjects lists the subject index's members. No read method of the store
// returns the index (the retention job walks it), so the test reads the key.
func (e stEnv) subjects(tb testing.TB) []string {
	tb.Helper()
	m, err := e.c.ZRange(e.ctx, subjectsKey(e.site.ID), 0, -1).Result()
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// A page view's site-level data (live entry, counter, subject-index entry)
// waits in the pod's buffer until a flush, which writes it as the page view
// would have; an erasure on any pod reaches what a pod has not flushed.
func TestAggregatedSiteData(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// run writes through e (aggregating) and other (another pod).
		run func(t *testing.T, e, other stEnv)
		// wantBefore is the stats before e flushes.
		wantBefore   map[string]int64
		wantLive     []string
		wantStats    map[string]int64
		wantSubjects []string
	}{
		{
			name: "new and returning visitors and refusals",
			run: func(t *testing.T, e, _ stEnv) {
				e.pageview(t, stKeyA, "sA", 0, "/a")
				e.record(t, stHit{at: time.Minute, url: "/b"})
				e.pageview(t, stKeyB, "sB", 2*time.Minute, "/c")
				if err := e.s.CountRefused(e.ctx, e.site, e.now, visitor.ReasonDNT); err != nil {
					t.Fatal(err)
				}
			},
			wantBefore:   map[string]int64{},
			wantLive:     []string{"sB", "sA"},
			wantStats:    map[string]int64{"tracked": 3, "dnt": 1},
			wantSubjects: []string{stKeyA, stKeyB},
		},
		{
			name: "a hit refused for want of a grant counts no_consent alone",
			run: func(t *testing.T, e, _ stEnv) {
				if out := e.record(t, stHit{url: "/a", sid: "sA", grant: true, first: true}); out != visitor.OutcomeNoConsent {
					t.Fatalf("outcome %v, want no consent", out)
				}
			},
			wantBefore: map[string]int64{}, wantLive: []string{}, wantStats: map[string]int64{"no_consent": 1}, wantSubjects: []string{},
		},
		{
			name: "erased on this pod before the flush",
			run: func(t *testing.T, e, _ stEnv) {
				e.pageview(t, stKeyA, "sA", 0, "/a")
				e.pageview(t, stKeyB, "sB", time.Minute, "/b")
				e.erase(t, stKeyA, stVidA, "subjA")
			},
			wantBefore: map[string]int64{}, wantLive: []string{"sB"}, wantStats: map[string]int64{"tracked": 2}, wantSubjects: []string{stKeyB},
		},
		{
			name: "erased on another pod before this pod's flush",
			run: func(t *testing.T, e, other stEnv) {
				e.pageview(t, stKeyA, "sA", 0, "/a")
				e.record(t, stHit{at: time.Minute, url: "/b"})
				other.erase(t, stKeyA, stVidA, "subjA")
			},
			wantBefore: map[string]int64{}, wantLive: []string{}, wantStats: map[string]int64{"tracked": 2}, wantSubjects: []string{},
		},
		{
			name: "two pods' entries of one visitor: the later activity stays",
			run: func(t *testing.T, e, other stEnv) {
				e.pageview(t, stKeyA, "sA", 0, "/a")
				other.record(t, stHit{at: 3 * time.Minute, url: "/b"})
				other.flush(t)
			},
			wantBefore: map[string]int64{"tracked": 1}, wantLive: []string{"sA"}, wantStats: map[string]int64{"tracked": 2}, wantSubjects: []string{stKeyA},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t).aggregating()
			other := e.onPod()
			tt.run(t, e, other)
			// Before e's flush, e's writes are in its buffer only.
			if diff := cmp.Diff(tt.wantBefore, e.stats(t)); diff != "" {
				t.Errorf("stats before the flush (-want +got):\n%s", diff)
			}
			e.flush(t)
			if diff := cmp.Diff(tt.wantLive, e.live(t, 4*time.Minute)); diff != "" {
				t.Errorf("live view (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantStats, e.stats(t)); diff != "" {
				t.Errorf("stats (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSubjects, e.subjects(t)); diff != "" {
				t.Errorf("subject index (-want +got):\n%s", diff)
			}
			// A flush with nothing buffered writes nothing and fails nothing.
			e.flush(t)
			if n := e.s.FlushFailures(); n != 0 {
				t.Errorf("FlushFailures = %d, want 0", n)
			}
		})
	}
}

// Without a flusher (tests, tools) a write's site-level data is in Redis when
// the write returns.
func TestUnaggregatedWritesFlushAtOnce(t *testing.T) {
	t.Parallel()
	e := stStart(t)
	e.pageview(t, stKeyA, "sA", 0, "/a")
	if err := e.s.CountRefused(e.ctx, e.site, e.now, visitor.ReasonBot); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"sA"}, e.live(t, time.Minute)); diff != "" {
		t.Errorf("live view (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(map[string]int64{"tracked": 1, "bot": 1}, e.stats(t)); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
}

// A flush that fails is counted, says nothing about a visitor, and is tried
// again by the next flush, its counts added once.
func TestFlushFailureCountedAndRetried(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		// broken is a key the test makes a string, so that the flush script
		// writing it fails.
		broken func(e stEnv) string
	}{
		{name: "live set shard", broken: func(e stEnv) string { return LiveKeyOf(e.site.ID, stKeyA) }},
		{name: "subject index", broken: func(e stEnv) string { return subjectsKey(e.site.ID) }},
		// A fresh store's first counters batch is number 1, on shard 1.
		{name: "counters", broken: func(e stEnv) string { return statsKey(e.site.ID, 1, e.now) }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t).aggregating()
			key := tt.broken(e)
			if err := e.c.Set(e.ctx, key, "x", time.Minute).Err(); err != nil {
				t.Fatal(err)
			}
			e.pageview(t, stKeyA, "sA", 0, "/a")
			err := e.s.Flush(e.ctx)
			if err == nil {
				t.Fatal("Flush over a broken key succeeded")
			}
			if strings.Contains(err.Error(), stKeyA) || strings.Contains(err.Error(), stVidA) {
				t.Errorf("the flush error names the visitor: %v", err)
			}
			if n := e.s.FlushFailures(); n != 1 {
				t.Errorf("FlushFailures = %d, want 1", n)
			}
			if err := e.c.Del(e.ctx, key).Err(); err != nil {
				t.Fatal(err)
			}
			e.flush(t)
			e.flush(t)
			if diff := cmp.Diff([]string{"sA"}, e.live(t, time.Minute)); diff != "" {
				t.Errorf("live view after the retry (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(map[string]int64{"tracked": 1}, e.stats(t)); diff != "" {
				t.Errorf("stats after the retry (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff([]string{stKeyA}, e.subjects(t)); diff != "" {
				t.Errorf("subject index after the retry (-want +got):\n%s", diff)
			}
			if n, d := e.s.FlushFailures(), e.s.FlushDropped(); n != 1 || d != 0 {
				t.Errorf("FlushFailures, FlushDropped = %d, %d; want 1, 0", n, d)
			}
		})
	}
}

// A counters batch whose answer was lost is sent again with its receipt: it
// counts once.
func TestFlushCountsScriptCountsABatchOnce(t *testing.T) {
	t.Parallel()
	e := stStart(t)
	day := statsKey("shop", 3, e.now)
	c := &call{script: flushCountsScript, keys: []string{receiptKey("shop", 3, "pod1", 7), day, statsKey("shop", 3, e.now.AddDate(0, 0, 1))},
		args: []any{3600, 60_000, "1", 2, "tracked", 5, "dnt", 1, 1, "bot", 2}}
	for range 2 {
		if err := e.s.run(e.ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	if diff := cmp.Diff(map[string]int64{"tracked": 5, "dnt": 1, "bot": 2}, e.stats(t)); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if ttl := e.c.TTL(e.ctx, day).Val(); ttl <= 0 || ttl > time.Hour {
		t.Errorf("counters TTL %v, want the hour given", ttl)
	}
}

// RunFlusher flushes every interval and, when its context ends, once more:
// nothing buffered is left behind at shutdown, and later writes flush
// themselves.
func TestRunFlusherFlushesOnStop(t *testing.T) {
	t.Parallel()
	e := stStart(t)
	stop, logs := startFlusher(e)
	e.pageview(t, stKeyA, "sA", 0, "/a")
	if got := e.stats(t); len(got) != 0 {
		t.Fatalf("stats %v while the flusher runs an hour's interval: the page view was not buffered", got)
	}
	stop()
	if diff := cmp.Diff(map[string]int64{"tracked": 1}, e.stats(t)); diff != "" {
		t.Errorf("stats after the flusher stopped (-want +got):\n%s", diff)
	}
	e.pageview(t, stKeyB, "sB", time.Minute, "/b")
	if diff := cmp.Diff([]string{"sB", "sA"}, e.live(t, 2*time.Minute)); diff != "" {
		t.Errorf("live view after the flusher stopped (-want +got):\n%s", diff)
	}
	if logs.Len() != 0 {
		t.Errorf("the flusher logged %s", logs.String())
	}
}

// RunFlusher logs a failed flush without naming the visitor.
func TestRunFlusherLogsFailures(t *testing.T) {
	t.Parallel()
	e := stStart(t)
	if err := e.c.Set(e.ctx, LiveKeyOf(e.site.ID, stKeyA), "x", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	stop, logs := startFlusher(e)
	e.pageview(t, stKeyA, "sA", 0, "/a")
	stop()
	if n := e.s.FlushFailures(); n != 1 {
		t.Errorf("FlushFailures = %d, want 1", n)
	}
	out := logs.String()
	if !strings.Contains(out, "flush site data") || strings.Contains(out, stKeyA) || strings.Contains(out, stVidA) {
		t.Errorf("log %q: want the failed flush, without the visitor", out)
	}
	if err := e.c.Del(e.ctx, LiveKeyOf(e.site.ID, stKeyA)).Err(); err != nil {
		t.Fatal(err)
	}
	e.flush(t)
}

// Page views buffered from many goroutines while flushes run are each
// flushed once: no count lost or doubled, no entry lost.
func TestAggregationConcurrentWrites(t *testing.T) {
	t.Parallel()
	e := stStart(t).aggregating()
	const writers, each = 8, 40
	var wg sync.WaitGroup
	for g := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				w := e.hitWrite(stHit{url: "/a", sid: "s1", first: true, vkey: fmt.Sprintf("vk%02d%012d", g, i)})
				if _, err := e.s.RecordHit(e.ctx, w); err != nil {
					t.Error(err)
					return
				}
				if i%10 == 0 {
					if err := e.s.Flush(e.ctx); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	e.flush(t)
	if diff := cmp.Diff(map[string]int64{"tracked": writers * each}, e.stats(t)); diff != "" {
		t.Errorf("stats (-want +got):\n%s", diff)
	}
	if n := len(e.subjects(t)); n != writers*each {
		t.Errorf("subject index holds %d visitors, want %d", n, writers*each)
	}
	var live int64
	for i := range SiteShards {
		live += e.c.ZCard(e.ctx, liveKey(e.site.ID, i)).Val()
	}
	if live != writers*each {
		t.Errorf("live set holds %d visitors, want %d", live, writers*each)
	}
}

// startFlusher runs e's RunFlusher at an hour's interval, so that only its
// stop flushes, and returns once it buffers; stop ends it and waits.
func startFlusher(e stEnv) (stop func(), logs *bytes.Buffer) {
	ctx, cancel := context.WithCancel(e.ctx)
	logs = &bytes.Buffer{}
	stopped := make(chan struct{})
	go func() {
		e.s.RunFlusher(ctx, time.Hour, slog.New(slog.NewJSONHandler(logs, nil)))
		close(stopped)
	}()
	for !e.s.agg.running.Load() {
		runtime.Gosched()
	}
	return func() { cancel(); <-stopped }, logs
}

package httpapi

import (
	"container/list"
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"golang.org/x/time/rate"

	"github.com/visitord/visitord/internal/visitor"
)

// Rate limits (DESIGN.md, Storage). Page views are limited per pod in process,
// so the hot path makes no extra round trip; chats, consent and /v1/me are
// limited in Redis through Options.Limiter, so every pod shares one budget.
const (
	// PageViewsPerMinute is how many track hits (page views, heartbeats and
	// leaves alike) one IP block may send to one site per minute on one pod.
	PageViewsPerMinute = 120
	// PageViewBurst is how many track hits one IP block may send at once.
	PageViewBurst = 30
	// MaxTrackedIPs bounds the (site, IP block) pairs the page-view limiter
	// remembers (a few hundred bytes each); past it the least recently seen goes.
	MaxTrackedIPs = 50_000

	pageViewShards = 32
	// rateLimitTimeout bounds a Redis limit check; past it the request goes on.
	rateLimitTimeout = 300 * time.Millisecond
)

// pageViewIdle is how long a bucket takes to refill whole: an entry idle this
// long is the same as none, so it is dropped.
const pageViewIdle = time.Duration(PageViewBurst) * time.Minute / PageViewsPerMinute

// PageViewLimiter limits track hits per (site, IP block) in this process: a
// token bucket of PageViewBurst refilled at PageViewsPerMinute. IPs are counted
// by their /24 (IPv4) or /48 (IPv6), as they are stored, and kept only in
// memory while their bucket refills. Memory is bounded: at most MaxTrackedIPs
// entries, idle ones dropped first, then the least recently seen. Evicting an
// entry early only gives that IP a fresh burst. It is safe for concurrent use.
type PageViewLimiter struct {
	now    func() time.Time
	seed   maphash.Seed
	shards [pageViewShards]pageViewShard
}

type pageViewShard struct {
	mu  sync.Mutex
	m   map[pageViewKey]*list.Element
	lru list.List // of *pageViewEntry, the most recently seen in front
	max int
}

type pageViewKey struct {
	site  string
	block netip.Prefix
}

type pageViewEntry struct {
	key  pageViewKey
	lim  *rate.Limiter
	last time.Time
}

// NewPageViewLimiter returns a PageViewLimiter with the package's limits.
func NewPageViewLimiter() *PageViewLimiter {
	p := &PageViewLimiter{now: time.Now, seed: maphash.MakeSeed()}
	for i := range p.shards {
		p.shards[i].m = make(map[pageViewKey]*list.Element)
		p.shards[i].max = MaxTrackedIPs / pageViewShards
	}
	return p
}

// Allow counts one track hit of site from ip and reports whether it is within
// the limit; when it is not, retryAfter says when the next one will be.
func (p *PageViewLimiter) Allow(site string, ip netip.Addr) (ok bool, retryAfter time.Duration) {
	now := p.now()
	k := pageViewKey{site: site, block: visitor.IPBlock(ip)}
	a16 := k.block.Addr().As16()
	sh := &p.shards[maphash.Bytes(p.seed, a16[:])%pageViewShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.dropIdle(now)
	var e *pageViewEntry
	if el, found := sh.m[k]; found {
		e = el.Value.(*pageViewEntry)
		sh.lru.MoveToFront(el)
	} else {
		if sh.lru.Len() >= sh.max {
			sh.remove(sh.lru.Back())
		}
		e = &pageViewEntry{key: k, lim: rate.NewLimiter(rate.Limit(PageViewsPerMinute)/60, PageViewBurst)}
		sh.m[k] = sh.lru.PushFront(e)
	}
	e.last = now
	if e.lim.AllowN(now, 1) {
		return true, 0
	}
	missing := 1 - e.lim.TokensAt(now)
	return false, time.Duration(missing * float64(time.Minute) / PageViewsPerMinute)
}

// dropIdle drops the entries whose bucket has refilled whole since they were
// last seen; they sit at the back, as the list is ordered by last use.
func (sh *pageViewShard) dropIdle(now time.Time) {
	for el := sh.lru.Back(); el != nil && now.Sub(el.Value.(*pageViewEntry).last) >= pageViewIdle; el = sh.lru.Back() {
		sh.remove(el)
	}
}

func (sh *pageViewShard) remove(el *list.Element) {
	delete(sh.m, el.Value.(*pageViewEntry).key)
	sh.lru.Remove(el)
}

// len is how many entries the limiter holds.
func (p *PageViewLimiter) len() int {
	n := 0
	for i := range p.shards {
		sh := &p.shards[i]
		sh.mu.Lock()
		n += len(sh.m)
		sh.mu.Unlock()
	}
	return n
}

// limitPageView applies the per-pod page-view limit to a track hit of site
// from ip; without a PageViewLimiter (tests, benchmarks) it allows all.
func (a *api) limitPageView(site *visitor.Site, ip netip.Addr) error {
	if a.pageViews == nil {
		return nil
	}
	if ok, retry := a.pageViews.Allow(site.ID, ip); !ok {
		return &visitor.RateLimitError{RetryAfter: retry}
	}
	return nil
}

// limit applies the site's Redis-backed limit of kind to the caller's IP and
// returns a *visitor.RateLimitError when it is spent; without a Limiter (tests
// that do not care) it allows all.
//
// It fails open: when Redis cannot be reached, or does not answer within
// rateLimitTimeout, the request goes on unlimited and the failure is logged at
// warn, once per request. A rate limiter must not take the service down with
// Redis; the request's own store work then answers for itself (503
// store_unavailable when Redis is down), and page views, the bulk of the
// traffic, keep their in-process limit.
func (a *api) limit(c *gin.Context, site *visitor.Site, kind visitor.LimitKind) error {
	if a.limiter == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), rateLimitTimeout)
	defer cancel()
	ok, retry, err := a.limiter.Allow(ctx, a.svc.RateLimitKey(site, kind, clientIP(c)), site.RateLimit.PerMinute(kind))
	if err != nil {
		a.log.LogAttrs(c.Request.Context(), slog.LevelWarn, "rate limit not applied",
			slog.String("route", routeOf(c)), slog.String("site", site.ID), slog.String("kind", string(kind)),
			slog.String("error", err.Error()))
		return nil
	}
	if !ok {
		return &visitor.RateLimitError{RetryAfter: retry}
	}
	return nil
}

// retryAfter is the Retry-After of a refused request, in whole seconds (≥ 1).
func retryAfter(err error) string {
	var rl *visitor.RateLimitError
	if errors.As(err, &rl) {
		return strconv.Itoa(rl.RetrySeconds())
	}
	return "1"
}

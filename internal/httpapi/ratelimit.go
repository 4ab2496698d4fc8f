package httpapi

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/maypok86/otter/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/visitord/visitord/internal/visitor"
)

// Rate limits (DESIGN.md, Storage; every limit is in the README). A request
// with a valid identity or refusal token is counted under that identity only,
// one without under its IP block (/24, /48); visitor.RateLimit.PerMinute gives
// each budget. Track calls are limited per pod in process, so the page-view
// path makes no extra round trip; chats, consent, /v1/me and API keys in Redis
// through Options.Limiter, so every pod shares one budget.
const (
	// MaxLimiterEntries bounds the identities and IP blocks the page-view
	// limiter remembers (about 130 bytes each: 13 MB at the bound); past it
	// otter's W-TinyLFU policy drops the least likely to come back, which only
	// gives that caller a fresh budget.
	MaxLimiterEntries = 100_000

	// DefaultRateLimitTimeout bounds a Redis limit check when
	// Options.RateLimitTimeout is zero; past it the request goes on.
	DefaultRateLimitTimeout = 300 * time.Millisecond
)

// PageViewLimiter limits track calls per (site, identity) or, without a valid
// token, per (site, IP block) in this process. Each caller has a GCRA bucket of
// a minute's budget refilled evenly over the minute; the bucket is one
// timestamp, kept in an otter cache and moved on by compare-and-swap, so
// concurrent calls of one caller share one budget exactly. Memory is bounded:
// at most MaxLimiterEntries entries. Entries do not expire with their bucket: a
// returning visitor's bucket is full again between its page views, and keeping
// its entry is what lets a known caller cost no allocation. It is safe for
// concurrent use.
type PageViewLimiter struct {
	now     func() time.Time
	seed    maphash.Seed
	buckets *otter.Cache[pageViewKey, *bucket]
}

// pageViewKey names a bucket: a site and either an identity (by the process's
// keyed hash of it, so the limiter holds no visitor id) or an IP block
// (packed exactly).
type pageViewKey struct {
	site     string
	identity bool
	sum      uint64
}

// NewPageViewLimiter returns an empty PageViewLimiter.
func NewPageViewLimiter() *PageViewLimiter {
	return &PageViewLimiter{
		now:     time.Now,
		seed:    maphash.MakeSeed(),
		buckets: otter.Must(&otter.Options[pageViewKey, *bucket]{MaximumSize: MaxLimiterEntries}),
	}
}

// AllowIdentity counts one track call of site by the identity id (a
// visitor.Caller's LimitID) against perMinute and reports whether it is within
// the limit; when it is not, retryAfter says when the next one will be.
func (p *PageViewLimiter) AllowIdentity(site, id string, perMinute int) (ok bool, retryAfter time.Duration) {
	return p.allow(pageViewKey{site: site, identity: true, sum: maphash.String(p.seed, id)}, perMinute)
}

// AllowBlock counts one track call of site from ip's block (/24, /48) against
// perMinute, as AllowIdentity does.
func (p *PageViewLimiter) AllowBlock(site string, ip netip.Addr, perMinute int) (ok bool, retryAfter time.Duration) {
	return p.allow(pageViewKey{site: site, sum: blockKey(ip)}, perMinute)
}

// blockKey packs the /24 of an IPv4 or the /48 of an IPv6 address into one
// integer, the low bit telling the families apart.
func blockKey(ip netip.Addr) uint64 {
	ip = ip.Unmap()
	if ip.Is4() {
		b := ip.As4()
		return uint64(b[0])<<17 | uint64(b[1])<<9 | uint64(b[2])<<1 | 1
	}
	b := ip.As16()
	return uint64(b[0])<<41 | uint64(b[1])<<33 | uint64(b[2])<<25 | uint64(b[3])<<17 | uint64(b[4])<<9 | uint64(b[5])<<1
}

func (p *PageViewLimiter) allow(k pageViewKey, perMinute int) (bool, time.Duration) {
	if perMinute < 1 {
		return true, 0
	}
	now := p.now().UnixNano()
	interval := int64(time.Minute) / int64(perMinute)
	b, found := p.buckets.GetIfPresent(k)
	if !found {
		// Of concurrent first calls one bucket wins, and all count in it.
		b, _ = p.buckets.SetIfAbsent(k, new(bucket))
	}
	for {
		// GCRA with a burst of a minute's budget: a call is allowed while the
		// bucket's debt, after it, stays within one minute. A new bucket's tat
		// is zero: full.
		tat := b.tat.Load()
		next := max(tat, now) + interval
		if allowAt := next - int64(time.Minute); now < allowAt {
			return false, time.Duration(allowAt - now)
		}
		if b.tat.CompareAndSwap(tat, next) {
			return true, 0
		}
	}
}

// bucket is a caller's GCRA bucket: tat is its theoretical arrival time (Unix
// ns), full when tat ≤ now; each call moves it one interval on.
type bucket struct{ tat atomic.Int64 }

// len is how many entries the limiter holds once pending evictions are
// applied.
func (p *PageViewLimiter) len() int {
	p.buckets.CleanUp()
	return p.buckets.EstimatedSize()
}

// newLimitMetrics registers visitord_rate_limited_total, with a series for
// every limit there is (visitor.Limits) from the start.
func newLimitMetrics(reg *prometheus.Registry) *prometheus.CounterVec {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "visitord_rate_limited_total",
		Help: "Requests refused with 429 by rate limit: kind (track, consent, me, chat, api) and by (identity, ip_block, api_key).",
	}, []string{"kind", "by"})
	for _, l := range visitor.Limits {
		refused.WithLabelValues(string(l.Kind), string(l.By))
	}
	reg.MustRegister(refused)
	return refused
}

// limitTrack applies the per-pod limit to a track call whose token the handler
// has verified (h.Caller): by identity with a valid token, else by IP block
// (new visitors). A GPC objection carrying a valid identity is a withdrawal and
// is never refused. Without a PageViewLimiter (tests, benchmarks) it allows all.
func (a *api) limitTrack(site *visitor.Site, h visitor.Hit) error {
	if a.pageViews == nil {
		return nil
	}
	c := h.Caller
	var ok bool
	var retry time.Duration
	by := visitor.ByIdentity
	switch {
	case c.Valid && h.GPC && c.Token.Kind == visitor.KindID:
		return nil
	case c.Valid:
		ok, retry = a.pageViews.AllowIdentity(site.ID, c.LimitID(), site.RateLimit.PerMinute(visitor.LimitTrack, by))
	default:
		by = visitor.ByIPBlock
		ok, retry = a.pageViews.AllowBlock(site.ID, h.IP, site.RateLimit.PerMinute(visitor.LimitTrack, by))
	}
	if ok {
		return nil
	}
	a.limited.WithLabelValues(string(visitor.LimitTrack), string(by)).Inc()
	return &visitor.RateLimitError{RetryAfter: retry}
}

// widgetLimit is the Redis-backed limit a widget request is counted under; the
// zero value is none.
type widgetLimit struct {
	kind visitor.LimitKind
	// refusing marks a refusal, withdrawal or erasure: with a valid token it is
	// never refused by a limit (DESIGN.md, Storage).
	refusing bool
	// marketingOff marks a consent that grants analytics and answers marketing
	// false: a withdrawal (never refused) only while the caller's choice in
	// force grants marketing, else a grant like any other, so that alternating
	// refusals and grants cannot write records without limit.
	marketingOff bool
}

// limitWidget applies lim to a widget request of site: by the identity of a
// valid token, else by the caller's IP block.
func (a *api) limitWidget(c *gin.Context, site *visitor.Site, lim widgetLimit) error {
	if lim.kind == "" || a.limiter == nil {
		return nil
	}
	caller := a.svc.Caller(site, tokenOf(c, site.ID))
	switch {
	case caller.Valid && lim.refusing:
		return nil
	case caller.Valid && lim.marketingOff && a.marketingGranted(c, site, caller.Raw):
		return nil
	case caller.Valid:
		return a.limit(c, site, lim.kind, visitor.ByIdentity, caller.Subject())
	}
	return a.limit(c, site, lim.kind, visitor.ByIPBlock, visitor.BlockSubject(clientIP(c)))
}

// marketingGranted reports whether the choice in force of the token raw grants
// marketing. Like the limiter it fails open: when the store cannot say, the
// request is taken for the withdrawal it may be.
func (a *api) marketingGranted(c *gin.Context, site *visitor.Site, raw string) bool {
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.limitTimeout)
	defer cancel()
	ch, err := a.svc.Consent(ctx, site, raw)
	return err != nil || ch.Marketing
}

// limit counts a request of kind on site under subject in Redis and returns a
// *visitor.RateLimitError when the budget is spent; without a Limiter (tests
// that do not care) it allows all.
//
// It fails open: when Redis cannot be reached, or does not answer within
// Options.RateLimitTimeout, the request goes on unlimited and the failure is logged at
// warn, once per request. A rate limiter must not take the service down with
// Redis; the request's own store work then answers for itself (503
// store_unavailable when Redis is down), and page views, the bulk of the
// traffic, keep their in-process limit.
func (a *api) limit(c *gin.Context, site *visitor.Site, kind visitor.LimitKind, by visitor.LimitBy, subject visitor.LimitSubject) error {
	if a.limiter == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.limitTimeout)
	defer cancel()
	ok, retry, err := a.limiter.Allow(ctx, a.svc.RateLimitKey(site, kind, subject), site.RateLimit.PerMinute(kind, by))
	if err != nil {
		a.log.LogAttrs(c.Request.Context(), slog.LevelWarn, "rate limit not applied",
			slog.String("route", routeOf(c)), slog.String("site", site.ID), slog.String("kind", string(kind)),
			slog.String("error", err.Error()))
		return nil
	}
	if !ok {
		a.limited.WithLabelValues(string(kind), string(by)).Inc()
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

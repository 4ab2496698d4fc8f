package visitor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// ErrRateLimited reports a caller that sent more requests than its site allows
// in a window; the error that wraps it is a *RateLimitError, which says when to
// try again.
var ErrRateLimited = errors.New("rate limited")

// RateLimitError is a request refused by a rate limit. It wraps ErrRateLimited.
type RateLimitError struct {
	// RetryAfter is how long the caller should wait before it tries again.
	RetryAfter time.Duration
}

// Error says that the caller sent too many requests and when to try again.
func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many requests from this address; try again in %d s", e.RetrySeconds())
}

// Unwrap makes errors.Is(err, ErrRateLimited) hold.
func (e *RateLimitError) Unwrap() error { return ErrRateLimited }

// RetrySeconds is RetryAfter in whole seconds, rounded up and at least 1, as the
// Retry-After header carries it.
func (e *RateLimitError) RetrySeconds() int {
	s := int((e.RetryAfter + time.Second - 1) / time.Second)
	return max(s, 1)
}

// RateLimiter counts requests under a key in a shared store, so that every pod
// applies one limit (DESIGN.md, Storage: chats, consent and /v1/me).
type RateLimiter interface {
	// Allow counts one request under key and reports whether it is within
	// perMinute requests a minute; when it is not, retryAfter says when one
	// more will be. A store that cannot be reached returns an error wrapping
	// ErrStoreUnavailable with ok true: a rate limiter must not take the
	// service down with its store, so callers fail open (and log the error).
	Allow(ctx context.Context, key string, perMinute int) (ok bool, retryAfter time.Duration, err error)
}

// LimitKind names what a rate limit counts; each kind has its own budget.
type LimitKind string

// Kinds of rate-limited requests.
const (
	LimitChat    LimitKind = "chat"    // POST /v1/chats: the site's chats_per_minute
	LimitConsent LimitKind = "consent" // PUT /v1/consent: the site's consent_per_minute
	LimitMe      LimitKind = "me"      // GET and DELETE /v1/me: the site's consent_per_minute
)

// PerMinute is the site's limit of requests of kind per IP and minute.
func (r RateLimit) PerMinute(kind LimitKind) int {
	if kind == LimitChat {
		return r.ChatsPerMinute
	}
	return r.ConsentPerMinute
}

// RateLimitKey is the store key that counts requests of kind from ip on site:
// rl:{<site>}:<kind>:<keyed hash of the truncated IP>. The IP is truncated as
// TruncateIP does (/24, /48), so one household or office shares a budget, and
// then hashed under the site's rate-limit key, so no key name holds an address
// and one site's keys say nothing of another's. The hash tag {<site>} keeps a
// site's counters on one Cluster slot.
func RateLimitKey(h *Hasher, site string, kind LimitKind, ip netip.Addr) string {
	return "rl:{" + site + "}:" + string(kind) + ":" + h.Short(site, PurposeRateLimit, TruncateIP(ip))
}

// RateLimitKey is the store key that counts requests of kind from ip on site
// (see the function RateLimitKey).
func (s *Service) RateLimitKey(site *Site, kind LimitKind, ip netip.Addr) string {
	return RateLimitKey(s.hasher, site.ID, kind, ip)
}

// IPBlock is the network an IP is counted under by per-IP limits: the /24 of an
// IPv4 or the /48 of an IPv6 address, as TruncateIP keeps it. It is a value, not
// a string, so an in-process limiter can key a map by it without allocating.
func IPBlock(ip netip.Addr) netip.Prefix {
	ip = ip.Unmap()
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return netip.Prefix{} // an invalid IP: all such callers share one block
	}
	return p
}

package visitor

import (
	"context"
	"fmt"
	"net/netip"
	"time"
)

// RateLimitError is a request refused by a rate limit. It carries an *Error of
// code ERateLimited, so errors.Is(err, ErrRateLimited) holds.
type RateLimitError struct {
	// RetryAfter is how long the caller should wait before it tries again.
	RetryAfter time.Duration
}

// Error says that the caller sent too many requests and when to try again.
func (e *RateLimitError) Error() string {
	return fmt.Sprintf("too many requests; try again in %d s", e.RetrySeconds())
}

// Unwrap returns the client error: code ERateLimited, Error's message.
func (e *RateLimitError) Unwrap() error { return &Error{Code: ERateLimited, Message: e.Error()} }

// RetrySeconds is RetryAfter in whole seconds, rounded up and at least 1, as the
// Retry-After header carries it.
func (e *RateLimitError) RetrySeconds() int {
	s := int((e.RetryAfter + time.Second - 1) / time.Second)
	return max(s, 1)
}

// RateLimiter counts requests under a key in a shared store, so that every pod
// applies one limit (DESIGN.md, Storage: chats, consent, /v1/me, API keys).
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
	LimitTrack   LimitKind = "track"   // POST /v1/track: page views, heartbeats and leaves alike
	LimitChat    LimitKind = "chat"    // POST /v1/chats
	LimitConsent LimitKind = "consent" // PUT /v1/consent
	LimitMe      LimitKind = "me"      // GET and DELETE /v1/me
	LimitAPI     LimitKind = "api"     // operator and privacy routes
)

// LimitBy names whom a limit counts a request under.
type LimitBy string

// What requests are counted under (DESIGN.md, Storage: no client may lock out
// another, so a request with a valid token is counted by its identity only).
const (
	// ByIdentity counts a request carrying a valid identity or refusal token
	// under that identity, never under its network.
	ByIdentity LimitBy = "identity"
	// ByIPBlock counts a request without a valid token under its IP block
	// (/24, /48).
	ByIPBlock LimitBy = "ip_block"
	// ByAPIKey counts an operator or privacy request under its API key.
	ByAPIKey LimitBy = "api_key"
)

// Limits that are the same on every site.
const (
	// IdentityHitsPerMinute is how many track calls (page views, heartbeats and
	// leaves alike) one identity may make per minute.
	IdentityHitsPerMinute = 120
	// IdentityRequestsPerMinute is how many consent requests, and separately
	// how many /v1/me requests, one identity may make per minute.
	IdentityRequestsPerMinute = 20
	// APIKeyPerMinute is how many operator or privacy requests one API key may
	// make per minute on a site.
	APIKeyPerMinute = 600
)

// Limit is one rate limit: what it counts and whom it counts it under.
type Limit struct {
	Kind LimitKind
	By   LimitBy
}

// Limits lists every rate limit there is, so that each can be counted and
// documented; PerMinute gives each one's budget.
var Limits = []Limit{
	{LimitTrack, ByIdentity}, {LimitTrack, ByIPBlock},
	{LimitConsent, ByIdentity}, {LimitConsent, ByIPBlock},
	{LimitMe, ByIdentity}, {LimitMe, ByIPBlock},
	{LimitChat, ByIdentity}, {LimitChat, ByIPBlock},
	{LimitAPI, ByAPIKey},
}

// PerMinute is how many requests of kind one caller counted by by may make per
// minute on the site. A track call without a valid token is a new visitor:
// new_visitors_per_minute per IP block. 0 means no limit.
func (r RateLimit) PerMinute(kind LimitKind, by LimitBy) int {
	switch {
	case kind == LimitAPI:
		return APIKeyPerMinute
	case kind == LimitChat:
		return r.ChatsPerMinute
	case kind == LimitTrack && by == ByIdentity:
		return IdentityHitsPerMinute
	case kind == LimitTrack:
		return r.NewVisitorsPerMinute
	case by == ByIdentity:
		return IdentityRequestsPerMinute
	}
	return r.ConsentPerMinute
}

// Caller is the token a widget request carries, verified once per request:
// the transport verifies it to choose the request's rate limit and hands it on
// (Hit.Caller), so the page-view path does not verify it twice.
type Caller struct {
	// Raw is the token as sent, "" for none.
	Raw string
	// Token is what Raw stands for when Valid.
	Token Token
	// Valid is true for a well-formed token of the site, signed by one of the
	// secrets and not expired. It says nothing of tombstones: an erased
	// visitor's token is found foreign by the store.
	Valid   bool
	checked bool
}

// Caller verifies the token raw of a request to site.
func (s *Service) Caller(site *Site, raw string) Caller {
	tok, ok := s.verify(raw, site, utc(s.now()))
	return Caller{Raw: raw, Token: tok, Valid: ok, checked: true}
}

// LimitID is what a limit by identity counts the caller under: the visitor id
// of an identity token, the nonce of a refusal token (which names no visitor),
// or the whole token for a refusal token issued without one. It is "" unless
// Valid.
func (c Caller) LimitID() string {
	switch {
	case !c.Valid:
		return ""
	case c.Token.Kind == KindID:
		return c.Token.VisitorID
	case c.Token.Nonce != "":
		return c.Token.Nonce
	}
	return c.Raw
}

// LimitSubject is what a rate-limit key counts, before it is hashed.
type LimitSubject string

// Subject is the limit subject of a caller with a valid token: its identity.
func (c Caller) Subject() LimitSubject {
	if c.Token.Kind == KindID {
		return LimitSubject("id:" + c.LimitID())
	}
	return LimitSubject("rt:" + c.LimitID())
}

// BlockSubject is the limit subject of a caller without a valid token: the IP
// block of ip, truncated as TruncateIP does (/24, /48).
func BlockSubject(ip netip.Addr) LimitSubject { return LimitSubject("ip:" + TruncateIP(ip)) }

// KeySubject is the limit subject of an API key.
func KeySubject(keyID string) LimitSubject { return LimitSubject("key:" + keyID) }

// RateLimitKey is the store key that counts requests of kind by subject on
// site: rl:{<site>}:<kind>:<keyed hash of the subject>. The subject is hashed
// under the site's rate-limit key, so no key name holds an address, a visitor
// id or a key id, and one site's keys say nothing of another's. The hash tag
// {<site>} keeps a site's counters on one Cluster slot.
func RateLimitKey(h *Hasher, site string, kind LimitKind, subject LimitSubject) string {
	return "rl:{" + site + "}:" + string(kind) + ":" + h.Short(site, PurposeRateLimit, string(subject))
}

// RateLimitKey is the store key that counts requests of kind by subject on
// site (see the function RateLimitKey).
func (s *Service) RateLimitKey(site *Site, kind LimitKind, subject LimitSubject) string {
	return RateLimitKey(s.hasher, site.ID, kind, subject)
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

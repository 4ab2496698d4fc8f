package httpapi

import (
	"context"
	"time"

	"github.com/visitord/visitord/internal/visitor"
)

// The domain as the handlers see it: one small interface per concept, listing
// exactly the methods of visitor.Service the handlers of that concept call, so
// that the transport is tested against a fake of them without a store.

// Tracker is the domain of POST /v1/track (track.go).
type Tracker interface {
	// Caller verifies the token a widget request of site carries, once per
	// request: the rate limits and Track both use it.
	Caller(site *visitor.Site, raw string) visitor.Caller
	// Track records or refuses a page view, heartbeat or leave. It returns
	// visitor.ErrInvalid, ErrURLNotInSite or ErrStoreUnavailable.
	Track(ctx context.Context, h visitor.Hit) (visitor.TrackResult, error)
}

// Consents is the domain of GET and PUT /v1/consent (consent.go).
type Consents interface {
	// Consent is the choice in force for the visitor a token names, or the
	// site's defaults. It returns ErrStoreUnavailable.
	Consent(ctx context.Context, site *visitor.Site, token string) (visitor.Choice, error)
	// SetConsent records a grant, refusal or withdrawal. It returns
	// ErrInvalid, ErrPolicyOutdated or ErrStoreUnavailable.
	SetConsent(ctx context.Context, r visitor.ConsentRequest) (visitor.ConsentResult, error)
}

// Chats is the domain of POST /v1/chats (chat.go).
type Chats interface {
	// StartChat records a chat start and links it to the visitor. It returns
	// ErrInvalid, ErrURLNotInSite or ErrStoreUnavailable.
	StartChat(ctx context.Context, r visitor.ChatRequest) (visitor.ChatResult, error)
}

// Operators is the domain of the operator routes (operator.go, stream.go).
type Operators interface {
	// Authenticate finds the key presented for siteID among that site's keys
	// with one of roles. It returns ErrUnauthorized, ErrForbidden or
	// ErrUnknownSite.
	Authenticate(siteID, presented string, roles ...visitor.Role) (visitor.Actor, error)
	// Live is a page of the visitors active within the window. It returns
	// ErrInvalid (a bad window, limit or cursor) or ErrStoreUnavailable.
	Live(ctx context.Context, a visitor.Actor, within time.Duration, cursor string, limit int) (visitor.LivePage, error)
	// ChatContext is what an operator sees of a chat. It returns ErrNotFound
	// or ErrStoreUnavailable.
	ChatContext(ctx context.Context, a visitor.Actor, chatID string) (visitor.ChatView, error)
	// Stats returns the site's anonymous counters of day. It returns
	// ErrStoreUnavailable.
	Stats(ctx context.Context, a visitor.Actor, day time.Time) (map[string]int64, error)
	// StatsRange returns the counters of each day from from to to. It returns
	// ErrInvalid or ErrStoreUnavailable.
	StatsRange(ctx context.Context, a visitor.Actor, from, to time.Time) ([]visitor.DayStats, error)
	// Today is the current UTC day.
	Today() time.Time
	// HoldStream takes or renews a live stream's place among at most max of
	// the actor's key. It returns ErrRateLimited or ErrStoreUnavailable.
	HoldStream(ctx context.Context, a visitor.Actor, id string, max int, lease time.Duration) error
	// ReleaseStream gives a live stream's place back. It returns
	// ErrStoreUnavailable.
	ReleaseStream(ctx context.Context, a visitor.Actor, id string) error
}

// Subjects is the domain of the privacy team's subject requests and of the
// visitor's own /v1/me (privacy.go).
type Subjects interface {
	// SearchSubjects finds the visitors and chats of an e-mail address. It
	// returns ErrInvalid or ErrStoreUnavailable.
	SearchSubjects(ctx context.Context, a visitor.Actor, email string) (visitors, chats []string, err error)
	// ExportVisitor is everything kept of a visitor. It returns ErrNotFound or
	// ErrStoreUnavailable.
	ExportVisitor(ctx context.Context, a visitor.Actor, visitorID string) (visitor.Export, error)
	// RectifyVisitor changes a visitor's contact details and returns the
	// export after. It returns ErrInvalid, ErrNotFound or ErrStoreUnavailable.
	RectifyVisitor(ctx context.Context, a visitor.Actor, visitorID string, ch visitor.ContactChange) (visitor.Export, error)
	// EraseVisitor erases a visitor. It returns ErrNotFound or
	// ErrStoreUnavailable.
	EraseVisitor(ctx context.Context, a visitor.Actor, visitorID string) error
	// EraseChat erases a chat. It returns ErrNotFound or ErrStoreUnavailable.
	EraseChat(ctx context.Context, a visitor.Actor, chatID string) error
	// ExportMine is the export of the visitor a token names, contacts masked.
	// It returns ErrUnauthorized without a valid identity token, or
	// ErrStoreUnavailable.
	ExportMine(ctx context.Context, site *visitor.Site, token string) (visitor.Export, error)
	// EraseMine erases the visitor a token names. It returns ErrUnauthorized
	// without a valid identity token, or ErrStoreUnavailable.
	EraseMine(ctx context.Context, site *visitor.Site, token string) error
	// ProcessingRecord is the site's record of processing (GDPR Art. 30).
	ProcessingRecord(a visitor.Actor) visitor.ProcessingRecord
}

// RetentionPolicy is the domain of GET and PUT retention (retention.go).
type RetentionPolicy interface {
	// Retention is the site's retention in force.
	Retention(site *visitor.Site) visitor.Retention
	// RetentionBounds are the bounds a change must keep to.
	RetentionBounds() visitor.RetentionBounds
	// RetentionChanged is when the site's retention last changed; the zero
	// time if never. It returns ErrStoreUnavailable.
	RetentionChanged(ctx context.Context, a visitor.Actor) (time.Time, error)
	// SetRetention changes the site's retention. It returns
	// ErrRetentionBounds or ErrStoreUnavailable.
	SetRetention(ctx context.Context, a visitor.Actor, r visitor.Retention) (visitor.Retention, error)
}

// Auditor is the domain of GET audit (audit.go).
type Auditor interface {
	// AuditTrail is a page of the site's audit entries. It returns
	// ErrInvalid (a bad cursor) or ErrStoreUnavailable.
	AuditTrail(ctx context.Context, a visitor.Actor, target, cursor string, limit int) ([]visitor.AuditEntry, string, error)
}

// Service is every domain method the HTTP API calls, with the sites, the
// clock and the rate-limit keys the transport shares with the domain.
// *visitor.Service implements it.
type Service interface {
	Tracker
	Consents
	Chats
	Operators
	Subjects
	RetentionPolicy
	Auditor
	// Sites are the configured sites.
	Sites() *visitor.Sites
	// Now is the domain's clock, in UTC.
	Now() time.Time
	// RateLimitKey is the store key counting requests of kind by subject.
	RateLimitKey(site *visitor.Site, kind visitor.LimitKind, subject visitor.LimitSubject) string
}

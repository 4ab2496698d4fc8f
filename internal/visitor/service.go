package visitor

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"time"
)

// Store is everything the Service needs of its storage: one store for every
// concept, as redisstore.Store is. The Service holds each concept's part
// apart; each part is declared in its concept's file.
type Store interface {
	TrackStore
	ConsentStore
	ChatStore
	OperatorStore
	PrivacyStore
	RetentionStore
	AuditStore
	WebhookStore
}

// Devices turns a User-Agent into a Device.
type Devices interface {
	Parse(ua string) Device
}

// Locator turns an IP into a Location; the zero Location when unknown.
type Locator interface {
	Lookup(ip netip.Addr) Location
}

// Service is visitord's domain logic: the privacy gates, identities, sessions and
// consent. It is safe for concurrent use.
type Service struct {
	sites     *Sites
	track     TrackStore
	consent   ConsentStore
	chats     ChatStore
	operator  OperatorStore
	privacy   PrivacyStore
	retain    RetentionStore
	audits    AuditStore
	webhooks  WebhookStore
	signer    *Signer
	hasher    *Hasher
	sealer    *Sealer
	devices   Devices
	locator   Locator
	now       func() time.Time
	newID     func() string
	textHash  map[string]string
	retention retentions
	bounds    RetentionBounds
}

// Option sets an optional tunable of the Service.
type Option func(*Service)

// WithClock replaces time.Now, for tests.
func WithClock(now func() time.Time) Option { return func(s *Service) { s.now = now } }

// WithIDs replaces NewVisitorID, for tests.
func WithIDs(newID func() string) Option { return func(s *Service) { s.newID = newID } }

// Deps are the Service's required dependencies. Signer, Sealer, Devices and
// Locator may be nil for a Service that never needs them (tests); Locator nil
// places every visitor nowhere.
type Deps struct {
	Sites   *Sites
	Store   Store
	Signer  *Signer
	Hasher  *Hasher
	Sealer  *Sealer
	Devices Devices
	Locator Locator
}

// NewService returns a Service over d, with opts applied.
func NewService(d Deps, opts ...Option) *Service {
	s := &Service{
		sites: d.Sites, signer: d.Signer, hasher: d.Hasher, sealer: d.Sealer, devices: d.Devices, locator: d.Locator,
		now: time.Now, newID: NewVisitorID, textHash: map[string]string{}, bounds: RetentionBounds{Min: 1, Max: 1825},
	}
	if d.Store != nil {
		s.track, s.consent, s.chats, s.operator = d.Store, d.Store, d.Store, d.Store
		s.privacy, s.retain, s.audits, s.webhooks = d.Store, d.Store, d.Store, d.Store
	}
	for _, site := range d.Sites.All() {
		sum := sha256.Sum256([]byte(site.LegalText))
		s.textHash[site.ID] = hex.EncodeToString(sum[:])
	}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Sites returns the configured sites.
func (s *Service) Sites() *Sites { return s.sites }

// verify returns the token raw stands for if it is a valid token of site now.
func (s *Service) verify(raw string, site *Site, now time.Time) (Token, bool) {
	if raw == "" {
		return Token{}, false
	}
	return s.signer.Verify(raw, site.ID, now)
}

// issueID returns a new identity token for visitorID; expires is kept from an
// earlier token so a re-issue never extends the identity's lifetime. A new
// identity lives as long as the profiles retention in force (overrides
// included), at most 13 months.
func (s *Service) issueID(site *Site, visitorID string, now, expires time.Time, grant Choice) (string, time.Time) {
	if expires.IsZero() {
		expires = now.Add(s.Retention(site).IdentityLifetime())
	}
	t := Token{Kind: KindID, Site: site.ID, IssuedAt: now, Expires: expires, VisitorID: visitorID}
	if grant.Analytics {
		t.ConsentUntil, t.ConsentPolicy = grant.ValidUntil, grant.PolicyVersion
	}
	return s.signer.Sign(t), expires
}

func (s *Service) issueRefusal(site *Site, now time.Time) (string, time.Time) {
	exp := now.Add(site.RefusalLifetime())
	return s.signer.Sign(Token{Kind: KindRefusal, Site: site.ID, IssuedAt: now, Expires: exp, Nonce: NewVisitorID()}), exp
}

func utc(t time.Time) time.Time { return t.UTC().Truncate(time.Millisecond) }

// Now is the current time by the service's clock, in UTC.
func (s *Service) Now() time.Time { return utc(s.now()) }

package visitor

import (
	"regexp"
	"time"
)

// ConsentMode says when a site may identify a visitor.
type ConsentMode string

// Consent modes of DESIGN.md's invariant 2.
const (
	// ConsentOptIn stores nothing identifying until the visitor grants analytics.
	ConsentOptIn ConsentMode = "opt-in"
	// ConsentOnChat stores nothing identifying until the visitor starts a chat.
	ConsentOnChat ConsentMode = "on-chat"
	// ConsentOptOut tracks until the visitor refuses.
	ConsentOptOut ConsentMode = "opt-out"
)

// IPMode says how much of a visitor's IP a site keeps.
type IPMode string

// IP modes of invariant 5.
const (
	IPDrop     IPMode = "drop"
	IPTruncate IPMode = "truncate"
	IPFull     IPMode = "full"
)

// Role is what an API key may do.
type Role string

// Roles of operator API keys.
const (
	RoleOperator Role = "operator"
	RolePrivacy  Role = "privacy"
)

// Retention is the number of days each category of data is kept.
type Retention struct {
	Sessions int
	Profiles int
	Chats    int
	Consents int
	Audit    int
}

// Controller names who is responsible for the processing (GDPR Art. 30).
type Controller struct {
	Name      string
	Contact   string
	DPO       string
	Transfers string
}

// Webhook is where chat leads and subject events are delivered.
type Webhook struct {
	URL    string
	Secret []byte
}

// RateLimit bounds what one IP block may do per minute on a site without a
// valid token (DESIGN.md, Storage); PerMinute gives every limit.
type RateLimit struct {
	// NewVisitorsPerMinute bounds track calls without a valid token: the
	// identities issued.
	NewVisitorsPerMinute int
	// ChatsPerMinute bounds chats, per identity or, without one, per IP block.
	ChatsPerMinute int
	// ConsentPerMinute bounds consent and /v1/me requests without a valid token.
	ConsentPerMinute int
}

// APIKey is an operator or privacy key, known only by its SHA-256.
type APIKey struct {
	ID     string
	Role   Role
	SHA256 [32]byte
}

// Site is one tenant: a web site whose visitors visitord recognises.
type Site struct {
	ID               string
	Origins          []string
	Consent          ConsentMode
	ConsentValidDays int
	IP               IPMode
	SessionTimeout   time.Duration
	SessionMax       time.Duration
	KeepQuery        []string
	RedactPaths      []*regexp.Regexp
	KeepTitle        bool
	Retention        Retention
	PolicyVersion    string
	LegalText        string
	Controller       Controller
	Webhook          Webhook
	RateLimit        RateLimit
	Keys             []APIKey
}

// MaxCookieLifetime is the longest an identity may live: 13 months, as CNIL advises.
const MaxCookieLifetime = 395 * 24 * time.Hour

// RefusalLifetimeOptOut is how long a refusal lasts on an opt-out site.
const RefusalLifetimeOptOut = 365 * 24 * time.Hour

var siteIDPattern = regexp.MustCompile(`^[a-z0-9-]{1,32}$`)

// ValidSiteID reports whether id has the shape of a site id.
func ValidSiteID(id string) bool { return siteIDPattern.MatchString(id) }

// AllowsOrigin reports whether origin is one of the site's origins.
func (s *Site) AllowsOrigin(origin string) bool {
	for _, o := range s.Origins {
		if o == origin {
			return true
		}
	}
	return false
}

// IdentityLifetime is how long an identity token issued now may live under these
// windows: at most 13 months and never longer than profiles are kept.
func (r Retention) IdentityLifetime() time.Duration {
	d := time.Duration(r.Profiles) * 24 * time.Hour
	if d <= 0 || d > MaxCookieLifetime {
		return MaxCookieLifetime
	}
	return d
}

// ConsentValidity is how long a consent choice on this site stays valid.
func (s *Site) ConsentValidity() time.Duration {
	return time.Duration(s.ConsentValidDays) * 24 * time.Hour
}

// RefusalLifetime is how long a refusal token on this site stays valid.
func (s *Site) RefusalLifetime() time.Duration {
	if s.Consent == ConsentOptOut {
		return RefusalLifetimeOptOut
	}
	return s.ConsentValidity()
}

// ValidateRetention checks r against the bounds [minDays, maxDays] and the rule that
// consent proof outlives what it proves: consents ≥ max(profiles, consent_valid_days).
// A window that breaks either is an *Error of code ERetentionBounds.
func (s *Site) ValidateRetention(r Retention, minDays, maxDays int) error {
	for _, f := range []struct {
		name string
		days int
	}{{"sessions", r.Sessions}, {"profiles", r.Profiles}, {"chats", r.Chats}, {"consents", r.Consents}, {"audit", r.Audit}} {
		if f.days < minDays || f.days > maxDays {
			return Errorf(ERetentionBounds, "retention %s is %d days, outside %d..%d", f.name, f.days, minDays, maxDays)
		}
	}
	if need := max(r.Profiles, s.ConsentValidDays); r.Consents < need {
		return Errorf(ERetentionBounds, "retention consents is %d days, must be at least %d (max of profiles and consent_valid_days)", r.Consents, need)
	}
	return nil
}

// Sites is the configured set of sites, looked up by id.
type Sites struct {
	byID    map[string]*Site
	list    []*Site
	origins map[string]bool
}

// NewSites indexes sites by id; ids must be unique.
func NewSites(sites []*Site) (*Sites, error) {
	s := &Sites{byID: make(map[string]*Site, len(sites)), origins: map[string]bool{}}
	for _, site := range sites {
		if _, dup := s.byID[site.ID]; dup {
			return nil, Errorf(EInvalid, "site %q is defined twice", site.ID)
		}
		s.byID[site.ID] = site
		s.list = append(s.list, site)
		for _, o := range site.Origins {
			s.origins[o] = true
		}
	}
	return s, nil
}

// Get returns the site with id, or ErrUnknownSite.
func (s *Sites) Get(id string) (*Site, error) {
	if site, ok := s.byID[id]; ok {
		return site, nil
	}
	return nil, Errorf(EUnknownSite, "site %q is not configured", truncateUTF8(id, 40))
}

// All returns every site in configuration order.
func (s *Sites) All() []*Site { return s.list }

// AnyAllowsOrigin reports whether origin belongs to any configured site; preflight
// requests carry no body, so they can only be checked against all sites.
func (s *Sites) AnyAllowsOrigin(origin string) bool { return s.origins[origin] }

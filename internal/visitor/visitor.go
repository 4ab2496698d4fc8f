// Package visitor is the domain of visitord: sites, visits, sessions, consent and
// the privacy rules that govern them. It imports no transport, store or database
// library; adapters in sibling packages translate to and from these types.
package visitor

import (
	"errors"
)

// Domain errors. Adapters wrap them with detail and the HTTP layer maps them to
// statuses in one place.
var (
	// ErrInvalid reports a request that breaks the contract (bad field, bad value).
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound reports a site, visitor or chat that does not exist.
	ErrNotFound = errors.New("not found")
	// ErrUnknownSite reports a site id that is not configured.
	ErrUnknownSite = errors.New("unknown site")
	// ErrUnauthorized reports a caller without a valid API key.
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden reports a caller that may not do what it asked.
	ErrForbidden = errors.New("forbidden")
	// ErrOriginNotAllowed reports a browser origin that is not one of the site's.
	ErrOriginNotAllowed = errors.New("origin not allowed")
	// ErrURLNotInSite reports a page URL whose origin is not one of the site's.
	ErrURLNotInSite = errors.New("url not in site")
	// ErrPolicyOutdated reports a consent given for another policy version than the site's.
	ErrPolicyOutdated = errors.New("policy outdated")
	// ErrRetentionBounds reports retention windows outside the allowed bounds.
	ErrRetentionBounds = errors.New("retention out of bounds")
	// ErrStoreUnavailable reports that the store did not answer in time.
	ErrStoreUnavailable = errors.New("store unavailable")
)

// Device is what visitord keeps of a User-Agent.
type Device struct {
	Browser string
	Version string
	OS      string
	Mobile  bool
	// Bot is true for crawlers and non-browser clients; bots are never tracked.
	Bot bool
}

// Location is what visitord keeps of an IP's geolocation: nothing finer than a city.
type Location struct {
	Country  string // ISO 3166-1 alpha-2, e.g. "DE"
	Region   string // ISO 3166-2 subdivision code without the country, e.g. "BE"
	City     string // English name, e.g. "Berlin"
	TimeZone string // IANA name, e.g. "Europe/Berlin"
}

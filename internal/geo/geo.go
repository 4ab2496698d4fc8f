// Package geo turns client IP addresses into a visitor.Location using a MaxMind
// DB city database (GeoIP2-City, GeoLite2-City, DB-IP City Lite) read with
// geoip2-golang. No geoip2 type crosses this package's API.
package geo

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/maypok86/otter/v2"
	"github.com/oschwald/geoip2-golang/v2"

	"github.com/visitord/visitord/internal/visitor"
)

// DefaultCacheSize is the number of address prefixes a Locator caches unless
// WithCacheSize says otherwise; at about 140 bytes an entry, some 2.2 MB.
const DefaultCacheSize = 1 << 14

// maxLen caps every string taken from the database, in bytes.
const maxLen = 64

// Locator answers the location of IP addresses from a city database. A nil
// *Locator stands for "no database configured" and answers the zero Location.
// Its methods are safe for concurrent use.
//
// Lookups are cached per /24 (IPv4) or /48 (IPv6) prefix, and every address in
// one such prefix is treated as equal: it gets the location found for whichever
// address of the prefix was looked up first while the prefix stayed cached.
// Databases rarely split networks finer than that, and a location no finer than
// a city is all visitord keeps.
type Locator struct {
	path   string
	closed atomic.Bool
	cache  *otter.Cache[uint64, visitor.Location] // nil when caching is disabled

	mu sync.RWMutex // held for reading during a database lookup, so Close waits for it
	db *geoip2.Reader
}

// Option configures a Locator.
type Option func(*options)

type options struct {
	cacheSize int
}

// WithCacheSize bounds the lookup cache to at most n prefixes (default
// DefaultCacheSize); n <= 0 disables the cache.
func WithCacheSize(n int) Option {
	return func(o *options) { o.cacheSize = n }
}

// Open opens the MaxMind DB city database at path. It returns an error naming
// path if the file is missing, unreadable, not a MaxMind DB, or not a city
// database (its metadata type must contain "City").
func Open(path string, opts ...Option) (*Locator, error) {
	o := options{cacheSize: DefaultCacheSize}
	for _, opt := range opts {
		opt(&o)
	}
	if path == "" {
		return nil, errors.New("geoip database: empty path")
	}
	db, err := geoip2.Open(path)
	if err != nil {
		// geoip2 returns an open reader along with UnknownDatabaseTypeError.
		if db != nil {
			_ = db.Close()
		}
		return nil, fmt.Errorf("geoip database %s: %w", path, err)
	}
	if typ := db.Metadata().DatabaseType; !strings.Contains(typ, "City") {
		_ = db.Close()
		return nil, fmt.Errorf("geoip database %s: type %q is not a city database", path, typ)
	}
	l := &Locator{path: path, db: db}
	if o.cacheSize > 0 {
		l.cache = newCache(o.cacheSize)
	}
	return l, nil
}

// Lookup returns the location of ip: the zero Location if ip is invalid, not a
// public unicast address, unknown to the database, or if l is nil or closed.
// IPv4-mapped IPv6 addresses are looked up as IPv4, and zones are ignored.
func (l *Locator) Lookup(ip netip.Addr) visitor.Location {
	if l == nil {
		return visitor.Location{}
	}
	ip = ip.Unmap().WithZone("")
	if !ip.IsGlobalUnicast() || ip.IsPrivate() || l.closed.Load() {
		return visitor.Location{}
	}
	key := prefixKey(ip)
	if l.cache != nil {
		if loc, ok := l.cache.GetIfPresent(key); ok {
			return loc
		}
	}
	loc, ok := l.lookup(ip)
	if ok && l.cache != nil {
		l.cache.Set(key, loc)
	}
	return loc
}

// lookup asks the database; ok is false if the Locator was closed meanwhile.
func (l *Locator) lookup(ip netip.Addr) (loc visitor.Location, ok bool) {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.db == nil {
		return visitor.Location{}, false
	}
	rec, err := l.db.City(ip)
	if err != nil {
		// A record that does not decode is as good as no record; the error is
		// deterministic, so caching the zero answer is right.
		return visitor.Location{}, true
	}
	loc = visitor.Location{
		Country:  clip(rec.Country.ISOCode),
		City:     clip(rec.City.Names.English),
		TimeZone: clip(rec.Location.TimeZone),
	}
	// Subdivisions are ordered largest first (England before West Berkshire).
	if len(rec.Subdivisions) > 0 {
		loc.Region = clip(rec.Subdivisions[0].ISOCode)
	}
	return loc, true
}

// Close releases the database. Lookups after Close answer the zero Location.
// Closing a nil or already closed Locator does nothing.
func (l *Locator) Close() error {
	if l == nil {
		return nil
	}
	l.closed.Store(true)
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.db == nil {
		return nil
	}
	err := l.db.Close()
	l.db = nil
	if err != nil {
		return fmt.Errorf("geoip database %s: close: %w", l.path, err)
	}
	return nil
}

// clip cuts s to at most maxLen bytes without splitting a UTF-8 sequence.
func clip(s string) string {
	if len(s) <= maxLen {
		return s
	}
	i := maxLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return strings.Clone(s[:i])
}

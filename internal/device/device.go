// Package device turns a User-Agent header into a visitor.Device using
// github.com/mssola/useragent, behind a bounded cache so that each distinct
// User-Agent is parsed once.
//
// What is kept is deliberately coarse: the browser name, its major.minor
// version, the operating system's name without its version, and whether the
// client is mobile or a bot. Every string is capped to 64 bytes.
//
// User-Agents longer than 512 bytes are parsed on every call and never cached,
// so a client cannot fill memory with long, unique headers. Truncating them to a
// cache key instead would be wrong: two headers sharing their first 512 bytes
// can differ in the token that marks a bot.
package device

import (
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"

	"github.com/mssola/useragent"

	"github.com/visitord/visitord/internal/visitor"
)

const (
	// maxKeyLen is the longest User-Agent that is cached.
	maxKeyLen = 512
	// maxFieldLen caps Browser, Version and OS.
	maxFieldLen = 64
	// maxShards bounds the number of independently locked cache shards.
	maxShards = 16
)

// nonBrowserPrefixes start the default User-Agents of well-known HTTP libraries
// and command-line clients, which useragent does not report as bots because
// they carry neither "bot" nor a URL. Matching is by case-sensitive prefix, the
// way these clients send it. HeadlessChrome is deliberately absent: our browser
// tests drive headless Chromium and must be counted.
var nonBrowserPrefixes = []string{
	"curl/",            // curl
	"Wget/",            // GNU Wget
	"python-requests/", // Python requests
	"Go-http-client/",  // Go net/http default
	"okhttp/",          // OkHttp (Java, Android)
	"libwww-perl/",     // Perl LWP
}

// Parser turns User-Agent strings into visitor.Device values, caching up to a
// fixed number of results; it is safe for concurrent use.
type Parser struct {
	seed   maphash.Seed
	shards []shard // len is a power of two; empty when caching is disabled
}

// NewParser returns a Parser that caches at most size parsed User-Agents;
// a size of zero or less disables the cache.
func NewParser(size int) *Parser {
	p := &Parser{seed: maphash.MakeSeed()}
	if size <= 0 {
		return p
	}
	n := maxShards
	for n > size {
		n /= 2
	}
	p.shards = make([]shard, n)
	for i := range p.shards {
		// Spread the remainder so the shards add up to exactly size.
		limit := size / n
		if i < size%n {
			limit++
		}
		p.shards[i].init(limit)
	}
	return p
}

// Parse returns the Device described by ua; a cached result costs one map
// lookup under a shard's read lock and does not allocate.
func (p *Parser) Parse(ua string) visitor.Device {
	if len(p.shards) == 0 || len(ua) > maxKeyLen {
		return parse(ua)
	}
	s := &p.shards[maphash.String(p.seed, ua)&uint64(len(p.shards)-1)]
	if d, ok := s.get(ua); ok {
		return d
	}
	d := parse(ua)
	// Clone so the cache never pins a larger buffer ua may have been sliced from.
	s.put(strings.Clone(ua), d)
	return d
}

// len reports how many User-Agents are cached; tests use it to check the bound.
func (p *Parser) len() int {
	total := 0
	for i := range p.shards {
		s := &p.shards[i]
		s.mu.RLock()
		total += len(s.entries)
		s.mu.RUnlock()
	}
	return total
}

// parse does the uncached work for Parse.
func parse(ua string) visitor.Device {
	if strings.TrimSpace(ua) == "" {
		return visitor.Device{Bot: true}
	}
	u := useragent.New(ua)
	name, version := u.Browser()
	// The fields are cloned because useragent slices them out of its own copies
	// of whole header sections, which the cache would otherwise keep alive.
	return visitor.Device{
		Browser: strings.Clone(capLen(name)),
		Version: strings.Clone(capLen(majorMinor(version))),
		OS:      strings.Clone(capLen(u.OSInfo().Name)),
		Mobile:  u.Mobile(),
		Bot:     u.Bot() || isNonBrowser(ua),
	}
}

// isNonBrowser reports whether ua is the default User-Agent of a known
// non-browser client.
func isNonBrowser(ua string) bool {
	for _, prefix := range nonBrowserPrefixes {
		if strings.HasPrefix(ua, prefix) {
			return true
		}
	}
	return false
}

// majorMinor keeps the first two dot-separated parts of a version:
// "120.0.6099.109" becomes "120.0".
func majorMinor(v string) string {
	dots := 0
	for i := 0; i < len(v); i++ {
		if v[i] == '.' {
			dots++
			if dots == 2 {
				return v[:i]
			}
		}
	}
	return v
}

// capLen cuts s to at most maxFieldLen bytes without splitting a UTF-8 sequence.
func capLen(s string) string {
	if len(s) <= maxFieldLen {
		return s
	}
	i := maxFieldLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// shard is one independently locked part of the cache. It evicts with the CLOCK
// algorithm: a hit sets the entry's referenced bit, and the hand, looking for a
// victim, clears set bits and takes the first entry whose bit was already clear.
// Popular User-Agents thereby survive a flood of one-off ones, and a hit needs
// only the read lock.
type shard struct {
	mu      sync.RWMutex
	index   map[string]int // key → position in entries
	entries []entry
	limit   int
	hand    int
	// Padding keeps neighbouring shards' locks off one cache line.
	_ [64]byte
}

// entry is one cached result.
type entry struct {
	key        string
	device     visitor.Device
	referenced atomic.Bool // set by readers under the read lock
}

// init prepares an empty shard holding at most limit entries.
func (s *shard) init(limit int) {
	s.index = make(map[string]int, limit)
	s.entries = make([]entry, 0, limit)
	s.limit = limit
}

// get returns the cached Device for ua, if any.
func (s *shard) get(ua string) (visitor.Device, bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.index[ua]
	if !ok {
		return visitor.Device{}, false
	}
	e := &s.entries[i]
	// Load first so steady-state hits only read the cache line.
	if !e.referenced.Load() {
		e.referenced.Store(true)
	}
	return e.device, true
}

// put caches d under ua, evicting one entry if the shard is full.
func (s *shard) put(ua string, d visitor.Device) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.index[ua]; ok {
		return // another goroutine parsed the same User-Agent meanwhile
	}
	if len(s.entries) < s.limit {
		s.index[ua] = len(s.entries)
		s.entries = append(s.entries, entry{key: ua, device: d})
		return
	}
	for s.entries[s.hand].referenced.Load() {
		s.entries[s.hand].referenced.Store(false)
		s.hand = (s.hand + 1) % s.limit
	}
	victim := &s.entries[s.hand]
	delete(s.index, victim.key)
	victim.key = ua
	victim.device = d
	// New entries start unreferenced, so a one-off User-Agent is the next victim
	// unless it is requested again before the hand comes round.
	s.index[ua] = s.hand
	s.hand = (s.hand + 1) % s.limit
}

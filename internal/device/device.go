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
	"strings"
	"unicode/utf8"

	"github.com/maypok86/otter/v2"
	"github.com/mssola/useragent"

	"github.com/visitord/visitord/internal/visitor"
)

const (
	// maxKeyLen is the longest User-Agent that is cached.
	maxKeyLen = 512
	// maxFieldLen caps Browser, Version and OS.
	maxFieldLen = 64
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
// fixed number of results in an otter cache, whose W-TinyLFU policy keeps
// popular User-Agents through a flood of one-off ones; it is safe for
// concurrent use.
type Parser struct {
	cache *otter.Cache[string, visitor.Device] // nil when caching is disabled
}

// NewParser returns a Parser that caches at most size parsed User-Agents;
// a size of zero or less disables the cache.
func NewParser(size int) *Parser {
	if size <= 0 {
		return &Parser{}
	}
	return &Parser{cache: otter.Must(&otter.Options[string, visitor.Device]{MaximumSize: size})}
}

// Parse returns the Device described by ua; a cached result does not allocate.
func (p *Parser) Parse(ua string) visitor.Device {
	if p.cache == nil || len(ua) > maxKeyLen {
		return parse(ua)
	}
	if d, ok := p.cache.GetIfPresent(ua); ok {
		return d
	}
	d := parse(ua)
	// Clone so the cache never pins a larger buffer ua may have been sliced from.
	p.cache.Set(strings.Clone(ua), d)
	return d
}

// len reports how many User-Agents are cached once pending evictions are
// applied; tests use it to check the bound.
func (p *Parser) len() int {
	if p.cache == nil {
		return 0
	}
	p.cache.CleanUp()
	return p.cache.EstimatedSize()
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

package visitor

import (
	"net/netip"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Limits of invariant 5.
const (
	MaxURLBytes   = 1024
	MaxTitleBytes = 200
	// RedactedPath replaces a path that matches one of the site's redact_paths.
	RedactedPath = "/:redacted"
)

// Page is a page view's URL, title and referrer after minimisation.
type Page struct {
	URL      string
	Title    string
	Referrer string
}

// MinimisePage applies invariant 5 to what a tracker sent: the URL must belong to
// one of the site's origins (else ErrURLNotInSite); the fragment goes, the query
// keeps only allow-listed parameters, a redacted path becomes RedactedPath; an
// external referrer keeps its origin, an internal one its (redactable) path; the
// title is kept only with keep_title and never for a redacted path, cleaned by
// cleanText and cut to MaxTitleBytes.
func (s *Site) MinimisePage(rawURL, title, referrer string) (Page, error) {
	u, err := url.Parse(strings.TrimSpace(rawURL))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Page{}, Errorf(EInvalid, "url must be an absolute http(s) URL")
	}
	// The minimised URL starts with the origin: one buffer holds both (issue 20).
	scheme, host := originParts(u)
	path := u.EscapedPath()
	var b strings.Builder
	b.Grow(len(scheme) + len("://") + len(host) + max(len(path), len(RedactedPath)) + len("?") + len(u.RawQuery))
	b.WriteString(scheme)
	b.WriteString("://")
	b.WriteString(host)
	if !s.AllowsOrigin(b.String()) {
		return Page{}, Errorf(EURLNotInSite, "the url's origin is not one of site %s's origins", s.ID)
	}
	redacted := s.redacted(u.Path)
	p := Page{URL: s.minimiseURL(&b, path, u.RawQuery, redacted)}
	// A redacted path's title goes with it: it names what the path hides
	// ("Invoice for <name>, <street>").
	if s.KeepTitle && !redacted {
		p.Title = truncateUTF8(cleanText(title), MaxTitleBytes)
	}
	p.Referrer = s.minimiseReferrer(referrer)
	return p, nil
}

// minimiseURL is the minimised URL of b's origin, the escaped path and the raw
// query.
func (s *Site) minimiseURL(b *strings.Builder, path, rawQuery string, redacted bool) string {
	if redacted {
		b.WriteString(RedactedPath)
		return b.String()
	}
	if path == "" {
		path = "/"
	}
	b.WriteString(path)
	s.writeKeptQuery(b, rawQuery)
	return truncateURL(b.String(), MaxURLBytes)
}

func (s *Site) minimiseReferrer(raw string) string {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return ""
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ""
	}
	origin := Origin(u)
	if !s.AllowsOrigin(origin) {
		return truncateURL(origin, MaxURLBytes)
	}
	if s.redacted(u.Path) {
		return RedactedPath
	}
	if p := u.EscapedPath(); p != "" {
		return truncateURL(p, MaxURLBytes)
	}
	return "/"
}

func (s *Site) redacted(path string) bool {
	for _, re := range s.RedactPaths {
		if re.MatchString(path) {
			return true
		}
	}
	return false
}

// writeKeptQuery writes '?' and, in their order, the parameters of raw named
// in keep_query, '&' between them; nothing when none is kept. A name ending in
// '*' keeps every parameter with that prefix (the default is utm_*).
func (s *Site) writeKeptQuery(b *strings.Builder, raw string) {
	if raw == "" || len(s.KeepQuery) == 0 {
		return
	}
	sep := byte('?')
	for part := range strings.SplitSeq(raw, "&") {
		name, _, _ := strings.Cut(part, "=")
		name, err := url.QueryUnescape(name)
		if err != nil || name == "" {
			continue
		}
		if s.keepParam(name) {
			b.WriteByte(sep)
			b.WriteString(part)
			sep = '&'
		}
	}
}

func (s *Site) keepParam(name string) bool {
	for _, k := range s.KeepQuery {
		if prefix, ok := strings.CutSuffix(k, "*"); ok {
			if strings.HasPrefix(name, prefix) {
				return true
			}
		} else if k == name {
			return true
		}
	}
	return false
}

// Origin is the scheme://host[:port] of u in lower case, without a default port.
func Origin(u *url.URL) string {
	scheme, host := originParts(u)
	return scheme + "://" + host
}

// originParts are the scheme and host[:port] of Origin(u).
func originParts(u *url.URL) (scheme, host string) {
	host = strings.ToLower(u.Host)
	scheme = strings.ToLower(u.Scheme)
	if (scheme == "https" && strings.HasSuffix(host, ":443")) || (scheme == "http" && strings.HasSuffix(host, ":80")) {
		host = host[:strings.LastIndexByte(host, ':')]
	}
	return scheme, host
}

// StoredIP is the form of ip a site keeps under its ip mode: nothing, the /24
// (IPv4) or /48 (IPv6) network, or the full address.
func (s *Site) StoredIP(ip netip.Addr) string {
	if !ip.IsValid() {
		return ""
	}
	switch s.IP {
	case IPDrop:
		return ""
	case IPFull:
		return ip.Unmap().String()
	default:
		return TruncateIP(ip)
	}
}

// TruncateIP keeps the /24 of an IPv4 or the /48 of an IPv6 address, as a prefix.
func TruncateIP(ip netip.Addr) string {
	ip = ip.Unmap()
	if !ip.IsValid() {
		return ""
	}
	bits := 48
	if ip.Is4() {
		bits = 24
	}
	p, err := ip.Prefix(bits)
	if err != nil {
		return ""
	}
	return p.String()
}

// cleanText makes text one printable line (invariant 5): line breaks, tabs
// and other white-space controls become spaces; every other control character,
// every format character (bidi embeddings, overrides and isolates, zero-width
// spaces and joiners, the byte-order mark, soft hyphens) and invalid UTF-8 are
// removed, so a title or a name cannot reorder or hide what an operator reads.
func cleanText(s string) string {
	if printableASCII(s) {
		return strings.TrimSpace(s)
	}
	return cleanUnicode(s)
}

// cleanUnicode is cleanText for any text.
func cleanUnicode(s string) string {
	s = strings.ToValidUTF8(s, "")
	if strings.IndexFunc(s, unprintable) < 0 {
		return strings.TrimSpace(s)
	}
	return strings.TrimSpace(strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\v' || r == '\f' || r == '\r' || r == 0x85 || r == 0x2028 || r == 0x2029:
			return ' '
		case unprintable(r):
			return -1
		}
		return r
	}, s))
}

// printableASCII reports whether s is printable ASCII only (most titles):
// valid UTF-8 with no character cleanText folds or removes.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f {
			return false
		}
	}
	return true
}

// unprintable reports a control (Cc), format (Cf) or line/paragraph separator
// character: cleanText folds or removes each.
func unprintable(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == 0x2028 || r == 0x2029
}

// truncateUTF8 cuts s to at most n bytes without splitting a character.
func truncateUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// truncateURL cuts an escaped URL to at most n bytes without splitting a %XX escape.
func truncateURL(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	if i := strings.LastIndexByte(s, '%'); i >= 0 && i > len(s)-3 {
		s = s[:i]
	}
	return s
}

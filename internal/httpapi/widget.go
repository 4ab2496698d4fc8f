package httpapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

// tokenHeader carries the identity token for widgets that keep it in first-party
// storage when third-party cookies are blocked.
const tokenHeader = "X-Visitor-Token"

// widget sets the cross-origin headers of a widget-facing route: the exact
// origin is echoed, with credentials, when some site allows it; the route's
// handler then checks it against the request's own site.
func (a *api) widget(c *gin.Context) {
	h := c.Writer.Header()
	h.Add("Vary", "Origin")
	h.Set("Cache-Control", "no-store")
	if o := c.Request.Header["Origin"]; len(o) == 1 && a.sites.AnyAllowsOrigin(o[0]) {
		origin := o[0]
		h.Set("Access-Control-Allow-Origin", origin)
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

// preflight answers a CORS preflight for any configured origin: it carries no
// body, so the site is only known on the real request.
func (a *api) preflight(c *gin.Context) {
	c.Writer.Header().Add("Vary", "Origin")
	origin := c.GetHeader("Origin")
	if origin == "" || !a.sites.AnyAllowsOrigin(origin) {
		a.fail(c, visitor.ErrOriginNotAllowed)
		return
	}
	h := c.Writer.Header()
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Credentials", "true")
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, DELETE")
	h.Set("Access-Control-Allow-Headers", "Content-Type, "+tokenHeader)
	h.Set("Access-Control-Max-Age", "600")
	c.Status(http.StatusNoContent)
}

// checkOrigin applies the forgery rules to a widget request of site: a browser's
// Origin must be one of the site's; no Origin is a non-browser client; "null"
// (sendBeacon under Referrer-Policy: no-referrer) only where allowNull.
func checkOrigin(c *gin.Context, site *visitor.Site, allowNull bool) error {
	origin, sent := c.Request.Header["Origin"]
	switch {
	case !sent:
		return nil
	case len(origin) == 1 && origin[0] == "null" && allowNull:
		return nil
	case len(origin) == 1 && site.AllowsOrigin(origin[0]):
		return nil
	}
	return visitor.Errorf(visitor.EOriginNotAllowed, "the request's origin is not one of the site's")
}

// readBody reads a request body of at most MaxBodyBytes. application/json is
// always accepted; text/plain (sendBeacon) only where allowText, so that a
// cross-site form cannot post to other routes without a preflight.
func readBody(c *gin.Context, allowText bool) ([]byte, error) {
	mt, _, err := mime.ParseMediaType(c.GetHeader("Content-Type"))
	if err != nil || !(mt == "application/json" || (allowText && mt == "text/plain")) {
		return nil, errUnsupportedMedia
	}
	if c.Request.ContentLength > MaxBodyBytes {
		return nil, errBodyTooLarge
	}
	b, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, MaxBodyBytes))
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return nil, errBodyTooLarge
	}
	if err != nil {
		return nil, visitor.Errorf(visitor.EInvalid, "the body could not be read")
	}
	return b, nil
}

func cookieName(site string) string { return "vt_" + site }

// tokenOf is the identity token a request carries: X-Visitor-Token, else the cookie.
func tokenOf(c *gin.Context, site string) string {
	if t := c.GetHeader(tokenHeader); t != "" {
		return t
	}
	t, _ := c.Cookie(cookieName(site))
	return t
}

// setIdentity sets the identity cookie with the token's own expiry: its lifetime
// is fixed when it is issued.
func (a *api) setIdentity(c *gin.Context, site, token string, expires time.Time) {
	maxAge := int(expires.Sub(a.svc.Now()) / time.Second)
	if maxAge <= 0 {
		maxAge = -1
	}
	a.writeIdentity(c, site, token, expires, maxAge)
}

// expireIdentity expires an identity cookie the request carried.
func (a *api) expireIdentity(c *gin.Context, site string) {
	if _, err := c.Cookie(cookieName(site)); err != nil {
		return
	}
	a.writeIdentity(c, site, "", time.Unix(0, 0), -1)
}

// writeIdentity adds the Set-Cookie line of the identity cookie a.cookie(site)
// with value, expires and maxAge, as http.SetCookie does.
func (a *api) writeIdentity(c *gin.Context, site, value string, expires time.Time, maxAge int) {
	if line, ok := a.identityLine(cookieName(site), value, expires, maxAge); ok {
		h := c.Writer.Header()
		h["Set-Cookie"] = append(h["Set-Cookie"], line)
		return
	}
	ck := a.cookie(site)
	ck.Value, ck.Expires, ck.MaxAge = value, expires, maxAge
	http.SetCookie(c.Writer, ck)
}

// identityLine is http.Cookie.String of the identity cookie a.cookie(site)
// named name, with value, expires and maxAge, built without its checks and
// copies (issue 20: a new visitor's page view sets one). ok is false when name or
// value holds a byte http.Cookie would quote, drop or refuse, and when
// expires is before 1601 (not written): http.SetCookie then does it.
// TestIdentityLineIsCookieString pins the two together.
func (a *api) identityLine(name, value string, expires time.Time, maxAge int) (string, bool) {
	if name == "" || expires.Year() < 1601 {
		return "", false
	}
	for i := 0; i < len(name); i++ {
		if !plainCookieByte(name[i]) {
			return "", false
		}
	}
	for i := 0; i < len(value); i++ {
		if !plainCookieByte(value[i]) {
			return "", false
		}
	}
	attrs := identityAttrs[boolIndex(a.cookieSecure)]
	const times = len("; Expires=Mon, 02 Jan 2006 15:04:05 GMT; Max-Age=-9223372036854775808")
	var b strings.Builder
	b.Grow(len(name) + len("=") + len(value) + len(attrs[0]) + times + len(attrs[1]))
	b.WriteString(name)
	b.WriteByte('=')
	b.WriteString(value)
	b.WriteString(attrs[0])
	b.WriteString("; Expires=")
	var buf [len(http.TimeFormat)]byte
	b.Write(expires.UTC().AppendFormat(buf[:0], http.TimeFormat))
	if maxAge > 0 {
		b.WriteString("; Max-Age=")
		b.Write(strconv.AppendInt(buf[:0], int64(maxAge), 10))
	} else if maxAge < 0 {
		b.WriteString("; Max-Age=0")
	}
	b.WriteString(attrs[1])
	return b.String(), true
}

// identityAttrs are the attributes of siteCookie as http.Cookie.String
// writes them before Expires (Path) and after Max-Age (HttpOnly, Secure,
// SameSite, Partitioned), by its secure flag (boolIndex): identityLine writes
// the cookie siteCookie describes, which stays the one place that says
// what the attributes are.
var identityAttrs = [2][2]string{identityAttrsOf(false), identityAttrsOf(true)}

func identityAttrsOf(secure bool) [2]string {
	ck := siteCookie("x", secure)
	ck.Value = "v"
	head := ck.Name + "=" + ck.Value
	path := http.Cookie{Name: ck.Name, Value: ck.Value, Path: ck.Path, Domain: ck.Domain}
	flags := *ck
	flags.Path, flags.Domain = "", ""
	return [2]string{strings.TrimPrefix(path.String(), head), strings.TrimPrefix(flags.String(), head)}
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// plainCookieByte is a byte http.Cookie writes as it is, in a name (a token
// byte) and in a value (unquoted): a letter, a digit or one of !#$%&'*+-.^_`|~.
func plainCookieByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func (a *api) cookie(site string) *http.Cookie { return siteCookie(site, a.cookieSecure) }

// siteCookie is the identity cookie of site, without value or expiry:
// secure, it is sent cross-site (the widget runs in the shop's pages).
func siteCookie(site string, secure bool) *http.Cookie {
	ck := &http.Cookie{Name: cookieName(site), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if secure {
		ck.Secure, ck.SameSite, ck.Partitioned = true, http.SameSiteNoneMode, true
	}
	return ck
}

// clientIP is the caller's address: X-Forwarded-For only from a trusted proxy.
func clientIP(c *gin.Context) netip.Addr {
	ip, err := netip.ParseAddr(c.ClientIP())
	if err != nil {
		return netip.Addr{}
	}
	return ip.Unmap()
}

// widgetSite resolves a widget request's site and applies the forgery rules
// (checkOrigin) and the rate limit lim.
func (a *api) widgetSite(c *gin.Context, id string, allowNull bool, lim widgetLimit) (*visitor.Site, error) {
	site, err := a.siteOf(c, id)
	if err != nil {
		return nil, err
	}
	if err := checkOrigin(c, site, allowNull); err != nil {
		return nil, err
	}
	if err := a.limitWidget(c, site, lim); err != nil {
		return nil, err
	}
	return site, nil
}

// siteOf looks up a site and remembers its id for the access log.
func (a *api) siteOf(c *gin.Context, id string) (*visitor.Site, error) {
	site, err := a.sites.Get(id)
	if err != nil {
		return nil, err
	}
	c.Set(siteKey, site.ID)
	return site, nil
}

package httpapi

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/netip"
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
	ck := a.cookie(site)
	ck.Value, ck.Expires = token, expires
	ck.MaxAge = int(expires.Sub(a.svc.Now()) / time.Second)
	if ck.MaxAge <= 0 {
		ck.MaxAge = -1
	}
	http.SetCookie(c.Writer, ck)
}

// expireIdentity expires an identity cookie the request carried.
func (a *api) expireIdentity(c *gin.Context, site string) {
	if _, err := c.Cookie(cookieName(site)); err != nil {
		return
	}
	ck := a.cookie(site)
	ck.MaxAge, ck.Expires = -1, time.Unix(0, 0)
	http.SetCookie(c.Writer, ck)
}

func (a *api) cookie(site string) *http.Cookie {
	ck := &http.Cookie{Name: cookieName(site), Path: "/", HttpOnly: true, SameSite: http.SameSiteLaxMode}
	if a.cookieSecure {
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

package httpapi

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/web"
)

// Browser files served from the binary (package web): the widget script, the
// operator console and the demo shop. Pages load only their own scripts and
// styles from this service ('self', no inline script) and talk only to it.
const (
	// pageCSP is the policy of the console and demo pages.
	pageCSP = "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self'; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	// fileCSP is the policy of a script or style sheet: it renders nothing.
	fileCSP = "default-src 'none'; frame-ancestors 'none'"
	// assetMaxAge is how long browsers and proxies may keep a file unasked.
	assetMaxAge = "public, max-age=300"
)

// webAssets loads the embedded files once: they are fixed at build time.
var webAssets = sync.OnceValues(web.Load)

// assetOf returns the embedded file called name; a missing one is a build error
// of this package, caught by its tests.
func assetOf(name string) *web.Asset {
	set, err := webAssets()
	if err != nil {
		panic(fmt.Sprintf("httpapi: embedded web files: %v", err))
	}
	a := set.Get(name)
	if a == nil {
		panic("httpapi: no embedded web file " + name)
	}
	return a
}

// script serves an embedded script or style sheet: cacheable for five minutes,
// revalidated by its strong ETag, gzipped for browsers that accept it.
func (a *api) script(name string) gin.HandlerFunc {
	asset := assetOf(name)
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("Content-Security-Policy", fileCSP)
		// The widget is loaded by other sites' pages, also under COEP and with SRI.
		h.Set("Cross-Origin-Resource-Policy", "cross-origin")
		h.Set("Access-Control-Allow-Origin", "*")
		serveAsset(c, asset, assetMaxAge)
	}
}

// page serves an embedded HTML page under pageCSP. The console also sends no
// Referer, so no console URL reaches another server.
func (a *api) page(name string, noReferrer bool) gin.HandlerFunc {
	asset := assetOf(name)
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Frame-Options", "DENY")
		if noReferrer {
			h.Set("Referrer-Policy", "no-referrer")
		}
		serveAsset(c, asset, "no-cache")
	}
}

// demoPage is the demo shop's page at path.
func (a *api) demoPage(path string) gin.HandlerFunc {
	for _, p := range web.DemoPages {
		if p.Path == path {
			return a.page("demo/"+p.Name+".html", false)
		}
	}
	panic("httpapi: no demo page at " + path)
}

func serveAsset(c *gin.Context, asset *web.Asset, cacheControl string) {
	h := c.Writer.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", cacheControl)
	h.Add("Vary", "Accept-Encoding")
	body, tag := asset.Body, asset.ETag
	gz := acceptsGzip(c.GetHeader("Accept-Encoding"))
	if gz {
		body, tag = asset.Gzip, asset.GzipETag
	}
	h.Set("ETag", tag)
	if etagMatches(c.GetHeader("If-None-Match"), tag) {
		c.Status(http.StatusNotModified)
		return
	}
	if gz {
		h.Set("Content-Encoding", "gzip")
	}
	c.Data(http.StatusOK, asset.ContentType, body)
}

// etagMatches applies If-None-Match's weak comparison (RFC 9110 13.1.2).
func etagMatches(header, tag string) bool {
	for f := range strings.SplitSeq(header, ",") {
		f = strings.TrimPrefix(strings.TrimSpace(f), "W/")
		if f == "*" || f == tag {
			return true
		}
	}
	return false
}

// acceptsGzip reports whether an Accept-Encoding header accepts gzip.
func acceptsGzip(header string) bool {
	for f := range strings.SplitSeq(header, ",") {
		name, params, _ := strings.Cut(f, ";")
		name = strings.ToLower(strings.TrimSpace(name))
		if name != "gzip" && name != "*" {
			continue
		}
		q := 1.0
		if v, ok := strings.CutPrefix(strings.TrimSpace(params), "q="); ok {
			if p, err := strconv.ParseFloat(v, 64); err == nil {
				q = p
			}
		}
		return q > 0
	}
	return false
}

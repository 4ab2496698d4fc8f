package httpapi

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"html/template"
	"net/http"

	"github.com/gin-gonic/gin"
)

// homeTemplate is GET /: what this service is, and where to go from here. No
// script and no inline style, under pageCSP.
var homeTemplate = template.Must(template.New("home").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>visitord</title></head>
<body>
<h1>visitord</h1>
<p>visitord recognises the visitors of a site behind its live-chat widget, records the pages they visit in Redis with a time-to-live, and gives chat operators the visitor's context, under Do Not Track, Global Privacy Control and consent.</p>
<ul>
{{- if .Demo}}
<li><a href="/demo">Demo shop</a>: a page with the widget on the built-in demo site</li>
{{- end}}
<li><a href="/console">Console</a>: the live list and chat context for operators, the privacy tools for the privacy team</li>
<li><a href="/v1/openapi.yaml">API description</a> (OpenAPI 3)</li>
<li><a href="/healthz">/healthz</a>: the process answers</li>
</ul>
</body>
</html>
`))

// home serves GET / (and HEAD): a small page saying what this is.
func (a *api) home(demo bool) gin.HandlerFunc {
	var b bytes.Buffer
	if err := homeTemplate.Execute(&b, struct{ Demo bool }{demo}); err != nil {
		panic("httpapi: home page: " + err.Error())
	}
	body := b.Bytes()
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("Content-Security-Policy", pageCSP)
		h.Set("X-Frame-Options", "DENY")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		c.Data(http.StatusOK, "text/html; charset=utf-8", body)
	}
}

// openAPI serves GET /v1/openapi.yaml: the contract this build keeps
// (api/openapi.yaml, embedded by package api and given in Options).
func (a *api) openAPI(spec []byte) gin.HandlerFunc {
	sum := sha256.Sum256(spec)
	tag := `"` + hex.EncodeToString(sum[:8]) + `"`
	return func(c *gin.Context) {
		h := c.Writer.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Cache-Control", "no-cache")
		h.Set("Access-Control-Allow-Origin", "*")
		h.Set("ETag", tag)
		if etagMatches(c.GetHeader("If-None-Match"), tag) {
			c.Status(http.StatusNotModified)
			return
		}
		c.Data(http.StatusOK, "application/yaml", spec)
	}
}

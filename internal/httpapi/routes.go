package httpapi

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

// routes lists every route of the API; api/openapi.yaml describes the same set
// (a test holds them equal).
func (a *api) routes(r *gin.Engine, o Options) {
	// Widget-facing: cross-origin, origin-checked, preflight answered (widget.go).
	r.POST("/v1/track", a.widget, a.track) // track.go
	r.OPTIONS("/v1/track", a.preflight)
	r.GET("/v1/consent", a.widget, a.getConsent) // consent.go
	r.PUT("/v1/consent", a.widget, a.putConsent)
	r.OPTIONS("/v1/consent", a.preflight)
	r.POST("/v1/chats", a.widget, a.startChat) // chat.go
	r.OPTIONS("/v1/chats", a.preflight)
	r.GET("/v1/me", a.widget, a.exportMine) // privacy.go
	r.DELETE("/v1/me", a.widget, a.eraseMine)
	r.OPTIONS("/v1/me", a.preflight)
	r.GET("/v1/sites/:site/widget-config", a.widget, a.widgetConfig) // widget_config.go
	r.OPTIONS("/v1/sites/:site/widget-config", a.preflight)

	// Operators (Bearer key of the site; no CORS, cookies ignored): operator.go,
	// the stream in stream.go.
	r.GET("/v1/sites/:site/visitors/live", a.operator(operators...), a.live)
	r.GET("/v1/sites/:site/visitors/live/stream", a.operator(operators...), a.liveStream)
	r.GET("/v1/sites/:site/chats/:chat", a.operator(operators...), a.chatContext)
	r.GET("/v1/sites/:site/stats", a.operator(operators...), a.stats)

	// Privacy team (role privacy).
	privacy := a.operator(visitor.RolePrivacy)
	r.GET("/v1/sites/:site/retention", privacy, a.getRetention) // retention.go
	r.PUT("/v1/sites/:site/retention", privacy, a.putRetention)
	r.POST("/v1/sites/:site/subjects/search", privacy, a.searchSubjects) // privacy.go
	r.GET("/v1/sites/:site/visitors/:visitor", privacy, a.exportVisitor)
	r.PATCH("/v1/sites/:site/visitors/:visitor", a.notLive, privacy, a.rectifyVisitor)
	r.DELETE("/v1/sites/:site/visitors/:visitor", a.notLive, privacy, a.eraseVisitor)
	r.DELETE("/v1/sites/:site/chats/:chat", privacy, a.eraseChat)
	r.GET("/v1/sites/:site/audit", privacy, a.audit)                        // audit.go
	r.GET("/v1/sites/:site/processing-record", privacy, a.processingRecord) // record.go

	// Browser files from the binary: the widget script, the operator console and,
	// with the built-in demo site, the demo shop (widget_assets.go).
	r.GET("/v1/widget.js", a.script("widget.js"))
	r.HEAD("/v1/widget.js", a.script("widget.js"))
	r.GET("/console", a.page("console.html", true))
	r.GET("/console/console.js", a.script("console.js"))
	r.GET("/console/console.css", a.script("console.css"))
	if o.Demo {
		r.GET("/demo", a.demoPage("/demo"))
		r.GET("/demo/products", a.demoPage("/demo/products"))
		r.GET("/demo/cart", a.demoPage("/demo/cart"))
		r.GET("/demo/demo.js", a.script("demo.js"))
		r.GET("/demo/demo.css", a.script("demo.css"))
	}

	// Ops (ops.go).
	r.GET("/healthz", a.healthz)
	r.HEAD("/healthz", a.healthz)
	r.GET("/readyz", a.readyz)
	r.HEAD("/readyz", a.readyz)

	// What this is: a page linking the demo, the console, the API description
	// and /healthz; and the API description itself (home.go).
	r.GET("/", a.home(o.Demo))
	r.HEAD("/", a.home(o.Demo))
	r.GET("/v1/openapi.yaml", a.openAPI(o.OpenAPI))
	// /metrics and /debug/pprof are served on the metrics listener only (NewMetrics).
}

// notLive answers 405 to PATCH and DELETE of /v1/sites/:site/visitors/live:
// that path is the live list (GET only), not a visitor called "live".
func (a *api) notLive(c *gin.Context) {
	if c.Param("visitor") == "live" {
		c.Header("Allow", http.MethodGet)
		a.fail(c, errNoMethod)
	}
}

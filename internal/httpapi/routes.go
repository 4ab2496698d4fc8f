package httpapi

import (
	"net/http/pprof"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/visitord/visitord/internal/visitor"
)

// routes lists every route of the API; api/openapi.yaml describes the same set
// (a test holds them equal).
func (a *api) routes(r *gin.Engine, o Options) {
	// Widget-facing: cross-origin, origin-checked, preflight answered.
	r.POST("/v1/track", a.widget, a.track)
	r.OPTIONS("/v1/track", a.preflight)
	r.GET("/v1/consent", a.widget, a.getConsent)
	r.PUT("/v1/consent", a.widget, a.putConsent)
	r.OPTIONS("/v1/consent", a.preflight)
	r.POST("/v1/chats", a.widget, a.startChat)
	r.OPTIONS("/v1/chats", a.preflight)
	r.GET("/v1/me", a.widget, a.exportMine)
	r.DELETE("/v1/me", a.widget, a.eraseMine)
	r.OPTIONS("/v1/me", a.preflight)
	r.GET("/v1/sites/:site/widget-config", a.widget, a.widgetConfig)
	r.OPTIONS("/v1/sites/:site/widget-config", a.preflight)

	// Operators (Bearer key of the site; no CORS, cookies ignored).
	r.GET("/v1/sites/:site/visitors/live", a.operator(operators...), a.live)
	r.GET("/v1/sites/:site/visitors/live/stream", a.operator(operators...), a.liveStream)
	r.GET("/v1/sites/:site/chats/:chat", a.operator(operators...), a.chatContext)
	r.GET("/v1/sites/:site/stats", a.operator(operators...), a.stats)

	// Privacy team (role privacy).
	privacy := a.operator(visitor.RolePrivacy)
	r.GET("/v1/sites/:site/retention", privacy, a.getRetention)
	r.PUT("/v1/sites/:site/retention", privacy, a.putRetention)
	r.POST("/v1/sites/:site/subjects/search", privacy, a.searchSubjects)
	r.GET("/v1/sites/:site/visitors/:visitor", privacy, a.exportVisitor)
	r.PATCH("/v1/sites/:site/visitors/:visitor", privacy, a.rectifyVisitor)
	r.DELETE("/v1/sites/:site/visitors/:visitor", privacy, a.eraseVisitor)
	r.DELETE("/v1/sites/:site/chats/:chat", privacy, a.eraseChat)
	r.GET("/v1/sites/:site/audit", privacy, a.audit)
	r.GET("/v1/sites/:site/processing-record", privacy, a.processingRecord)

	// Browser files from the binary: the widget script, the operator console and,
	// with the built-in demo site, the demo shop (widget_assets.go).
	r.GET("/v1/widget.js", a.script("widget.js"))
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

	// Ops.
	r.GET("/healthz", a.healthz)
	r.GET("/readyz", a.readyz)
	r.GET("/metrics", gin.WrapH(promhttp.HandlerFor(o.Registry, promhttp.HandlerOpts{})))
	if o.PProf {
		r.GET("/debug/pprof/*profile", pprofHandler)
	}
}

// pprofHandler serves net/http/pprof under one wildcard route: Gin allows no
// static route beside a catch-all in the same segment.
func pprofHandler(c *gin.Context) {
	switch c.Param("profile") {
	case "/cmdline":
		pprof.Cmdline(c.Writer, c.Request)
	case "/profile":
		pprof.Profile(c.Writer, c.Request)
	case "/symbol":
		pprof.Symbol(c.Writer, c.Request)
	case "/trace":
		pprof.Trace(c.Writer, c.Request)
	default:
		pprof.Index(c.Writer, c.Request)
	}
}

package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

// The site's retention windows (role privacy): GET and PUT retention.

type retentionJSON struct {
	Sessions *int `json:"sessions"`
	Profiles *int `json:"profiles"`
	Chats    *int `json:"chats"`
	Consents *int `json:"consents"`
	Audit    *int `json:"audit"`
}

func retentionOf(r visitor.Retention) retentionJSON {
	return retentionJSON{Sessions: &r.Sessions, Profiles: &r.Profiles, Chats: &r.Chats, Consents: &r.Consents, Audit: &r.Audit}
}

// retentionViewJSON is the retention in force with when it last changed and
// the bounds a change must keep to.
type retentionViewJSON struct {
	retentionJSON
	ChangedAt *time.Time `json:"changed_at,omitempty"`
	MinDays   int        `json:"min_days"`
	MaxDays   int        `json:"max_days"`
}

// retentionView renders r with the time of the site's last change.
func (a *api) retentionView(c *gin.Context, ctx context.Context, r visitor.Retention) {
	changed, err := a.svc.RetentionChanged(ctx, actorOf(c))
	if err != nil {
		a.fail(c, err)
		return
	}
	b := a.svc.RetentionBounds()
	out := retentionViewJSON{retentionJSON: retentionOf(r), MinDays: b.Min, MaxDays: b.Max}
	if !changed.IsZero() {
		out.ChangedAt = &changed
	}
	c.JSON(http.StatusOK, out)
}

func (a *api) getRetention(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	a.retentionView(c, ctx, a.svc.Retention(actorOf(c).Site))
}

func (a *api) putRetention(c *gin.Context) {
	var req retentionJSON
	if err := bindJSON(c, &req); err != nil {
		a.fail(c, err)
		return
	}
	if req.Sessions == nil || req.Profiles == nil || req.Chats == nil || req.Consents == nil || req.Audit == nil {
		a.fail(c, visitor.Errorf(visitor.EInvalid, "sessions, profiles, chats, consents and audit are required"))
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	r, err := a.svc.SetRetention(ctx, actorOf(c), visitor.Retention{
		Sessions: *req.Sessions, Profiles: *req.Profiles, Chats: *req.Chats, Consents: *req.Consents, Audit: *req.Audit,
	})
	if err != nil {
		a.fail(c, err)
		return
	}
	a.retentionView(c, ctx, r)
}

package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

// The site's audit trail (role privacy): GET audit.

type auditEntryJSON struct {
	ID           string         `json:"id"`
	Time         time.Time      `json:"time"`
	LastTime     time.Time      `json:"last_time"`
	Count        int            `json:"count"`
	Actor        string         `json:"actor"`
	Action       string         `json:"action"`
	Target       string         `json:"target"`
	OldRetention *retentionJSON `json:"old_retention,omitempty"`
	NewRetention *retentionJSON `json:"new_retention,omitempty"`
}

func auditEntryOf(e visitor.AuditEntry) auditEntryJSON {
	out := auditEntryJSON{ID: e.ID, Time: e.Time, LastTime: e.Last, Count: e.Count, Actor: e.Actor, Action: e.Action, Target: e.Target}
	if e.OldRetention != nil && e.NewRetention != nil {
		old, cur := retentionOf(*e.OldRetention), retentionOf(*e.NewRetention)
		out.OldRetention, out.NewRetention = &old, &cur
	}
	return out
}

type auditResponse struct {
	Entries    []auditEntryJSON `json:"entries"`
	NextCursor string           `json:"next_cursor,omitempty"`
}

func (a *api) audit(c *gin.Context) {
	limit, err := queryInt(c, "limit")
	if err != nil {
		a.fail(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	entries, next, err := a.svc.AuditTrail(ctx, actorOf(c), c.Query("target"), c.Query("cursor"), limit)
	if err != nil {
		a.fail(c, err)
		return
	}
	out := auditResponse{Entries: make([]auditEntryJSON, 0, len(entries)), NextCursor: next}
	for _, e := range entries {
		out.Entries = append(out.Entries, auditEntryOf(e))
	}
	c.JSON(http.StatusOK, out)
}

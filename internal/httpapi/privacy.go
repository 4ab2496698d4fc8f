package httpapi

import (
	"context"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

// Subject requests of the privacy team (role privacy): search, export,
// rectification and erasure; and the visitor's own /v1/me.

type searchRequest struct {
	Email string `json:"email"`
}

type searchResponse struct {
	Visitors []string `json:"visitors"`
	Chats    []string `json:"chats"`
}

func (a *api) searchSubjects(c *gin.Context) {
	var req searchRequest
	if err := bindJSON(c, &req); err != nil {
		a.fail(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	v, ch, err := a.svc.SearchSubjects(ctx, actorOf(c), req.Email)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, searchResponse{Visitors: v, Chats: ch})
}

// Export DTOs.

type profileJSON struct {
	VisitorID      string    `json:"visitor_id"`
	FirstSeen      time.Time `json:"first_seen"`
	LastSeen       time.Time `json:"last_seen"`
	Sessions       int       `json:"sessions"`
	CurrentSession string    `json:"current_session,omitempty"`
}

type sessionJSON struct {
	ID          string           `json:"id"`
	Start       time.Time        `json:"start"`
	LastSeen    *time.Time       `json:"last_seen,omitempty"`
	Referrer    string           `json:"referrer"`
	Device      deviceJSON       `json:"device"`
	Location    locationJSON     `json:"location"`
	IP          string           `json:"ip"`
	CurrentPage *currentPageJSON `json:"current_page,omitempty"`
	PageViews   int              `json:"page_views"`
	Pages       []pageJSON       `json:"pages"`
}

type currentPageJSON struct {
	URL    string     `json:"url"`
	Title  string     `json:"title"`
	Time   *time.Time `json:"time,omitempty"`
	Closed bool       `json:"closed"`
}

type choiceJSON struct {
	Analytics     bool      `json:"analytics"`
	Marketing     bool      `json:"marketing"`
	PolicyVersion string    `json:"policy_version"`
	Given         time.Time `json:"given"`
	ValidUntil    time.Time `json:"valid_until"`
}

type consentRecordJSON struct {
	VisitorID     string    `json:"visitor_id,omitempty"`
	Subject       string    `json:"subject,omitempty"`
	Time          time.Time `json:"time"`
	Analytics     *bool     `json:"analytics,omitempty"` // absent: not asked
	Marketing     *bool     `json:"marketing,omitempty"`
	PolicyVersion string    `json:"policy_version"`
	TextSHA256    string    `json:"text_sha256"`
	Method        string    `json:"method"`
	IP            string    `json:"ip,omitempty"`
	UserAgent     string    `json:"user_agent,omitempty"`
}

type chatExportJSON struct {
	ChatID        string       `json:"chat_id"`
	Time          time.Time    `json:"time"`
	SessionID     string       `json:"session_id,omitempty"`
	URL           string       `json:"url"`
	Contact       contactJSON  `json:"contact"`
	Marketing     bool         `json:"marketing_opt_in"`
	PreviousChats []string     `json:"previous_chats"`
	Device        deviceJSON   `json:"device"`
	Location      locationJSON `json:"location"`
	Referrer      string       `json:"referrer"`
}

type exportJSON struct {
	Site           string              `json:"site"`
	VisitorID      string              `json:"visitor_id,omitempty"`
	ChatID         string              `json:"chat_id,omitempty"`
	ExportedAt     time.Time           `json:"exported_at"`
	Profile        *profileJSON        `json:"profile"`
	Sessions       []sessionJSON       `json:"sessions"`
	Consent        *choiceJSON         `json:"consent"`
	ConsentRecords []consentRecordJSON `json:"consent_records"`
	Chats          []chatExportJSON    `json:"chats"`
}

// ExportDocument is the JSON document of an export, as the API answers it; the
// CLI prints the same.
func ExportDocument(e visitor.Export, now time.Time) any { return exportOf(e, now) }

func exportOf(e visitor.Export, now time.Time) exportJSON {
	out := exportJSON{Site: e.Site, VisitorID: e.VisitorID, ChatID: e.ChatID, ExportedAt: now,
		Sessions: []sessionJSON{}, ConsentRecords: []consentRecordJSON{}, Chats: []chatExportJSON{}}
	if p := e.Profile; p != nil {
		out.Profile = &profileJSON{VisitorID: p.VisitorID, FirstSeen: p.FirstSeen, LastSeen: p.LastSeen,
			Sessions: p.Sessions, CurrentSession: p.CurrentSession}
	}
	for _, s := range e.Sessions {
		sj := sessionJSON{ID: s.ID, Start: s.Start, LastSeen: timePtr(s.LastSeen), Referrer: s.Referrer,
			Device: deviceOf(s.Device), Location: locationOf(s.Location), IP: s.IP, PageViews: s.PageViews, Pages: []pageJSON{}}
		if s.CurrentURL != "" || s.CurrentTitle != "" {
			sj.CurrentPage = &currentPageJSON{URL: s.CurrentURL, Title: s.CurrentTitle, Time: timePtr(s.CurrentStart), Closed: s.CurrentClosed}
		}
		for _, p := range s.Pages {
			sj.Pages = append(sj.Pages, pageJSON{URL: p.URL, Title: p.Title, Time: p.Start, DurationSeconds: p.Duration.Seconds()})
		}
		out.Sessions = append(out.Sessions, sj)
	}
	if ch := e.Choice; ch != nil {
		out.Consent = &choiceJSON{Analytics: ch.Analytics, Marketing: ch.Marketing, PolicyVersion: ch.PolicyVersion,
			Given: ch.Given, ValidUntil: ch.ValidUntil}
	}
	for _, r := range e.Consents {
		out.ConsentRecords = append(out.ConsentRecords, consentRecordOf(r))
	}
	for _, ch := range e.Chats {
		prev := ch.Previous
		if prev == nil {
			prev = []string{}
		}
		out.Chats = append(out.Chats, chatExportJSON{ChatID: ch.ID, Time: ch.Start, SessionID: ch.SessionID, URL: ch.URL,
			Contact: contactJSON(ch.Contact), Marketing: ch.Marketing, PreviousChats: prev,
			Device: deviceOf(ch.Device), Location: locationOf(ch.Location), Referrer: ch.Referrer})
	}
	return out
}

// timePtr is t, or nil for the zero time (a field the store does not hold).
func timePtr(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

func consentRecordOf(r visitor.ConsentRecord) consentRecordJSON {
	return consentRecordJSON{VisitorID: r.VisitorID, Subject: r.Subject, Time: r.Time, Analytics: r.Analytics,
		Marketing: r.Marketing, PolicyVersion: r.PolicyVersion, TextSHA256: r.TextSHA256, Method: r.Method,
		IP: r.IP, UserAgent: r.UserAgent}
}

func (a *api) exportVisitor(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	e, err := a.svc.ExportVisitor(ctx, actorOf(c), c.Param("visitor"))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, exportOf(e, a.svc.Now()))
}

type rectifyRequest struct {
	Contact *struct {
		Name  *string `json:"name"`
		Email *string `json:"email"`
		Phone *string `json:"phone"`
	} `json:"contact"`
}

func (a *api) rectifyVisitor(c *gin.Context) {
	var req rectifyRequest
	if err := bindJSON(c, &req); err != nil {
		a.fail(c, err)
		return
	}
	if req.Contact == nil {
		a.fail(c, visitor.Errorf(visitor.EInvalid, "contact is required"))
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	e, err := a.svc.RectifyVisitor(ctx, actorOf(c), c.Param("visitor"), visitor.ContactChange{
		Name: req.Contact.Name, Email: req.Contact.Email, Phone: req.Contact.Phone,
	})
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, exportOf(e, a.svc.Now()))
}

func (a *api) eraseVisitor(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	if err := a.svc.EraseVisitor(ctx, actorOf(c), c.Param("visitor")); err != nil {
		a.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *api) eraseChat(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	if err := a.svc.EraseChat(ctx, actorOf(c), c.Param("chat")); err != nil {
		a.fail(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}

// The visitor's own export and erasure, proved by the identity token alone.

func (a *api) exportMine(c *gin.Context) {
	site, err := a.widgetSite(c, c.Query("site"), false, widgetLimit{kind: visitor.LimitMe})
	if err != nil {
		a.fail(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	e, err := a.svc.ExportMine(ctx, site, tokenOf(c, site.ID))
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, exportOf(e, a.svc.Now()))
}

func (a *api) eraseMine(c *gin.Context) {
	site, err := a.widgetSite(c, c.Query("site"), false, widgetLimit{kind: visitor.LimitMe, refusing: true})
	if err != nil {
		a.fail(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	if err := a.svc.EraseMine(ctx, site, tokenOf(c, site.ID)); err != nil {
		a.fail(c, err)
		return
	}
	a.expireIdentity(c, site.ID)
	c.Status(http.StatusNoContent)
}

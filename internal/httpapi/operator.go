package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

const actorKey = "visitord.actor"

// operator authenticates an operator or privacy route by its Bearer key for the
// route's :site; roles lists who may use it. Such routes send no CORS headers
// and ignore cookies.
func (a *api) operator(roles ...visitor.Role) gin.HandlerFunc {
	return func(c *gin.Context) {
		site, err := a.siteOf(c, c.Param("site"))
		if err != nil {
			a.fail(c, err)
			return
		}
		actor, err := a.svc.Authenticate(site.ID, bearerKey(c.GetHeader("Authorization")), roles...)
		if err != nil {
			if errors.Is(err, visitor.ErrUnauthorized) {
				c.Header("WWW-Authenticate", `Bearer realm="visitord"`)
			}
			a.fail(c, err)
			return
		}
		c.Set(actorKey, actor)
		c.Header("Cache-Control", "no-store")
		if err := a.limit(c, site, visitor.LimitAPI, visitor.ByAPIKey, visitor.KeySubject(actor.KeyID)); err != nil {
			a.fail(c, err)
		}
	}
}

// bearerKey is the credential of an Authorization header of the Bearer scheme,
// whose name is case-insensitive (RFC 7235 §2.1), or "" for any other header.
func bearerKey(header string) string {
	scheme, key, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(key)
}

func actorOf(c *gin.Context) visitor.Actor {
	v, _ := c.Get(actorKey)
	a, _ := v.(visitor.Actor)
	return a
}

// operators is who may read visitor context; privacy keys may too.
var operators = []visitor.Role{visitor.RoleOperator, visitor.RolePrivacy}

// queryInt reads an optional whole-number query parameter; 0 when absent.
func queryInt(c *gin.Context, name string) (int, error) {
	v := c.Query(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, visitor.Errorf(visitor.EInvalid, "%s must be a whole number ≥ 1", name)
	}
	return n, nil
}

// The operator views: a chat's context, the live list and the stats.

type locationJSON struct {
	Country  string `json:"country"`
	Region   string `json:"region"`
	City     string `json:"city"`
	TimeZone string `json:"time_zone"`
}

type deviceJSON struct {
	Browser string `json:"browser"`
	Version string `json:"version"`
	OS      string `json:"os"`
	Mobile  bool   `json:"mobile"`
}

type pageJSON struct {
	URL             string    `json:"url"`
	Title           string    `json:"title"`
	Time            time.Time `json:"time"`
	DurationSeconds float64   `json:"duration_seconds"`
}

type previousChatJSON struct {
	ChatID    string      `json:"chat_id"`
	Time      time.Time   `json:"time"`
	Contact   contactJSON `json:"contact"`
	Marketing bool        `json:"marketing_opt_in"`
}

type chatViewJSON struct {
	ChatID        string             `json:"chat_id"`
	Time          time.Time          `json:"time"`
	Contact       contactJSON        `json:"contact"`
	Marketing     bool               `json:"marketing_opt_in"`
	URL           string             `json:"url"`
	Trail         []pageJSON         `json:"trail"`
	Location      locationJSON       `json:"location"`
	Device        deviceJSON         `json:"device"`
	Referrer      string             `json:"referrer"`
	PreviousChats []previousChatJSON `json:"previous_chats"`
	// ConsentRecords is set for the privacy team only.
	ConsentRecords []consentRecordJSON `json:"consent_records,omitempty"`
}

func locationOf(l visitor.Location) locationJSON { return locationJSON(l) }

func deviceOf(d visitor.Device) deviceJSON {
	return deviceJSON{Browser: d.Browser, Version: d.Version, OS: d.OS, Mobile: d.Mobile}
}

func (a *api) chatContext(c *gin.Context) {
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	v, err := a.svc.ChatContext(ctx, actorOf(c), c.Param("chat"))
	if err != nil {
		a.fail(c, err)
		return
	}
	out := chatViewJSON{
		ChatID: v.ID, Time: v.Start, Contact: contactJSON(v.Contact), Marketing: v.Marketing, URL: v.URL,
		Trail: []pageJSON{}, Location: locationOf(v.Location), Device: deviceOf(v.Device), Referrer: v.Referrer,
		PreviousChats: []previousChatJSON{},
	}
	for _, p := range v.Trail {
		out.Trail = append(out.Trail, pageJSON{URL: p.URL, Title: p.Title, Time: p.Start, DurationSeconds: p.Duration.Seconds()})
	}
	for _, r := range v.Consents {
		out.ConsentRecords = append(out.ConsentRecords, consentRecordOf(r))
	}
	for _, p := range v.Previous {
		out.PreviousChats = append(out.PreviousChats, previousChatJSON{ChatID: p.ID, Time: p.Start, Contact: contactJSON(p.Contact), Marketing: p.Marketing})
	}
	c.JSON(http.StatusOK, out)
}

type liveVisitorJSON struct {
	Pseudonym      string       `json:"pseudonym"`
	CurrentPage    currentPage  `json:"current_page"`
	Pages          int          `json:"pages"`
	SessionSeconds float64      `json:"session_seconds"`
	LastSeen       time.Time    `json:"last_seen"`
	Location       locationJSON `json:"location"`
	Device         deviceJSON   `json:"device"`
	Referrer       string       `json:"referrer"`
}

type currentPage struct {
	URL   string `json:"url"`
	Title string `json:"title"`
}

type liveResponse struct {
	Visitors   []liveVisitorJSON `json:"visitors"`
	NextCursor string            `json:"next_cursor,omitempty"`
}

func (a *api) live(c *gin.Context) {
	var within time.Duration
	if w := c.Query("within"); w != "" {
		d, err := time.ParseDuration(w)
		if err != nil || d <= 0 {
			a.fail(c, visitor.Errorf(visitor.EInvalid, "within must be a duration such as 5m"))
			return
		}
		within = d
	}
	limit, err := queryInt(c, "limit")
	if err != nil {
		a.fail(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	page, err := a.svc.Live(ctx, actorOf(c), within, c.Query("cursor"), limit)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, liveResponse{Visitors: liveRowsOf(page.Visitors), NextCursor: page.Next})
}

// liveRowsOf renders live rows, for GET visitors/live and its stream alike.
func liveRowsOf(vs []visitor.LiveVisitor) []liveVisitorJSON {
	out := make([]liveVisitorJSON, 0, len(vs))
	for _, v := range vs {
		out = append(out, liveVisitorJSON{
			Pseudonym: v.Pseudonym, CurrentPage: currentPage{URL: v.CurrentURL, Title: v.CurrentTitle}, Pages: v.Pages,
			SessionSeconds: v.Duration.Seconds(), LastSeen: v.LastSeen, Location: locationOf(v.Location),
			Device: deviceOf(v.Device), Referrer: v.Referrer,
		})
	}
	return out
}

type statsResponse struct {
	Day      string           `json:"day"`
	Tracked  int64            `json:"tracked"`
	Refused  map[string]int64 `json:"refused"`
	Refusals int64            `json:"consent_refusals"`
}

type statsRangeResponse struct {
	From string          `json:"from"`
	To   string          `json:"to"`
	Days []statsResponse `json:"days"`
}

func statsOf(day time.Time, m map[string]int64) statsResponse {
	out := statsResponse{Day: day.Format(time.DateOnly), Tracked: m[string(visitor.ReasonTracked)], Refused: map[string]int64{},
		Refusals: m[string(visitor.ReasonRefusal)]}
	for _, r := range []visitor.Reason{visitor.ReasonGPC, visitor.ReasonDNT, visitor.ReasonBot, visitor.ReasonNoConsent} {
		out.Refused[string(r)] = m[string(r)]
	}
	return out
}

// queryDay reads an optional UTC day parameter; the zero time when absent.
func queryDay(c *gin.Context, name string) (time.Time, error) {
	d := c.Query(name)
	if d == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.DateOnly, d)
	if err != nil {
		return time.Time{}, visitor.Errorf(visitor.EInvalid, "%s must be YYYY-MM-DD", name)
	}
	return t, nil
}

func (a *api) stats(c *gin.Context) {
	day, err1 := queryDay(c, "day")
	from, err2 := queryDay(c, "from")
	to, err3 := queryDay(c, "to")
	if err := errors.Join(err1, err2, err3); err != nil {
		a.fail(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.storeTimeout)
	defer cancel()
	if !from.IsZero() || !to.IsZero() {
		if !day.IsZero() || from.IsZero() || to.IsZero() {
			a.fail(c, visitor.Errorf(visitor.EInvalid, "give day, or both from and to"))
			return
		}
		days, err := a.svc.StatsRange(ctx, actorOf(c), from, to)
		if err != nil {
			a.fail(c, err)
			return
		}
		out := statsRangeResponse{From: from.Format(time.DateOnly), To: to.Format(time.DateOnly), Days: make([]statsResponse, 0, len(days))}
		for _, d := range days {
			out.Days = append(out.Days, statsOf(d.Day, d.Counts))
		}
		c.JSON(http.StatusOK, out)
		return
	}
	if day.IsZero() {
		day = a.svc.Today()
	}
	m, err := a.svc.Stats(ctx, actorOf(c), day)
	if err != nil {
		a.fail(c, err)
		return
	}
	c.JSON(http.StatusOK, statsOf(day, m))
}

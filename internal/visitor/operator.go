package visitor

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Bounds of the live view.
const (
	MinLiveWithin     = time.Minute
	MaxLiveWithin     = 30 * time.Minute
	DefaultLiveWithin = 5 * time.Minute
	MaxLiveLimit      = 200
	DefaultLiveLimit  = 50
)

// Actor is an authenticated operator or privacy key acting on one site.
type Actor struct {
	Site  *Site
	KeyID string
	Role  Role
}

// Authenticate finds the API key presented for siteID among that site's keys
// only, by its SHA-256 compared in constant time, and acts with the role the
// site gives it: one key may be listed on several sites (an agency serving
// several shops), each with its own role (invariant 7). A key no site lists is
// ErrUnauthorized; a key this site does not list, or a role not in roles,
// ErrForbidden, with a message that never says where else the key is valid.
func (s *Service) Authenticate(siteID, presented string, roles ...Role) (Actor, error) {
	if presented == "" {
		return Actor{}, Errorf(EUnauthorized, "an Authorization: Bearer key is required")
	}
	site, err := s.sites.Get(siteID)
	if err != nil {
		return Actor{}, err
	}
	sum := sha256.Sum256([]byte(presented))
	found := -1
	for i := range site.Keys {
		if subtle.ConstantTimeCompare(sum[:], site.Keys[i].SHA256[:]) == 1 {
			found = i
		}
	}
	if found < 0 {
		if !s.anySiteLists(sum) {
			return Actor{}, Errorf(EUnauthorized, "the API key is not valid")
		}
		return Actor{}, Errorf(EForbidden, "the API key is not valid for site %s", site.ID)
	}
	key := site.Keys[found]
	for _, r := range roles {
		if key.Role == r {
			return Actor{Site: site, KeyID: key.ID, Role: key.Role}, nil
		}
	}
	return Actor{}, Errorf(EForbidden, "role %s may not use this route", key.Role)
}

// anySiteLists reports whether any site lists the key hash sum, comparing every
// stored hash in constant time; it only tells a wrong key (401) from a key the
// requested site does not list (403).
func (s *Service) anySiteLists(sum [32]byte) bool {
	n := 0
	for _, site := range s.sites.All() {
		for i := range site.Keys {
			n |= subtle.ConstantTimeCompare(sum[:], site.Keys[i].SHA256[:])
		}
	}
	return n == 1
}

// LiveEntry is what the store knows of a live visitor's current session.
type LiveEntry struct {
	SessionID    string
	CurrentURL   string
	CurrentTitle string
	Pages        int
	SessionStart time.Time
	LastSeen     time.Time
	Location     Location
	Device       Device
	Referrer     string
}

// LivePos is a position in the live view: before the activity time Before (ms;
// 0 for the start), skipping the first Skip entries of exactly that time. It
// holds no identifier, so a cursor links nothing.
type LivePos struct {
	Before int64
	Skip   int
}

// LiveVisitor is one row of the live view: the current session only, under a
// per-session pseudonym, with no visitor id, first-seen, visit count or
// returning flag (invariant 4).
type LiveVisitor struct {
	Pseudonym    string
	CurrentURL   string
	CurrentTitle string
	Pages        int
	Duration     time.Duration
	LastSeen     time.Time
	Location     Location
	Device       Device
	Referrer     string
}

// LivePage is one page of the live view; Next is the cursor of the next, "" at the end.
type LivePage struct {
	Visitors []LiveVisitor
	Next     string
}

// OperatorStore is what the Service needs of its storage for operators.
type OperatorStore interface {
	// Live returns the sessions active since, most recent first, from pos on; next
	// is where the following page starts, nil at the end.
	Live(ctx context.Context, site *Site, since time.Time, pos LivePos, limit int) (rows []LiveEntry, next *LivePos, err error)
	// Stats returns the site's anonymous counters of day.
	Stats(ctx context.Context, site *Site, day time.Time) (map[string]int64, error)
	// StatsDays returns the site's anonymous counters of each of days, in their
	// order, in one round trip.
	StatsDays(ctx context.Context, site *Site, days []time.Time) ([]map[string]int64, error)
	// HoldStream takes or renews stream id's place among keyID's open live
	// streams of site until until; false when max other streams hold theirs.
	HoldStream(ctx context.Context, site *Site, keyID, id string, now, until time.Time, max int) (bool, error)
	// ReleaseStream gives stream id's place back.
	ReleaseStream(ctx context.Context, site *Site, keyID, id string) error
}

// Live lists the sessions active within the last within, limit rows a page.
func (s *Service) Live(ctx context.Context, a Actor, within time.Duration, cursor string, limit int) (LivePage, error) {
	if within == 0 {
		within = DefaultLiveWithin
	}
	if within < MinLiveWithin || within > MaxLiveWithin {
		return LivePage{}, Errorf(EInvalid, "within must be 1m..30m")
	}
	if limit == 0 {
		limit = DefaultLiveLimit
	}
	if limit < 1 || limit > MaxLiveLimit {
		return LivePage{}, Errorf(EInvalid, "limit must be 1..%d", MaxLiveLimit)
	}
	now := utc(s.now())
	since, pos := now.Add(-within), LivePos{}
	if cursor != "" {
		var ok bool
		if since, pos, ok = s.openCursor(a.Site.ID, cursor); !ok {
			return LivePage{}, Errorf(EInvalid, "cursor is not valid")
		}
		// An old cursor never reaches further back than the live view may.
		if floor := now.Add(-MaxLiveWithin); since.Before(floor) {
			since = floor
		}
	}
	rows, next, err := s.operator.Live(ctx, a.Site, since, pos, limit)
	if err != nil {
		return LivePage{}, fmt.Errorf("live of %s: %w", a.Site.ID, err)
	}
	page := LivePage{Visitors: make([]LiveVisitor, 0, len(rows))}
	for _, r := range rows {
		page.Visitors = append(page.Visitors, LiveVisitor{
			Pseudonym:  s.hasher.Short(a.Site.ID, PurposePseudonym, r.SessionID),
			CurrentURL: r.CurrentURL, CurrentTitle: r.CurrentTitle, Pages: r.Pages,
			Duration: r.LastSeen.Sub(r.SessionStart), LastSeen: r.LastSeen,
			Location: r.Location, Device: r.Device, Referrer: r.Referrer,
		})
	}
	if next != nil {
		page.Next = s.sealCursor(a.Site.ID, since, *next)
	}
	return page, nil
}

// sealCursor signs a live-view position so a client can neither forge nor edit it.
func (s *Service) sealCursor(site string, since time.Time, pos LivePos) string {
	payload := base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(since.UnixMilli(), 10) + "." +
		strconv.FormatInt(pos.Before, 10) + "." + strconv.Itoa(pos.Skip)))
	return payload + "." + base64.RawURLEncoding.EncodeToString(s.hasher.Sum(site, PurposeCursor, payload)[:16])
}

func (s *Service) openCursor(site, cursor string) (time.Time, LivePos, bool) {
	payload, sig, ok := strings.Cut(cursor, ".")
	if !ok || len(cursor) > 200 {
		return time.Time{}, LivePos{}, false
	}
	got, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || !hmac.Equal(got, s.hasher.Sum(site, PurposeCursor, payload)[:16]) {
		return time.Time{}, LivePos{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return time.Time{}, LivePos{}, false
	}
	f := strings.Split(string(b), ".")
	if len(f) != 3 {
		return time.Time{}, LivePos{}, false
	}
	since, err1 := strconv.ParseInt(f[0], 10, 64)
	before, err2 := strconv.ParseInt(f[1], 10, 64)
	skip, err3 := strconv.Atoi(f[2])
	if err1 != nil || err2 != nil || err3 != nil || skip < 0 || before < 0 {
		return time.Time{}, LivePos{}, false
	}
	return time.UnixMilli(since).UTC(), LivePos{Before: before, Skip: skip}, true
}

// ChatView is a chat's context as an operator sees it.
type ChatView struct {
	ID        string
	Start     time.Time
	Contact   Contact
	Marketing bool
	URL       string
	Trail     []PageVisit
	Location  Location
	Device    Device
	Referrer  string
	Previous  []PreviousChat
	// Consents are the chat's own consent records (a chat without identity),
	// shown to the privacy team only: its GET is that subject's export.
	Consents []ConsentRecord
}

// PreviousChat is an earlier chat of the visitor, attributed to a new chat.
type PreviousChat struct {
	ID        string
	Start     time.Time
	Contact   Contact
	Marketing bool
}

// ChatContext returns a chat's context: its contact, the page trail of the
// session it was bound to at its start, and the visitor's earlier chats. The
// read is written to the site's audit trail before anything is returned, under
// each subject it reveals: the chat, the earlier chats it shows and the visitor
// behind them.
func (s *Service) ChatContext(ctx context.Context, a Actor, chatID string) (ChatView, error) {
	site := a.Site
	if !ValidChatID(chatID) {
		return ChatView{}, Errorf(ENotFound, "no chat %q", truncateUTF8(chatID, 40))
	}
	c, err := s.chat(ctx, site, chatID)
	if err != nil {
		return ChatView{}, fmt.Errorf("chat of %s: %w", site.ID, err)
	}
	var consents []ConsentRecord
	if a.Role == RolePrivacy {
		if consents, err = s.privacy.ChatConsents(ctx, site, chatID); err != nil {
			return ChatView{}, fmt.Errorf("chat consents of %s: %w", site.ID, err)
		}
	}
	contact, err := s.openContact(site.ID, c)
	if err != nil {
		return ChatView{}, err
	}
	v := ChatView{ID: c.ID, Start: c.Start, Contact: contact, Marketing: c.Marketing, URL: c.URL,
		Location: c.Location, Device: c.Device, Referrer: c.Referrer, Consents: consents}
	if c.SessionID != "" && c.VisitorKey != "" {
		if v.Trail, err = s.chats.Trail(ctx, site, c.VisitorKey, c.SessionID); err != nil {
			return ChatView{}, fmt.Errorf("chat trail of %s: %w", site.ID, err)
		}
	}
	for _, id := range c.Previous {
		p, err := s.chats.Chat(ctx, site, id)
		if errors.Is(err, ErrNotFound) {
			continue // expired or erased since: nothing to attribute
		}
		if err != nil {
			return ChatView{}, fmt.Errorf("previous chat of %s: %w", site.ID, err)
		}
		pc, err := s.openContact(site.ID, p)
		if err != nil {
			return ChatView{}, err
		}
		v.Previous = append(v.Previous, PreviousChat{ID: p.ID, Start: p.Start, Contact: pc, Marketing: p.Marketing})
	}
	revealed := []subject{{"chat", c.ID}}
	for _, p := range v.Previous {
		revealed = append(revealed, subject{"chat", p.ID})
	}
	revealed = append(revealed, subject{"visitor", c.VisitorID})
	if err := s.auditRead(ctx, site, a.KeyID, "chat.read", revealed...); err != nil {
		return ChatView{}, err
	}
	return v, nil
}

func (s *Service) openContact(site string, c StoredChat) (Contact, error) {
	var out Contact
	var err error
	for _, f := range []struct {
		name   string
		sealed string
		dst    *string
	}{{"name", c.Name, &out.Name}, {"email", c.Email, &out.Email}, {"phone", c.Phone, &out.Phone}} {
		if *f.dst, err = s.sealer.Open(site, f.name, c.ID, f.sealed); err != nil {
			return Contact{}, fmt.Errorf("contact of chat: %w", err)
		}
	}
	return out, nil
}

// Stats returns a site's anonymous per-day counters of tracked and refused page views.
func (s *Service) Stats(ctx context.Context, a Actor, day time.Time) (map[string]int64, error) {
	m, err := s.operator.Stats(ctx, a.Site, day)
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", a.Site.ID, err)
	}
	return m, nil
}

// HoldStream takes, or renews, a place for the live stream id among the open
// streams of the actor's key, shared by every pod, until lease from now: at
// most max, else a RateLimitError. A pod that dies leaves its places to lapse.
func (s *Service) HoldStream(ctx context.Context, a Actor, id string, max int, lease time.Duration) error {
	now := utc(s.now())
	ok, err := s.operator.HoldStream(ctx, a.Site, a.KeyID, id, now, now.Add(lease), max)
	if err != nil {
		return fmt.Errorf("live stream of %s: %w", a.Site.ID, err)
	}
	if !ok {
		return &RateLimitError{RetryAfter: lease}
	}
	return nil
}

// ReleaseStream gives the place of live stream id back.
func (s *Service) ReleaseStream(ctx context.Context, a Actor, id string) error {
	if err := s.operator.ReleaseStream(ctx, a.Site, a.KeyID, id); err != nil {
		return fmt.Errorf("live stream of %s: %w", a.Site.ID, err)
	}
	return nil
}

// MaxStatsDays is the longest span, in days, one stats read may cover.
const MaxStatsDays = 90

// DayStats are one UTC day's anonymous counters, by reason (ReasonTracked for
// page views tracked).
type DayStats struct {
	Day    time.Time
	Counts map[string]int64
}

// StatsRange returns a site's anonymous counters of every UTC day from from to
// to, both included, oldest first: at most MaxStatsDays days, else ErrInvalid.
func (s *Service) StatsRange(ctx context.Context, a Actor, from, to time.Time) ([]DayStats, error) {
	from, to = utc(from).Truncate(24*time.Hour), utc(to).Truncate(24*time.Hour)
	if to.Before(from) {
		return nil, Errorf(EInvalid, "from must not be after to")
	}
	n := int(to.Sub(from)/(24*time.Hour)) + 1
	if n > MaxStatsDays {
		return nil, Errorf(EInvalid, "from..to covers %d days, at most %d", n, MaxStatsDays)
	}
	days := make([]time.Time, n)
	for i := range days {
		days[i] = from.AddDate(0, 0, i)
	}
	counts, err := s.operator.StatsDays(ctx, a.Site, days)
	if err != nil {
		return nil, fmt.Errorf("stats of %s: %w", a.Site.ID, err)
	}
	out := make([]DayStats, n)
	for i, d := range days {
		out[i] = DayStats{Day: d, Counts: counts[i]}
	}
	return out, nil
}

// Today is the current UTC day by the service's clock.
func (s *Service) Today() time.Time { return utc(s.now()).Truncate(24 * time.Hour) }

package visitor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// HitType is what a tracker reports.
type HitType string

// Hit types of POST /v1/track.
const (
	HitPageview  HitType = "pageview"
	HitHeartbeat HitType = "heartbeat"
	HitLeave     HitType = "leave"
)

// Reason says why a hit was not tracked.
type Reason string

// Reasons, in order of precedence for the first four (invariant 1).
const (
	ReasonGPC       Reason = "gpc"
	ReasonDNT       Reason = "dnt"
	ReasonBot       Reason = "bot"
	ReasonNoConsent Reason = "no_consent"
	ReasonNoSession Reason = "no_session"
	// ReasonRefusal counts a consent refusal by a visitor without identity.
	ReasonRefusal Reason = "refusal"
	// ReasonTracked counts a tracked page view.
	ReasonTracked Reason = "tracked"
)

// Hit is one call of a tracker, as the transport received it.
type Hit struct {
	Site      *Site
	Type      HitType
	URL       string
	Title     string
	Referrer  string
	Token     string // from X-Visitor-Token or the identity cookie
	UserAgent string
	IP        netip.Addr
	DNT       bool
	GPC       bool
	// Caller is Token as the transport already verified it (Service.Caller),
	// so a page view verifies its token once; left zero, Track verifies it.
	Caller Caller
}

// TrackResult is what became of a Hit.
type TrackResult struct {
	Tracked bool
	Reason  Reason
	// Token is the identity token to hand back when tracked.
	Token        string
	TokenExpires time.Time
	// Issued is true when Token was issued by this call: the cookie is set only then.
	Issued bool
	// ForgetIdentity asks the transport to expire the identity cookie it carried.
	ForgetIdentity bool
}

// HitOutcome is what the store made of a HitWrite.
type HitOutcome int

// Outcomes of Store.RecordHit.
const (
	OutcomeTracked HitOutcome = iota
	OutcomeNewSession
	OutcomeNoSession
	OutcomeNoConsent
	OutcomeErased
)

// ErrErased reports a visitor whose identity has been erased (a tombstone).
var ErrErased = errors.New("visitor erased")

// TrackStore is what the Service needs of its storage to track hits. Its
// methods return ErrStoreUnavailable (wrapped) when the store cannot be reached
// in time.
type TrackStore interface {
	// RecordHit writes a page view, heartbeat or leave in one round trip and says
	// what became of it.
	RecordHit(ctx context.Context, w HitWrite) (HitOutcome, error)
	// CountRefused adds one to the site's anonymous counter of reason for the day of now.
	CountRefused(ctx context.Context, site *Site, now time.Time, reason Reason) error
}

// HitWrite is what the store writes for a tracked hit.
type HitWrite struct {
	Site       *Site
	Retention  Retention
	VisitorID  string
	VisitorKey string
	Type       HitType
	Now        time.Time
	Page       Page
	Device     Device
	Location   Location
	IP         string
	// NewSessionID names the session the store starts if the hit opens one.
	NewSessionID string
	// RequireGrant makes the store refuse the hit unless the visitor's stored
	// choice grants analytics for the site's current policy.
	RequireGrant bool
	// Count is the stats counter the hit adds to (page views only).
	Count bool
	// NewVisitor is set when the visitor id was minted for this hit (a
	// visitor's first page view): no tombstone, choice, profile or session can
	// exist for it, so the store reads none, and it enters the subject index.
	NewVisitor bool
}

// Validate checks the hit's type and, for a page view, that it names a URL.
func (h Hit) Validate() error {
	switch h.Type {
	case HitPageview:
		// Under DNT or GPC the tracker sends only a count ping, without a URL.
		if h.URL == "" && !h.DNT && !h.GPC {
			return Errorf(EInvalid, "a pageview needs a url")
		}
	case HitHeartbeat, HitLeave:
	default:
		return Errorf(EInvalid, "type must be pageview, heartbeat or leave")
	}
	return nil
}

// Track applies the privacy gates to a hit and records it when they allow.
func (s *Service) Track(ctx context.Context, h Hit) (TrackResult, error) {
	if err := h.Validate(); err != nil {
		return TrackResult{}, err
	}
	site := h.Site
	var page Page
	if h.Type == HitPageview && h.URL != "" {
		p, err := site.MinimisePage(h.URL, h.Title, h.Referrer)
		if err != nil {
			return TrackResult{}, err
		}
		page = p
	}
	now := utc(s.now())
	tok, valid := h.Caller.Token, h.Caller.Valid
	if !h.Caller.checked || h.Caller.Raw != h.Token {
		tok, valid = s.verify(h.Token, site, now)
	}
	pageview := h.Type == HitPageview

	if h.GPC || h.DNT {
		return s.trackSignal(ctx, h, tok, valid, now)
	}
	dev := s.devices.Parse(h.UserAgent)
	if dev.Bot {
		return TrackResult{Reason: ReasonBot}, s.count(ctx, site, now, pageview, ReasonBot)
	}
	if valid && tok.Kind == KindRefusal {
		return TrackResult{Reason: ReasonNoConsent}, s.count(ctx, site, now, pageview, ReasonNoConsent)
	}
	requireGrant := site.Consent != ConsentOptOut
	if !valid || tok.Kind != KindID {
		switch {
		case !pageview:
			return TrackResult{Reason: ReasonNoSession}, nil
		case requireGrant:
			return TrackResult{Reason: ReasonNoConsent}, s.count(ctx, site, now, pageview, ReasonNoConsent)
		}
		return s.trackNew(ctx, h, site, page, dev, now)
	}
	if requireGrant && !tok.HasGrant(site.PolicyVersion, now) {
		return TrackResult{Reason: ReasonNoConsent}, s.count(ctx, site, now, pageview, ReasonNoConsent)
	}
	out, err := s.track.RecordHit(ctx, s.hitWrite(h, site, tok.VisitorID, page, dev, now, requireGrant))
	if err != nil {
		return TrackResult{}, err
	}
	return s.trackOutcome(ctx, h, page, dev, now, tok, out, requireGrant)
}

// trackSignal answers a hit sent with a DNT or GPC signal: nothing is recorded,
// the refusal is counted, and a GPC objection of a known visitor is honoured.
func (s *Service) trackSignal(ctx context.Context, h Hit, tok Token, valid bool, now time.Time) (TrackResult, error) {
	site, pageview := h.Site, h.Type == HitPageview
	reason := signalReason(h.GPC)
	res := TrackResult{Reason: reason, ForgetIdentity: h.Token != ""}
	if h.GPC && valid && tok.Kind == KindID {
		// GPC is an objection: the visitor's behaviour data goes as on a
		// withdrawal, with a gpc withdrawal record.
		return res, s.object(ctx, site, tok.VisitorID, now, countIf(pageview, reason))
	}
	return res, s.count(ctx, site, now, pageview, reason)
}

// trackOutcome answers the hit of a known visitor by what the store made of it.
func (s *Service) trackOutcome(ctx context.Context, h Hit, page Page, dev Device, now time.Time, tok Token, out HitOutcome, requireGrant bool) (TrackResult, error) {
	site, pageview := h.Site, h.Type == HitPageview
	switch out {
	case OutcomeTracked, OutcomeNewSession:
		return TrackResult{Tracked: true, Token: h.Token, TokenExpires: tok.Expires}, nil
	case OutcomeNoSession:
		return TrackResult{Reason: ReasonNoSession}, nil
	case OutcomeNoConsent:
		return TrackResult{Reason: ReasonNoConsent, ForgetIdentity: true}, nil
	}
	// An erased visitor's token is foreign from now on: the caller is new.
	if !pageview {
		return TrackResult{Reason: ReasonNoSession, ForgetIdentity: true}, nil
	}
	if requireGrant {
		return TrackResult{Reason: ReasonNoConsent, ForgetIdentity: true}, s.count(ctx, site, now, pageview, ReasonNoConsent)
	}
	return s.trackNew(ctx, h, site, page, dev, now)
}

// trackNew gives a visitor without a usable identity a new one and records the
// page view under it (opt-out sites only).
func (s *Service) trackNew(ctx context.Context, h Hit, site *Site, page Page, dev Device, now time.Time) (TrackResult, error) {
	id := s.newID()
	w := s.hitWrite(h, site, id, page, dev, now, false)
	w.NewVisitor = true
	out, err := s.track.RecordHit(ctx, w)
	if err != nil {
		return TrackResult{}, err
	}
	if out != OutcomeTracked && out != OutcomeNewSession {
		return TrackResult{}, fmt.Errorf("track new visitor on %s: unexpected outcome %d", site.ID, out)
	}
	token, exp := s.issueID(site, id, now, time.Time{}, Choice{})
	return TrackResult{Tracked: true, Token: token, TokenExpires: exp, Issued: true}, nil
}

func (s *Service) hitWrite(h Hit, site *Site, visitorID string, page Page, dev Device, now time.Time, requireGrant bool) HitWrite {
	w := HitWrite{
		Site: site, Retention: s.Retention(site), VisitorID: visitorID,
		VisitorKey: s.hasher.VisitorKey(site.ID, visitorID), Type: h.Type, Now: now,
		RequireGrant: requireGrant, Count: h.Type == HitPageview,
	}
	if h.Type == HitPageview {
		w.Page, w.Device, w.IP = page, dev, site.StoredIP(h.IP)
		w.NewSessionID = s.newID()
		if s.locator != nil {
			w.Location = s.locator.Lookup(h.IP)
		}
	}
	return w
}

func (s *Service) count(ctx context.Context, site *Site, now time.Time, pageview bool, reason Reason) error {
	if !pageview {
		return nil
	}
	return s.track.CountRefused(ctx, site, now, reason)
}

// countIf returns reason when a page view is counted, else "" (nothing counted).
func countIf(pageview bool, reason Reason) Reason {
	if pageview {
		return reason
	}
	return ""
}

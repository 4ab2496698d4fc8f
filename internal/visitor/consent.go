package visitor

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Consent methods: how a choice was given.
const (
	MethodBanner    = "banner"
	MethodAPI       = "api"
	MethodChatStart = "chat_start"
	// MethodGPC is a withdrawal by a Global Privacy Control signal (invariant 1).
	MethodGPC = "gpc"
)

// MaxUserAgentBytes bounds the User-Agent kept in a consent record.
const MaxUserAgentBytes = 512

// Choice is a visitor's consent choice per purpose.
type Choice struct {
	Analytics     bool
	Marketing     bool
	PolicyVersion string
	// Given is when the choice was made; zero for a site's default.
	Given time.Time
	// ValidUntil is when the choice lapses and the widget asks again; zero for a default.
	ValidUntil time.Time
}

// ConsentRecord is the proof of one consent choice (invariant 2).
type ConsentRecord struct {
	VisitorID string
	// Subject is the keyed hash that replaces VisitorID after an erasure, and
	// names the visitor of a GPC withdrawal, which is cut like an erased record.
	Subject string
	Time    time.Time
	// Analytics and Marketing are the answers of the purposes asked; nil for a
	// purpose not asked (a chat-start marketing opt-in answers marketing alone).
	Analytics     *bool
	Marketing     *bool
	PolicyVersion string
	TextSHA256    string
	Method        string
	IP            string // as the site's ip mode stores it: none under drop
	UserAgent     string
}

// ConsentWrite is what the store writes for a consent choice.
type ConsentWrite struct {
	Site       *Site
	Retention  Retention
	VisitorKey string
	Record     ConsentRecord
	Choice     Choice
	// Forget deletes the visitor's behaviour data: a refusal or withdrawal.
	Forget bool
	// WithdrawMarketing clears the marketing permission of every chat of the
	// visitor in the same write: the record answers marketing false.
	WithdrawMarketing bool
	// Count is the anonymous counter the write adds to ("" for none).
	Count Reason
	// UnlessChanged writes nothing (ErrUnchanged) when the choice in force has
	// the same answers and policy and a marketing withdrawal has no chat left
	// to reach: a repeated withdrawal, which no rate limit refuses, is no new
	// record. The counter is still added to.
	UnlessChanged bool
}

// ConsentStore is what the Service needs of its storage for consent. Its
// methods return ErrStoreUnavailable (wrapped) when the store cannot be reached
// in time.
type ConsentStore interface {
	// ConsentChoice returns the visitor's current consent choice; ok is false
	// when there is none.
	ConsentChoice(ctx context.Context, site *Site, visitorKey string) (c Choice, ok bool, err error)
	// SaveConsent writes a consent record and the choice it makes; a refusal also
	// deletes the visitor's behaviour data, and WithdrawMarketing withdraws the
	// marketing permission of the visitor's chats in the same write, returning
	// the ids of the chats it withdrew it from, with those an earlier
	// withdrawal left owed (sorted). It returns ErrErased (wrapped)
	// when the visitor was erased, ErrUnchanged (wrapped) when UnlessChanged
	// finds the choice in force.
	SaveConsent(ctx context.Context, w ConsentWrite) (withdrawn []string, err error)
}

// ErrUnchanged reports a consent write that changed nothing (ConsentWrite.UnlessChanged).
var ErrUnchanged = errors.New("consent choice unchanged")

// ConsentRequest is a visitor's choice as the widget sends it.
type ConsentRequest struct {
	Site          *Site
	Analytics     bool
	Marketing     bool
	PolicyVersion string
	Method        string
	Token         string
	UserAgent     string
	IP            netip.Addr
	DNT           bool
	GPC           bool
	// KeepMarketing is set when the request does not answer marketing (the
	// consent banner asks analytics only): Marketing is ignored, the record
	// answers analytics alone (a purpose not asked is absent, invariant 2), and
	// the visitor's marketing permission, and their chats', stay as they are.
	KeepMarketing bool
}

// ConsentResult is the choice in force after a request, with the token that
// carries it.
type ConsentResult struct {
	Choice       Choice
	Token        string
	TokenExpires time.Time
	// Reason is set when a DNT or GPC signal refused a grant (ReasonGPC, ReasonDNT).
	Reason Reason
	// ForgetIdentity asks the transport to expire the identity cookie it carried.
	ForgetIdentity bool
}

// Defaults is the choice a site assumes before the visitor makes one.
func (s *Site) Defaults() Choice {
	return Choice{Analytics: s.Consent == ConsentOptOut, PolicyVersion: s.PolicyVersion}
}

// Consent returns the visitor's valid choice on the site, or the site's defaults.
// A choice for another policy version or past its validity is no choice.
func (s *Service) Consent(ctx context.Context, site *Site, token string) (Choice, error) {
	now := utc(s.now())
	tok, ok := s.verify(token, site, now)
	if !ok {
		return site.Defaults(), nil
	}
	if tok.Kind == KindRefusal {
		return Choice{PolicyVersion: site.PolicyVersion, Given: tok.IssuedAt, ValidUntil: tok.Expires}, nil
	}
	c, found, err := s.consent.ConsentChoice(ctx, site, s.hasher.VisitorKey(site.ID, tok.VisitorID))
	if err != nil {
		return Choice{}, fmt.Errorf("consent of %s: %w", site.ID, err)
	}
	if !found || c.PolicyVersion != site.PolicyVersion || !now.Before(c.ValidUntil) {
		return site.Defaults(), nil
	}
	return c, nil
}

// SetConsent records a visitor's choice. A grant without identity issues one; a
// refusal or withdrawal deletes the visitor's behaviour data and hands back a
// refusal token in the identity's place; a refusal without identity is only counted.
func (s *Service) SetConsent(ctx context.Context, r ConsentRequest) (ConsentResult, error) {
	site := r.Site
	if r.PolicyVersion != site.PolicyVersion {
		return ConsentResult{}, Errorf(EPolicyOutdated, "site %s asks consent for policy %q", site.ID, site.PolicyVersion)
	}
	now := utc(s.now())
	tok, ok := s.verify(r.Token, site, now)
	var visitorID string
	var expires time.Time
	if ok && tok.Kind == KindID {
		visitorID, expires = tok.VisitorID, tok.Expires
	}
	if r.KeepMarketing {
		r.Marketing = false
	}
	if (r.DNT || r.GPC) && (r.Analytics || r.Marketing) {
		return s.signalOverGrant(ctx, r, visitorID, now)
	}
	choice := Choice{Analytics: r.Analytics, Marketing: r.Marketing, PolicyVersion: site.PolicyVersion, Given: now}
	if r.Analytics {
		choice.ValidUntil = now.Add(site.ConsentValidity())
	} else {
		choice.ValidUntil = now.Add(site.RefusalLifetime())
	}
	if visitorID == "" && !r.Analytics {
		if err := s.track.CountRefused(ctx, site, now, ReasonRefusal); err != nil {
			return ConsentResult{}, err
		}
		return s.consentResult(site, "", now, time.Time{}, choice), nil
	}
	var unchanged Choice
	if visitorID != "" {
		cur, found, err := s.consent.ConsentChoice(ctx, site, s.hasher.VisitorKey(site.ID, visitorID))
		if err != nil {
			return ConsentResult{}, fmt.Errorf("consent on %s: %w", site.ID, err)
		}
		if r.KeepMarketing {
			choice.Marketing = found && cur.Marketing
		}
		unchanged = cur
	} else {
		visitorID = s.newID()
	}
	return s.storeChoice(ctx, r, visitorID, expires, choice, unchanged, now)
}

// signalOverGrant answers a grant sent with a DNT or GPC signal. Invariant 1:
// the signal wins over a grant sent with it. Nothing is stored and no token
// issued; a GPC objection of a known visitor is honoured as on a page view. A
// refusal goes on as usual.
func (s *Service) signalOverGrant(ctx context.Context, r ConsentRequest, visitorID string, now time.Time) (ConsentResult, error) {
	site := r.Site
	res := ConsentResult{Choice: Choice{PolicyVersion: site.PolicyVersion}, Reason: signalReason(r.GPC),
		ForgetIdentity: r.Token != ""}
	if r.GPC && visitorID != "" {
		if err := s.object(ctx, site, visitorID, now, ""); err != nil {
			return ConsentResult{}, fmt.Errorf("consent on %s: %w", site.ID, err)
		}
	}
	return res, nil
}

// storeChoice saves the choice of visitorID (whose identity expires at expires,
// zero for a new one), notifies the chats it withdrew and answers it with its
// token. unchanged is the choice in force, answered when the new one repeats it.
func (s *Service) storeChoice(ctx context.Context, r ConsentRequest, visitorID string, expires time.Time, choice, unchanged Choice, now time.Time) (ConsentResult, error) {
	site := r.Site
	withdrawn, err := s.saveConsent(ctx, r, site, visitorID, choice, now)
	if errors.Is(err, ErrUnchanged) {
		// The choice in force is repeated: nothing is granted or withdrawn, so
		// nothing is written (a flood of identical withdrawals writes nothing).
		// A repeated withdrawal still queues the marketing.withdrawn an earlier
		// one could not.
		if !r.Marketing && !r.KeepMarketing {
			if err := s.payWithdrawals(ctx, site, visitorID); err != nil {
				return ConsentResult{}, err
			}
		}
		return s.consentResult(site, visitorID, now, expires, unchanged), nil
	}
	if errors.Is(err, ErrErased) {
		// The token named an erased visitor: it is foreign, the caller is new.
		expires = time.Time{}
		if !r.Analytics {
			return s.consentResult(site, "", now, expires, choice), nil
		}
		visitorID = s.newID()
		withdrawn, err = s.saveConsent(ctx, r, site, visitorID, choice, now)
	}
	if err != nil {
		return ConsentResult{}, err
	}
	if err := s.notifyWithdrawn(ctx, site, s.hasher.VisitorKey(site.ID, visitorID), withdrawn); err != nil {
		return ConsentResult{}, err
	}
	return s.consentResult(site, visitorID, now, expires, choice), nil
}

// consentResult answers choice c with the token it calls for: a refusal token
// unless analytics is granted, else visitorID's identity token.
func (s *Service) consentResult(site *Site, visitorID string, now, expires time.Time, c Choice) ConsentResult {
	if !c.Analytics {
		token, exp := s.issueRefusal(site, now)
		return ConsentResult{Choice: c, Token: token, TokenExpires: exp}
	}
	token, exp := s.issueID(site, visitorID, now, expires, c)
	return ConsentResult{Choice: c, Token: token, TokenExpires: exp}
}

// saveConsent writes the record of a choice answering both purposes (analytics
// alone under KeepMarketing) and the choice; a refusal forgets behaviour data, a marketing refusal withdraws the
// marketing permission of the visitor's chats. It returns the chats withdrawn.
func (s *Service) saveConsent(ctx context.Context, r ConsentRequest, site *Site, visitorID string, c Choice, now time.Time) ([]string, error) {
	rec := ConsentRecord{
		VisitorID: visitorID, Time: now, Analytics: answer(c.Analytics), Marketing: answer(c.Marketing),
		PolicyVersion: c.PolicyVersion, TextSHA256: s.textHash[site.ID], Method: r.Method,
		IP: site.StoredIP(r.IP), UserAgent: truncateUTF8(cleanText(r.UserAgent), MaxUserAgentBytes),
	}
	if r.KeepMarketing {
		rec.Marketing = nil
	}
	return s.consent.SaveConsent(ctx, ConsentWrite{
		Site: site, Retention: s.Retention(site), VisitorKey: s.hasher.VisitorKey(site.ID, visitorID),
		Record: rec, Choice: c, Forget: !c.Analytics, WithdrawMarketing: !c.Marketing && !r.KeepMarketing, UnlessChanged: true,
	})
}

// object honours a GPC objection of an identified visitor (invariant 1): as a
// withdrawal, it deletes the behaviour data, refuses both purposes for the
// identity and withdraws the chats' marketing permission, in one write with a
// withdrawal record of method gpc cut like an erased one (keyed hash, time,
// choices, policy version, method: no visitor id, IP or User-Agent). count is
// the page view's counter ("" for none). A token of an erased visitor is
// foreign: then only count.
func (s *Service) object(ctx context.Context, site *Site, visitorID string, now time.Time, count Reason) error {
	rec := ConsentRecord{
		Subject: s.AuditTarget(site.ID, "visitor", visitorID), Time: now,
		Analytics: answer(false), Marketing: answer(false), PolicyVersion: site.PolicyVersion, Method: MethodGPC,
	}
	choice := Choice{PolicyVersion: site.PolicyVersion, Given: now, ValidUntil: now.Add(site.RefusalLifetime())}
	vkey := s.hasher.VisitorKey(site.ID, visitorID)
	withdrawn, err := s.consent.SaveConsent(ctx, ConsentWrite{
		Site: site, Retention: s.Retention(site), VisitorKey: vkey,
		Record: rec, Choice: choice, Forget: true, WithdrawMarketing: true, Count: count, UnlessChanged: true,
	})
	if errors.Is(err, ErrUnchanged) {
		// Objected before: counted, nothing new to record; what the first
		// objection could not queue is queued now.
		return s.payWithdrawals(ctx, site, visitorID)
	}
	if errors.Is(err, ErrErased) {
		if count == "" {
			return nil
		}
		return s.track.CountRefused(ctx, site, now, count)
	}
	if err != nil {
		return err
	}
	return s.notifyWithdrawn(ctx, site, vkey, withdrawn)
}

// answer is a purpose's answer in a consent record.
func answer(b bool) *bool { return &b }

// signalReason is the reason a DNT or GPC signal gives; GPC wins.
func signalReason(gpc bool) Reason {
	if gpc {
		return ReasonGPC
	}
	return ReasonDNT
}

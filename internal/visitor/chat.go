package visitor

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net/mail"
	"net/netip"
	"strings"
	"time"
	"unicode/utf8"
)

// Limits of contact details.
const (
	MaxNameBytes  = 200
	MaxEmailBytes = 254
	MaxPhoneBytes = 40
)

// Contact is what a visitor typed into the chat form.
type Contact struct {
	Name  string
	Email string
	Phone string
}

// Validate checks the contact's sizes and the e-mail's shape.
func (c Contact) Validate() error {
	switch {
	case len(c.Name) > MaxNameBytes || !utf8.ValidString(c.Name):
		return Errorf(EInvalid, "contact.name must be valid text of at most %d bytes", MaxNameBytes)
	case len(c.Email) > MaxEmailBytes:
		return Errorf(EInvalid, "contact.email must be at most %d bytes", MaxEmailBytes)
	case len(c.Phone) > MaxPhoneBytes || strings.Trim(c.Phone, "+0123456789 ()-./") != "":
		return Errorf(EInvalid, "contact.phone must be digits, spaces and +()-./, at most %d bytes", MaxPhoneBytes)
	}
	if c.Email != "" {
		a, err := mail.ParseAddress(c.Email)
		if err != nil || a.Address != strings.TrimSpace(c.Email) {
			return Errorf(EInvalid, "contact.email is not an e-mail address")
		}
	}
	return nil
}

// Clean trims the contact's fields and folds control characters.
func (c Contact) Clean() Contact {
	return Contact{Name: cleanText(c.Name), Email: strings.TrimSpace(c.Email), Phone: strings.TrimSpace(c.Phone)}
}

// NormalizeEmail is the form of an e-mail the blind index hashes: trimmed, lower case.
func NormalizeEmail(email string) string { return strings.ToLower(strings.TrimSpace(email)) }

// ChatRequest is a chat start as the widget sends it.
type ChatRequest struct {
	Site           *Site
	Contact        Contact
	MarketingOptIn bool
	URL            string
	Token          string
	UserAgent      string
	IP             netip.Addr
	DNT            bool
	GPC            bool
}

// ChatResult is what a chat start answers.
type ChatResult struct {
	ChatID        string
	Returning     bool
	PreviousChats int
	// Token is set when the chat start issued an identity (on-chat sites).
	Token        string
	TokenExpires time.Time
}

// ChatBinding is what the store knows of a visitor when a chat starts.
type ChatBinding struct {
	// SessionID is the session current at the chat's start, "" for none.
	SessionID string
	// Previous lists the visitor's earlier chats, oldest first.
	Previous []string
	Device   Device
	Location Location
	Referrer string
}

// ChatWrite is what the store writes for a chat start.
type ChatWrite struct {
	Site       *Site
	Retention  Retention
	ChatID     string
	VisitorID  string // "" for a chat without identity
	VisitorKey string
	Start      time.Time
	Binding    ChatBinding
	URL        string
	Marketing  bool
	// Sealed contact fields, AES-256-GCM with additional data site|field|chat id.
	Name, Email, Phone string
	// EmailIndex is the blind-index hash of the normalised e-mail, "" for none.
	EmailIndex string
	// MarketingRecord is the consent record of a marketing opt-in, if any.
	MarketingRecord *ConsentRecord
	// Webhook is the sealed chat.started delivery, if the site has a webhook.
	Webhook *Delivery
}

// StoredChat is a chat as the store keeps it, contacts still sealed.
type StoredChat struct {
	ID                 string
	VisitorID          string
	VisitorKey         string
	Start              time.Time
	SessionID          string
	URL                string
	Marketing          bool
	Name, Email, Phone string
	Previous           []string
	Device             Device
	Location           Location
	Referrer           string
}

// ChatStore is what the Service needs of its storage for chats.
type ChatStore interface {
	// BindChat reads what a chat of the visitor binds to at now: the open session
	// and the earlier chats. ErrErased (wrapped) for an erased visitor.
	BindChat(ctx context.Context, site *Site, visitorKey string, now time.Time) (ChatBinding, error)
	// SaveChat writes a chat with its indexes and queued webhook in one round trip.
	SaveChat(ctx context.Context, w ChatWrite) error
	// Chat returns a stored chat; ErrNotFound (wrapped) when there is none.
	Chat(ctx context.Context, site *Site, chatID string) (StoredChat, error)
	// Trail returns the pages of a visitor's session, oldest first.
	Trail(ctx context.Context, site *Site, visitorKey, sessionID string) ([]PageVisit, error)
}

// PageVisit is one page of a session's trail.
type PageVisit struct {
	URL      string
	Title    string
	Start    time.Time
	Duration time.Duration
}

// NewChatID returns a random chat id of 128 bits in base64url.
func NewChatID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidChatID reports whether id has the shape NewChatID gives.
func ValidChatID(id string) bool { return validVisitorID(id) }

// StartChat starts a chat. With a valid identity the chat is bound to the
// visitor's open session and linked to their earlier chats, through the identity
// only; without one nothing is linked. On an on-chat site the chat start is the
// visitor's request: it issues the identity, records consent given by
// chat_start and starts the session at the chat's url. DNT and GPC still win: no
// identity is used or issued.
func (s *Service) StartChat(ctx context.Context, r ChatRequest) (ChatResult, error) {
	site := r.Site
	c := r.Contact.Clean()
	if err := c.Validate(); err != nil {
		return ChatResult{}, err
	}
	var page Page
	if r.URL != "" {
		p, err := site.MinimisePage(r.URL, "", "")
		if err != nil {
			return ChatResult{}, err
		}
		page = p
	}
	now := utc(s.now())
	res := ChatResult{ChatID: NewChatID()}
	v, err := s.chatVisitor(ctx, r, page, now)
	if err != nil {
		return ChatResult{}, err
	}
	res.Token, res.TokenExpires = v.token, v.expires
	res.PreviousChats = len(v.binding.Previous)
	res.Returning = res.PreviousChats > 0
	w, err := s.chatWrite(r, c, page, res, v, now)
	if err != nil {
		return ChatResult{}, fmt.Errorf("start chat on %s: %w", site.ID, err)
	}
	if err := s.chats.SaveChat(ctx, w); err != nil {
		return ChatResult{}, fmt.Errorf("start chat on %s: %w", site.ID, err)
	}
	return res, nil
}

// startingVisitor is who starts a chat: the visitor ("" for none), what the
// chat is bound to, and the identity token the chat start issued, if any.
type startingVisitor struct {
	id      string
	binding ChatBinding
	token   string
	expires time.Time
}

// chatVisitor finds who starts a chat: the visitor of a valid identity, bound
// to their session and earlier chats; else, on an on-chat site, a visitor the
// chat start identifies. DNT, GPC and bots are never identified.
func (s *Service) chatVisitor(ctx context.Context, r ChatRequest, page Page, now time.Time) (startingVisitor, error) {
	site := r.Site
	var v startingVisitor
	if tok, ok := s.verify(r.Token, site, now); ok && tok.Kind == KindID && !r.DNT && !r.GPC {
		v.id = tok.VisitorID
	}
	if v.id != "" {
		b, err := s.chats.BindChat(ctx, site, s.hasher.VisitorKey(site.ID, v.id), now)
		switch {
		case errors.Is(err, ErrErased):
			v.id = "" // an erased visitor's token is foreign
		case err != nil:
			return startingVisitor{}, fmt.Errorf("start chat on %s: %w", site.ID, err)
		default:
			v.binding = b
		}
	}
	if v.id == "" && site.Consent == ConsentOnChat && !r.DNT && !r.GPC && !s.devices.Parse(r.UserAgent).Bot {
		id, token, exp, b, err := s.identifyByChat(ctx, r, site, page, now)
		if err != nil {
			return startingVisitor{}, err
		}
		v = startingVisitor{id: id, binding: b, token: token, expires: exp}
	}
	return v, nil
}

// chatWrite is what SaveChat stores of a new chat: the contact sealed, the
// e-mail's blind index, the marketing consent record and the chat.started
// delivery. Its error is the webhook body's sealing.
func (s *Service) chatWrite(r ChatRequest, c Contact, page Page, res ChatResult, v startingVisitor, now time.Time) (ChatWrite, error) {
	site := r.Site
	w := ChatWrite{
		Site: site, Retention: s.Retention(site), ChatID: res.ChatID, Start: now, Binding: v.binding,
		URL: page.URL, Marketing: r.MarketingOptIn,
		Name:  s.sealer.Seal(site.ID, "name", res.ChatID, c.Name),
		Email: s.sealer.Seal(site.ID, "email", res.ChatID, c.Email),
		Phone: s.sealer.Seal(site.ID, "phone", res.ChatID, c.Phone),
	}
	if v.id != "" {
		w.VisitorID, w.VisitorKey = v.id, s.hasher.VisitorKey(site.ID, v.id)
	}
	if c.Email != "" {
		w.EmailIndex = s.hasher.Short(site.ID, PurposeEmail, NormalizeEmail(c.Email))
	}
	if r.MarketingOptIn {
		w.MarketingRecord = &ConsentRecord{
			VisitorID: v.id, Time: now, Marketing: answer(true), PolicyVersion: site.PolicyVersion,
			TextSHA256: s.textHash[site.ID], Method: MethodChatStart, IP: site.StoredIP(r.IP),
			UserAgent: truncateUTF8(cleanText(r.UserAgent), MaxUserAgentBytes),
		}
	}
	if site.Webhook.URL != "" {
		d, err := s.seal(site, EventChatStarted, ChatStartedBody{
			Event: EventChatStarted, Site: site.ID, ChatID: res.ChatID, Time: now, Name: c.Name, Email: c.Email,
			Phone: c.Phone, MarketingOptIn: r.MarketingOptIn, URL: page.URL, Returning: res.Returning,
			PreviousChats: res.PreviousChats,
		})
		if err != nil {
			return ChatWrite{}, err
		}
		w.Webhook = &d
	}
	return w, nil
}

// identifyByChat issues the identity of an on-chat site's visitor at the chat
// start: consent given by chat_start, then a page view at the chat's url that
// starts the session the chat binds to.
func (s *Service) identifyByChat(ctx context.Context, r ChatRequest, site *Site, page Page, now time.Time) (string, string, time.Time, ChatBinding, error) {
	id := s.newID()
	choice := Choice{Analytics: true, Marketing: r.MarketingOptIn, PolicyVersion: site.PolicyVersion, Given: now,
		ValidUntil: now.Add(site.ConsentValidity())}
	cr := ConsentRequest{Site: site, Analytics: true, Marketing: r.MarketingOptIn, PolicyVersion: site.PolicyVersion,
		Method: MethodChatStart, UserAgent: r.UserAgent, IP: r.IP}
	if _, err := s.saveConsent(ctx, cr, site, id, choice, now); err != nil {
		return "", "", time.Time{}, ChatBinding{}, fmt.Errorf("chat consent on %s: %w", site.ID, err)
	}
	var binding ChatBinding
	if page.URL != "" {
		h := Hit{Site: site, Type: HitPageview, UserAgent: r.UserAgent, IP: r.IP}
		w := s.hitWrite(h, site, id, page, s.devices.Parse(r.UserAgent), now, true)
		w.NewVisitor = true
		if _, err := s.track.RecordHit(ctx, w); err != nil {
			return "", "", time.Time{}, ChatBinding{}, fmt.Errorf("chat session on %s: %w", site.ID, err)
		}
		binding = ChatBinding{SessionID: w.NewSessionID, Device: w.Device, Location: w.Location}
	}
	token, exp := s.issueID(site, id, now, time.Time{}, choice)
	return id, token, exp, binding, nil
}

// chat returns the stored chat chatID of site; one the store does not hold is
// an *Error of code ENotFound naming it.
func (s *Service) chat(ctx context.Context, site *Site, chatID string) (StoredChat, error) {
	c, err := s.chats.Chat(ctx, site, chatID)
	if errors.Is(err, ErrNotFound) {
		return StoredChat{}, Errorf(ENotFound, "no chat %q", truncateUTF8(chatID, 40))
	}
	return c, err
}

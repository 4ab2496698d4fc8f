package visitor

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Profile is what the store keeps of a visitor across sessions: identity-level
// facts only (DESIGN.md invariant 5). What a session observed is in its
// SessionData.
type Profile struct {
	VisitorID string
	FirstSeen time.Time
	// LastSeen is the visitor's last activity: its latest hit, or when its
	// profile was last written should its sessions be gone.
	LastSeen time.Time
	Sessions int
	// CurrentSession is the id of the visitor's current (latest) session.
	CurrentSession string
}

// SessionData is one stored session: what it observed and its pages.
type SessionData struct {
	ID       string
	Start    time.Time
	LastSeen time.Time
	Referrer string
	Device   Device
	Location Location
	IP       string
	// CurrentURL and CurrentTitle are the session's latest page, as the live
	// view shows it (past the page cap, the latest page is kept only here).
	CurrentURL   string
	CurrentTitle string
	// CurrentStart is when the latest page was opened; CurrentClosed is true
	// once a leave closed it.
	CurrentStart  time.Time
	CurrentClosed bool
	// PageViews counts the session's page views, the ones past the cap of
	// stored pages included.
	PageViews int
	Pages     []PageVisit
}

// VisitorData is everything the store holds of one visitor, contacts sealed.
type VisitorData struct {
	Profile  *Profile
	Sessions []SessionData
	Choice   *Choice
	Consents []ConsentRecord
	Chats    []StoredChat
}

// Empty reports whether the store holds nothing of the visitor.
func (d VisitorData) Empty() bool {
	return d.Profile == nil && len(d.Sessions) == 0 && d.Choice == nil && len(d.Consents) == 0 && len(d.Chats) == 0
}

// Erasure names a subject to erase: a visitor (VisitorKey and VisitorID) or a
// chat alone (ChatID). Subject is the keyed hash that remains in its place.
type Erasure struct {
	VisitorKey string
	VisitorID  string
	ChatID     string
	Subject    string
	// Owed is what an erasure asked by an actor owes once its keys are gone:
	// its audit entry and its subject.erased delivery. The store keeps it
	// beside the sweeper's marker until SettleErasure, so an erasure
	// interrupted before either is written still gets both.
	Owed *ErasureOwed
}

// ErasureOwed is what an erasure owes: ids only.
type ErasureOwed struct {
	Actor   string   // the key id the audit entry names
	ChatIDs []string // the chats subject.erased names
}

// ContactChange rectifies the contact details of a subject's chats; nil fields
// stay as they are.
type ContactChange struct {
	Name, Email, Phone *string
}

// RectifiedChat is one chat's new sealed contact fields.
type RectifiedChat struct {
	ChatID string
	Fields map[string]string // field → sealed value
}

// Rectification is what the store writes to rectify a subject.
type Rectification struct {
	Member string // blind-index member: "v:<visitor id>" or "c:<chat id>"
	// VisitorKey is set for a visitor, so the store can update its index list.
	VisitorKey string
	Chats      []RectifiedChat
	// NewIndex is the blind-index hash of the new e-mail ("" when unchanged);
	// IndexUntil its entry's expiry.
	NewIndex   string
	IndexUntil time.Time
}

// PrivacyStore is what the Service needs of its storage for data-subject
// requests. Its methods return ErrStoreUnavailable (wrapped) when the store
// cannot be reached in time.
type PrivacyStore interface {
	// SearchEmail returns the subjects of an e-mail's blind index.
	SearchEmail(ctx context.Context, site *Site, hash string, now time.Time) (visitors, chats []string, err error)
	// VisitorData returns everything stored of a visitor.
	VisitorData(ctx context.Context, site *Site, visitorKey string) (VisitorData, error)
	// ChatConsents returns the consent records of a chat without identity.
	ChatConsents(ctx context.Context, site *Site, chatID string) ([]ConsentRecord, error)
	// Rectify rewrites contact details and the blind index.
	Rectify(ctx context.Context, site *Site, r Rectification) error
	// Erase erases a subject in DESIGN.md's order (tombstone, index entries,
	// keys), leaving consent records cut to their proof fields; it is idempotent,
	// so an interrupted erasure is finished by calling it again.
	Erase(ctx context.Context, site *Site, e Erasure) error
	// PendingErasures lists erasures that were started and not finished, or
	// that still owe their audit entry and delivery (Erasure.Owed).
	PendingErasures(ctx context.Context, site *Site) ([]Erasure, error)
	// SettleErasure writes the audit entry an erasure owes and drops what it
	// owed, at once and only while it is owed: settled twice, it is audited once.
	SettleErasure(ctx context.Context, site *Site, e Erasure, audit AuditEntry, r Retention) error
}

// Export is a data subject's complete export (GDPR Art. 15 and 20).
type Export struct {
	Site      string
	VisitorID string
	ChatID    string
	Profile   *Profile
	Sessions  []SessionData
	Choice    *Choice
	Consents  []ConsentRecord
	Chats     []ChatExport
}

// ChatExport is one chat in an export, contacts opened.
type ChatExport struct {
	ID        string
	Start     time.Time
	SessionID string
	URL       string
	Contact   Contact
	Marketing bool
	Previous  []string
	// Device, Location and Referrer are the session's at the chat's start.
	Device   Device
	Location Location
	Referrer string
}

// visitorData reads a visitor's data; an erased visitor is ErrNotFound: what the
// erasure left points at no one.
func (s *Service) visitorData(ctx context.Context, site *Site, visitorID string) (VisitorData, error) {
	d, err := s.privacy.VisitorData(ctx, site, s.hasher.VisitorKey(site.ID, visitorID))
	if errors.Is(err, ErrErased) {
		return VisitorData{}, Errorf(ENotFound, "the visitor was erased")
	}
	return d, err
}

func (s *Service) visitorSubject(site *Site, visitorID string) error {
	if !ValidVisitorID(visitorID) {
		return Errorf(ENotFound, "no visitor %q", truncateUTF8(visitorID, 40))
	}
	return nil
}

// SearchSubjects returns the visitor ids and identity-less chats behind an e-mail.
func (s *Service) SearchSubjects(ctx context.Context, a Actor, email string) ([]string, []string, error) {
	email = NormalizeEmail(email)
	if email == "" || len(email) > MaxEmailBytes {
		return nil, nil, Errorf(EInvalid, "email is required")
	}
	visitors, chats, err := s.privacy.SearchEmail(ctx, a.Site, s.hasher.Short(a.Site.ID, PurposeEmail, email), utc(s.now()))
	if err != nil {
		return nil, nil, fmt.Errorf("search subjects of %s: %w", a.Site.ID, err)
	}
	found := []subject{{"email", email}}
	for _, v := range visitors {
		found = append(found, subject{"visitor", v})
	}
	for _, c := range chats {
		found = append(found, subject{"chat", c})
	}
	if err := s.auditRead(ctx, a.Site, a.KeyID, "subject.search", found...); err != nil {
		return nil, nil, err
	}
	return visitors, chats, nil
}

// ExportVisitor returns all that is stored of a visitor, contacts decrypted;
// ErrNotFound when nothing is. The export is audited under the visitor and
// each of its chats.
func (s *Service) ExportVisitor(ctx context.Context, a Actor, visitorID string) (Export, error) {
	return s.exportVisitor(ctx, a, visitorID, true)
}

// exportVisitor is ExportVisitor; audited says whether the export is a read of
// its own (a rectification answers with the export it wrote, which nobody
// asked to read).
func (s *Service) exportVisitor(ctx context.Context, a Actor, visitorID string, audited bool) (Export, error) {
	if err := s.visitorSubject(a.Site, visitorID); err != nil {
		return Export{}, err
	}
	d, err := s.visitorData(ctx, a.Site, visitorID)
	if err != nil {
		return Export{}, fmt.Errorf("export visitor of %s: %w", a.Site.ID, err)
	}
	if d.Empty() {
		return Export{}, Errorf(ENotFound, "nothing is stored of this visitor")
	}
	if audited {
		revealed := []subject{{"visitor", visitorID}}
		for _, c := range d.Chats {
			revealed = append(revealed, subject{"chat", c.ID})
		}
		if err := s.auditRead(ctx, a.Site, a.KeyID, "subject.export", revealed...); err != nil {
			return Export{}, err
		}
	}
	e := Export{Site: a.Site.ID, VisitorID: visitorID, Profile: d.Profile, Sessions: d.Sessions, Choice: d.Choice, Consents: d.Consents}
	for _, c := range d.Chats {
		ce, err := s.chatExport(a.Site, c)
		if err != nil {
			return Export{}, err
		}
		e.Chats = append(e.Chats, ce)
	}
	return e, nil
}

func (s *Service) chatExport(site *Site, c StoredChat) (ChatExport, error) {
	contact, err := s.openContact(site.ID, c)
	if err != nil {
		return ChatExport{}, err
	}
	return ChatExport{ID: c.ID, Start: c.Start, SessionID: c.SessionID, URL: c.URL, Contact: contact,
		Marketing: c.Marketing, Previous: c.Previous, Device: c.Device, Location: c.Location, Referrer: c.Referrer}, nil
}

// ExportChat exports one chat as a subject of its own, audited under the chat
// and the visitor behind it, if any.
func (s *Service) ExportChat(ctx context.Context, a Actor, chatID string) (Export, error) {
	if !ValidChatID(chatID) {
		return Export{}, Errorf(ENotFound, "no chat %q", truncateUTF8(chatID, 40))
	}
	c, err := s.chat(ctx, a.Site, chatID)
	if err != nil {
		return Export{}, fmt.Errorf("export chat of %s: %w", a.Site.ID, err)
	}
	consents, err := s.privacy.ChatConsents(ctx, a.Site, chatID)
	if err != nil {
		return Export{}, fmt.Errorf("export chat of %s: %w", a.Site.ID, err)
	}
	if err := s.auditRead(ctx, a.Site, a.KeyID, "chat.export", subject{"chat", chatID}, subject{"visitor", c.VisitorID}); err != nil {
		return Export{}, err
	}
	ce, err := s.chatExport(a.Site, c)
	if err != nil {
		return Export{}, err
	}
	return Export{Site: a.Site.ID, ChatID: chatID, Consents: consents, Chats: []ChatExport{ce}}, nil
}

// RectifyVisitor rewrites the contact details of every chat of a visitor, and
// the blind index with them; a subject.rectified webhook follows. Audited.
func (s *Service) RectifyVisitor(ctx context.Context, a Actor, visitorID string, ch ContactChange) (Export, error) {
	if err := s.visitorSubject(a.Site, visitorID); err != nil {
		return Export{}, err
	}
	vkey := s.hasher.VisitorKey(a.Site.ID, visitorID)
	d, err := s.visitorData(ctx, a.Site, visitorID)
	if err != nil {
		return Export{}, fmt.Errorf("rectify visitor of %s: %w", a.Site.ID, err)
	}
	if len(d.Chats) == 0 {
		return Export{}, Errorf(ENotFound, "the visitor has no contact details to rectify")
	}
	if err := s.rectify(ctx, a, "v:"+visitorID, vkey, d.Chats, ch); err != nil {
		return Export{}, err
	}
	if err := s.audit(ctx, a.Site, a.KeyID, "subject.rectify", "visitor", visitorID); err != nil {
		return Export{}, err
	}
	return s.exportVisitor(ctx, a, visitorID, false)
}

func (s *Service) rectify(ctx context.Context, a Actor, member, vkey string, chats []StoredChat, ch ContactChange) error {
	site := a.Site
	if ch.Name == nil && ch.Email == nil && ch.Phone == nil {
		return Errorf(EInvalid, "contact needs at least one of name, email, phone")
	}
	probe := Contact{}
	if ch.Name != nil {
		probe.Name = *ch.Name
	}
	if ch.Email != nil {
		probe.Email = *ch.Email
	}
	if ch.Phone != nil {
		probe.Phone = *ch.Phone
	}
	probe = probe.Clean()
	if err := probe.Validate(); err != nil {
		return err
	}
	r := Rectification{Member: member, VisitorKey: vkey}
	var ids []string
	for _, c := range chats {
		f := map[string]string{}
		if ch.Name != nil {
			f["name"] = s.sealer.Seal(site.ID, "name", c.ID, probe.Name)
		}
		if ch.Email != nil {
			f["email"] = s.sealer.Seal(site.ID, "email", c.ID, probe.Email)
		}
		if ch.Phone != nil {
			f["phone"] = s.sealer.Seal(site.ID, "phone", c.ID, probe.Phone)
		}
		r.Chats = append(r.Chats, RectifiedChat{ChatID: c.ID, Fields: f})
		ids = append(ids, c.ID)
		if until := c.Start.Add(time.Duration(s.Retention(site).Chats) * 24 * time.Hour); until.After(r.IndexUntil) {
			r.IndexUntil = until
		}
	}
	if ch.Email != nil && probe.Email != "" {
		r.NewIndex = s.hasher.Short(site.ID, PurposeEmail, NormalizeEmail(probe.Email))
	}
	if err := s.privacy.Rectify(ctx, site, r); err != nil {
		return fmt.Errorf("rectify on %s: %w", site.ID, err)
	}
	// The new contact details are kept with the subject: its erasure drops them.
	return s.notify(ctx, site, EventSubjectRectified, ids, &ContactBody{Name: probe.Name, Email: probe.Email, Phone: probe.Phone},
		vkey)
}

// EraseVisitor erases everything of a visitor: tombstone first, so the browser's
// token is foreign from then on, then index entries, then the keys; consent
// records are cut to their proof. A subject.erased webhook follows. Audited.
func (s *Service) EraseVisitor(ctx context.Context, a Actor, visitorID string) error {
	if err := s.visitorSubject(a.Site, visitorID); err != nil {
		return err
	}
	vkey := s.hasher.VisitorKey(a.Site.ID, visitorID)
	d, err := s.visitorData(ctx, a.Site, visitorID)
	if err != nil {
		return fmt.Errorf("erase visitor of %s: %w", a.Site.ID, err)
	}
	ids := make([]string, 0, len(d.Chats))
	for _, c := range d.Chats {
		ids = append(ids, c.ID)
	}
	e := Erasure{VisitorKey: vkey, VisitorID: visitorID, Subject: s.AuditTarget(a.Site.ID, "visitor", visitorID),
		Owed: &ErasureOwed{Actor: a.KeyID, ChatIDs: ids}}
	if err := s.privacy.Erase(ctx, a.Site, e); err != nil {
		return fmt.Errorf("erase visitor of %s: %w", a.Site.ID, err)
	}
	return s.settleErasure(ctx, a.Site, e)
}

// settleErasure pays what an erasure owes: it queues its subject.erased
// delivery, then writes its audit entry and drops what it owed in one store
// call; an erasure interrupted before that is settled by the sweeper. The
// delivery's id derives from the erasure, so queueing it again (a sweep after a
// failure past the queue) leaves one delivery, and the receiver can tell a
// repeat by its id.
func (s *Service) settleErasure(ctx context.Context, site *Site, e Erasure) error {
	if e.Owed == nil {
		return nil
	}
	if site.Webhook.URL != "" && len(e.Owed.ChatIDs) > 0 {
		now := utc(s.now())
		d, err := s.sealAs(site, s.hasher.Short(site.ID, PurposeAudit, "erased:"+e.Subject), EventSubjectErased,
			SubjectBody{Event: EventSubjectErased, Site: site.ID, Time: now, ChatIDs: e.Owed.ChatIDs})
		if err != nil {
			return err
		}
		if err := s.webhooks.Enqueue(ctx, site, d, now); err != nil {
			return fmt.Errorf("%s webhook: %w", EventSubjectErased, err)
		}
	}
	action, sj := "subject.erase", subject{"visitor", e.VisitorID}
	if e.ChatID != "" {
		action, sj = "chat.erase", subject{"chat", e.ChatID}
	}
	if err := s.privacy.SettleErasure(ctx, site, e, s.auditEntry(site, e.Owed.Actor, action, sj), s.Retention(site)); err != nil {
		return fmt.Errorf("audit %s: %w", action, err)
	}
	return nil
}

// EraseChat erases one chat: a chat without identity is a subject of its own.
func (s *Service) EraseChat(ctx context.Context, a Actor, chatID string) error {
	if !ValidChatID(chatID) {
		return Errorf(ENotFound, "no chat %q", truncateUTF8(chatID, 40))
	}
	c, err := s.chat(ctx, a.Site, chatID)
	if err != nil {
		return fmt.Errorf("erase chat of %s: %w", a.Site.ID, err)
	}
	if c.VisitorKey != "" {
		// The visitor's other chats still hear of a pending rectification.
		if err := s.requeueWithout(ctx, a.Site, c.VisitorKey, chatID); err != nil {
			return fmt.Errorf("erase chat of %s: %w", a.Site.ID, err)
		}
	}
	e := Erasure{ChatID: chatID, Subject: s.AuditTarget(a.Site.ID, "chat", chatID),
		Owed: &ErasureOwed{Actor: a.KeyID, ChatIDs: []string{chatID}}}
	if err := s.privacy.Erase(ctx, a.Site, e); err != nil {
		return fmt.Errorf("erase chat of %s: %w", a.Site.ID, err)
	}
	return s.settleErasure(ctx, a.Site, e)
}

// SweepErasures finishes erasures that were interrupted, and writes the audit
// entry and queues the subject.erased delivery each still owes; it returns how
// many.
func (s *Service) SweepErasures(ctx context.Context) (int, error) {
	n := 0
	for _, site := range s.sites.All() {
		pending, err := s.privacy.PendingErasures(ctx, site)
		if err != nil {
			return n, fmt.Errorf("sweep erasures of %s: %w", site.ID, err)
		}
		for _, e := range pending {
			// The erasure is finished without owing anew: what it owes stays
			// where the request left it, so it is audited once.
			bare := e
			bare.Owed = nil
			if err := s.privacy.Erase(ctx, site, bare); err != nil {
				return n, fmt.Errorf("sweep erasures of %s: %w", site.ID, err)
			}
			if err := s.settleErasure(ctx, site, e); err != nil {
				return n, fmt.Errorf("sweep erasures of %s: %w", site.ID, err)
			}
			n++
		}
	}
	return n, nil
}

// Self-service: the visitor's own export and erasure, proved by the token.

// errNoIdentity answers a visitor's own request without a valid identity
// token of a visitor still stored.
var errNoIdentity = &Error{Code: EUnauthorized, Message: "a valid identity token is required"}

// visitorOf returns the visitor id of a valid identity token, else ErrUnauthorized.
func (s *Service) visitorOf(site *Site, token string) (string, error) {
	tok, ok := s.verify(token, site, utc(s.now()))
	if !ok || tok.Kind != KindID {
		return "", errNoIdentity
	}
	return tok.VisitorID, nil
}

// ExportMine is the visitor's own export: contact details masked (the full
// export goes through the privacy team). Audited with the actor "visitor".
func (s *Service) ExportMine(ctx context.Context, site *Site, token string) (Export, error) {
	id, err := s.visitorOf(site, token)
	if err != nil {
		return Export{}, err
	}
	e, err := s.ExportVisitor(ctx, Actor{Site: site, KeyID: "visitor", Role: RolePrivacy}, id)
	if err != nil {
		return Export{}, foreignIfErased(err)
	}
	for i := range e.Chats {
		c := &e.Chats[i].Contact
		c.Name, c.Email, c.Phone = MaskName(c.Name), MaskEmail(c.Email), MaskPhone(c.Phone)
	}
	for i := range e.Consents {
		e.Consents[i].IP, e.Consents[i].UserAgent = "", ""
	}
	for i := range e.Sessions {
		e.Sessions[i].IP = ""
	}
	return e, nil
}

// EraseMine is the visitor's own erasure; an erased visitor's token is
// refused as foreign (unauthorized), as ExportMine refuses it.
func (s *Service) EraseMine(ctx context.Context, site *Site, token string) error {
	id, err := s.visitorOf(site, token)
	if err != nil {
		return err
	}
	return foreignIfErased(s.EraseVisitor(ctx, Actor{Site: site, KeyID: "visitor", Role: RolePrivacy}, id))
}

// foreignIfErased answers the visitor's own request as visitorOf answers a
// foreign token when the visitor behind a valid one was erased (not found):
// an erased visitor's token is foreign from then on.
func foreignIfErased(err error) error {
	if errors.Is(err, ErrNotFound) {
		return errNoIdentity
	}
	return err
}

// MaskEmail keeps the first letter of the local part and of the domain:
// ada@math.example → a***@m***.example.
func MaskEmail(email string) string {
	local, domain, ok := strings.Cut(email, "@")
	if !ok || local == "" || domain == "" {
		return mask(email)
	}
	host, tld := domain, ""
	if i := strings.LastIndexByte(domain, '.'); i > 0 {
		host, tld = domain[:i], domain[i:]
	}
	return mask(local) + "@" + mask(host) + tld
}

// MaskName keeps the first letter of each word.
func MaskName(name string) string {
	words := strings.Fields(name)
	for i, w := range words {
		words[i] = mask(w)
	}
	return strings.Join(words, " ")
}

// MaskPhone keeps the last two digits.
func MaskPhone(phone string) string {
	if len(phone) <= 2 {
		return strings.Repeat("*", len(phone))
	}
	return strings.Repeat("*", len(phone)-2) + phone[len(phone)-2:]
}

func mask(s string) string {
	if s == "" {
		return ""
	}
	r := []rune(s)
	return string(r[0]) + "***"
}

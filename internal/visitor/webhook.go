package visitor

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Webhook events: the one place their names and bodies are declared. Each body
// is described in api/openapi.yaml (components/schemas, webhooks); a contract
// test holds the two together.
const (
	// EventChatStarted announces a new chat and the contact details given.
	EventChatStarted = "chat.started"
	// EventSubjectRectified announces new contact details of a subject's chats.
	EventSubjectRectified = "subject.rectified"
	// EventSubjectErased announces the erasure of a subject; it carries ids only.
	EventSubjectErased = "subject.erased"
	// EventMarketingWithdrawn announces that the visitor behind chats withdrew
	// their marketing consent; it carries ids only.
	EventMarketingWithdrawn = "marketing.withdrawn"
)

// WebhookEvents lists every webhook event.
var WebhookEvents = []string{EventChatStarted, EventSubjectRectified, EventSubjectErased, EventMarketingWithdrawn}

// ChatStartedBody is the JSON body of a chat.started delivery.
type ChatStartedBody struct {
	Event          string    `json:"event"`
	Site           string    `json:"site"`
	ChatID         string    `json:"chat_id"`
	Time           time.Time `json:"time"`
	Name           string    `json:"name,omitempty"`
	Email          string    `json:"email,omitempty"`
	Phone          string    `json:"phone,omitempty"`
	MarketingOptIn bool      `json:"marketing_opt_in"`
	URL            string    `json:"url,omitempty"`
	Returning      bool      `json:"returning"`
	PreviousChats  int       `json:"previous_chats"`
}

// SubjectBody is the JSON body of subject.rectified, subject.erased and
// marketing.withdrawn deliveries: the chats the receiver knows from
// chat.started and, for subject.rectified only, the new contact details.
type SubjectBody struct {
	Event   string       `json:"event"`
	Site    string       `json:"site"`
	Time    time.Time    `json:"time"`
	ChatIDs []string     `json:"chat_ids"`
	Contact *ContactBody `json:"contact,omitempty"`
}

// ContactBody is the contact of a subject.rectified body: the fields changed.
type ContactBody struct {
	Name  string `json:"name,omitempty"`
	Email string `json:"email,omitempty"`
	Phone string `json:"phone,omitempty"`
}

// WebhookStore is what the Service needs of its storage to queue webhook
// deliveries. Its methods return ErrStoreUnavailable (wrapped) when the store
// cannot be reached in time.
type WebhookStore interface {
	// Enqueue queues a sealed webhook delivery; one naming a subject
	// (Delivery.VisitorKey or ChatID) is kept with it, so its erasure drops it.
	Enqueue(ctx context.Context, site *Site, d Delivery, now time.Time) error
	// QueuedContacts returns the queued deliveries kept with a visitor (those
	// carrying contact details), sealed.
	QueuedContacts(ctx context.Context, site *Site, visitorKey string) ([]Delivery, error)
	// OwedWithdrawals returns the chats of a visitor whose marketing.withdrawn
	// a withdrawal wrote and was not queued (SaveConsent returns them too).
	OwedWithdrawals(ctx context.Context, site *Site, visitorKey string) ([]string, error)
	// SettleWithdrawals records that the marketing.withdrawn of chatIDs is queued.
	SettleWithdrawals(ctx context.Context, site *Site, visitorKey string, chatIDs []string) error
}

// Delivery is a queued, sealed webhook delivery.
type Delivery struct {
	ID     string
	Event  string
	Sealed string
	// VisitorKey names the visitor whose contact details the body carries: the
	// store keeps the delivery with that visitor, so an erasure drops it. Empty
	// for a body of ids only, which outlives an erasure. (A chat.started
	// delivery is kept with its chat: ChatWrite.Webhook.)
	VisitorKey string
	// ChatIDs are the chats a body with contact details names: erasing one of
	// them drops the delivery with it.
	ChatIDs []string
}

// seal turns a webhook body into a sealed delivery of event.
func (s *Service) seal(site *Site, event string, body any) (Delivery, error) {
	return s.sealAs(site, NewChatID(), event, body)
}

// sealAs seals body as the delivery of event named id.
func (s *Service) sealAs(site *Site, id, event string, body any) (Delivery, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return Delivery{}, fmt.Errorf("%s webhook: %w", event, err)
	}
	return Delivery{ID: id, Event: event, Sealed: s.sealer.Seal(site.ID, "webhook", id, string(b))}, nil
}

// notify queues a subject event about chatIDs for the site's webhook, if it has
// one and there are chats the receiver knows. A body with contact details is
// kept with the visitor of visitorKey (see Delivery).
func (s *Service) notify(ctx context.Context, site *Site, event string, chatIDs []string, contact *ContactBody, visitorKey string) error {
	if site.Webhook.URL == "" || len(chatIDs) == 0 {
		return nil
	}
	now := utc(s.now())
	d, err := s.seal(site, event, SubjectBody{Event: event, Site: site.ID, Time: now, ChatIDs: chatIDs, Contact: contact})
	if err != nil {
		return err
	}
	if contact != nil {
		d.VisitorKey, d.ChatIDs = visitorKey, chatIDs
	}
	if err := s.webhooks.Enqueue(ctx, site, d, now); err != nil {
		return fmt.Errorf("%s webhook: %w", event, err)
	}
	return nil
}

// notifyWithdrawn queues marketing.withdrawn for the chats whose marketing
// permission a consent write withdrew (the store keeps them owed until then),
// and settles them. The delivery's id derives from the visitor and the chats,
// so one queued again after a failure to settle is one delivery.
func (s *Service) notifyWithdrawn(ctx context.Context, site *Site, visitorKey string, chatIDs []string) error {
	if len(chatIDs) == 0 {
		return nil
	}
	if site.Webhook.URL != "" {
		now := utc(s.now())
		id := s.hasher.Short(site.ID, PurposeAudit, "withdrawn:"+visitorKey+":"+strings.Join(chatIDs, ","))
		d, err := s.sealAs(site, id, EventMarketingWithdrawn,
			SubjectBody{Event: EventMarketingWithdrawn, Site: site.ID, Time: now, ChatIDs: chatIDs})
		if err != nil {
			return err
		}
		if err := s.webhooks.Enqueue(ctx, site, d, now); err != nil {
			return fmt.Errorf("%s webhook: %w", EventMarketingWithdrawn, err)
		}
	}
	if err := s.webhooks.SettleWithdrawals(ctx, site, visitorKey, chatIDs); err != nil {
		return fmt.Errorf("%s webhook: %w", EventMarketingWithdrawn, err)
	}
	return nil
}

// payWithdrawals queues the marketing.withdrawn that a visitor's earlier
// withdrawal wrote and could not queue.
func (s *Service) payWithdrawals(ctx context.Context, site *Site, visitorID string) error {
	vkey := s.hasher.VisitorKey(site.ID, visitorID)
	owed, err := s.webhooks.OwedWithdrawals(ctx, site, vkey)
	if err != nil {
		return fmt.Errorf("%s webhook: %w", EventMarketingWithdrawn, err)
	}
	return s.notifyWithdrawn(ctx, site, vkey, owed)
}

// requeueWithout replaces the visitor's queued deliveries with contact details
// that name chatID, about to be erased, by ones naming the visitor's other
// chats only; the erasure then drops those naming chatID (invariant 6). A
// delivery that cannot be opened is left to the erasure and the dispatcher.
func (s *Service) requeueWithout(ctx context.Context, site *Site, visitorKey, chatID string) error {
	queued, err := s.webhooks.QueuedContacts(ctx, site, visitorKey)
	if err != nil {
		return fmt.Errorf("queued webhooks: %w", err)
	}
	for _, d := range queued {
		plain, err := s.sealer.Open(site.ID, "webhook", d.ID, d.Sealed)
		if err != nil {
			continue
		}
		var body SubjectBody
		if err := json.Unmarshal([]byte(plain), &body); err != nil {
			continue
		}
		rest := make([]string, 0, len(body.ChatIDs))
		for _, id := range body.ChatIDs {
			if id != chatID {
				rest = append(rest, id)
			}
		}
		if len(rest) == len(body.ChatIDs) || len(rest) == 0 {
			continue
		}
		if err := s.notify(ctx, site, body.Event, rest, body.Contact, visitorKey); err != nil {
			return err
		}
	}
	return nil
}

package visitor_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/visitord/visitord/internal/device"
	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/visitor"
)

// errInjected is the failure failingStore injects.
var errInjected = errors.New("injected store failure")

// failingStore is the real store with calls that fail a given number of times
// before they reach Redis: a write lost between two steps of a request.
type failingStore struct {
	*redisstore.Store
	enqueueFails, settleFails, settleWithdrawalsFails int
}

func (f *failingStore) SettleWithdrawals(ctx context.Context, site *visitor.Site, vkey string, chatIDs []string) error {
	if f.settleWithdrawalsFails > 0 {
		f.settleWithdrawalsFails--
		return errInjected
	}
	return f.Store.SettleWithdrawals(ctx, site, vkey, chatIDs)
}

func (f *failingStore) Enqueue(ctx context.Context, site *visitor.Site, d visitor.Delivery, now time.Time) error {
	if f.enqueueFails > 0 {
		f.enqueueFails--
		return errInjected
	}
	return f.Store.Enqueue(ctx, site, d, now)
}

func (f *failingStore) SettleErasure(ctx context.Context, site *visitor.Site, e visitor.Erasure, a visitor.AuditEntry, r visitor.Retention) error {
	if f.settleFails > 0 {
		f.settleFails--
		return errInjected
	}
	return f.Store.SettleErasure(ctx, site, e, a, r)
}

// failingService is a Service over d's store wrapped in f, with d's clock and keys.
func failingService(t *testing.T, d *consentDomain, site *visitor.Site, f *failingStore) *visitor.Service {
	t.Helper()
	set, err := visitor.NewSites([]*visitor.Site{site})
	if err != nil {
		t.Fatal(err)
	}
	f.Store = d.store
	return visitor.NewService(visitor.Deps{Sites: set, Store: f, Signer: d.signer, Hasher: d.hasher, Sealer: d.sealer, Devices: device.NewParser(64)}, visitor.WithClock(d.clock.Now))
}

// An erasure whose audit entry or subject.erased delivery could not be written
// answers an error, and a retry finds the tombstone (not found): the sweeper
// then writes the entry and queues the delivery, each once, however often it
// runs.
func TestInterruptedErasureIsAuditedAndAnnouncedOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		chat  bool // erase the chat alone, not the visitor
		store failingStore
	}{
		{name: "visitor, delivery refused", store: failingStore{enqueueFails: 1}},
		{name: "visitor, audit entry refused", store: failingStore{settleFails: 1}},
		{name: "visitor, both refused twice", store: failingStore{enqueueFails: 1, settleFails: 2}},
		{name: "chat, delivery refused", chat: true, store: failingStore{enqueueFails: 1}},
		{name: "chat, audit entry refused", chat: true, store: failingStore{settleFails: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := crmSite(visitor.ConsentOptIn)
			d := newConsentDomain(t, site)
			ctx := context.Background()
			token := d.grant("shop", false)
			id := d.idOf("shop", token)
			res, err := d.svc.StartChat(ctx, visitor.ChatRequest{Site: site, Token: token,
				Contact: visitor.Contact{Name: "Ada", Email: "ada@math.example"}, URL: consentOrigin + "/", UserAgent: consentUA, IP: domainIP})
			if err != nil {
				t.Fatal(err)
			}
			d.queuedBodies("shop") // chat.started
			d.clock.Advance(time.Minute)

			f := tc.store
			svc := failingService(t, d, site, &f)
			erase := func() error { return svc.EraseVisitor(ctx, d.privacy("shop"), id) }
			action, target := "subject.erase", svc.AuditTarget("shop", "visitor", id)
			if tc.chat {
				erase = func() error { return svc.EraseChat(ctx, d.privacy("shop"), res.ChatID) }
				action, target = "chat.erase", svc.AuditTarget("shop", "chat", res.ChatID)
			}
			if err := erase(); !errors.Is(err, errInjected) {
				t.Fatalf("erasure with a refused write = %v, want the injected failure", err)
			}
			if err := erase(); !errors.Is(err, visitor.ErrNotFound) {
				t.Fatalf("retried erasure = %v, want not found (the subject is gone)", err)
			}
			sweeps := 0
			for range 3 {
				n, err := svc.SweepErasures(ctx)
				if err != nil && !errors.Is(err, errInjected) {
					t.Fatal(err)
				}
				sweeps += n
			}
			if sweeps != 1 {
				t.Errorf("sweeps settled %d erasures, want 1", sweeps)
			}
			if got := d.auditCount("shop", action, target); got != 1 {
				t.Errorf("%d %s audit entries, want 1", got, action)
			}
			erased := d.queuedEvents("shop", "subject.erased")
			if len(erased) != 1 || !strings.Contains(erased[0], res.ChatID) {
				t.Errorf("queued subject.erased %q, want one naming chat %s", erased, res.ChatID)
			}
			if n, err := svc.SweepErasures(ctx); n != 0 || err != nil {
				t.Errorf("sweep after settling = %d, %v; want nothing left", n, err)
			}
			d.assertNoValue("ada@math.example")
		})
	}
}

// A withdrawal of marketing whose marketing.withdrawn could not be queued (or
// whose queueing could not be recorded) answers an error; the retry finds no
// chat left to withdraw, yet queues the event the first attempt owed, once.
func TestRetriedWithdrawalQueuesOwedEventOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		store failingStore
	}{
		{name: "delivery refused", store: failingStore{enqueueFails: 1}},
		{name: "settling refused", store: failingStore{settleWithdrawalsFails: 1}},
		{name: "delivery then settling refused", store: failingStore{enqueueFails: 1, settleWithdrawalsFails: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := crmSite(visitor.ConsentOptIn)
			d := newConsentDomain(t, site)
			ctx := context.Background()
			token := d.grant("shop", false)
			id := d.idOf("shop", token)
			res, err := d.svc.StartChat(ctx, visitor.ChatRequest{Site: site, Token: token, MarketingOptIn: true,
				Contact: visitor.Contact{Name: "Ada", Email: "ada@math.example"}, URL: consentOrigin + "/", UserAgent: consentUA, IP: domainIP})
			if err != nil {
				t.Fatal(err)
			}
			d.queuedBodies("shop") // chat.started

			f := tc.store
			svc := failingService(t, d, site, &f)
			withdraw := func() error {
				d.clock.Advance(time.Second)
				_, err := svc.SetConsent(ctx, visitor.ConsentRequest{Site: site, Analytics: true, Marketing: false,
					PolicyVersion: domainPolicy, Method: visitor.MethodAPI, Token: token, UserAgent: consentUA, IP: domainIP})
				return err
			}
			if err := withdraw(); !errors.Is(err, errInjected) {
				t.Fatalf("withdrawal with a refused write = %v, want the injected failure", err)
			}
			for _, c := range d.data("shop", id).Chats {
				if c.Marketing {
					t.Fatalf("chat %s still has marketing after the withdrawal was written", c.ID)
				}
			}
			var errs []error
			for range 3 {
				errs = append(errs, withdraw())
			}
			if errs[len(errs)-1] != nil {
				t.Fatalf("retried withdrawals = %v, want the last to succeed", errs)
			}
			withdrawn := d.queuedEvents("shop", "marketing.withdrawn")
			if len(withdrawn) != 1 || !strings.Contains(withdrawn[0], res.ChatID) {
				t.Errorf("queued marketing.withdrawn %q, want one naming chat %s", withdrawn, res.ChatID)
			}
			if err := withdraw(); err != nil {
				t.Fatal(err)
			}
			if got := d.queuedBodies("shop"); len(got) != 0 {
				t.Errorf("a repeated withdrawal once settled queued %q, want nothing", got)
			}
		})
	}
}

// Each change a site's CRM must hear of queues one event, sealed, with the body
// declared in package visitor; a site without a webhook queues none.
func TestWebhookEvents(t *testing.T) {
	t.Parallel()
	newEmail := "ada@new.example"
	type subject struct {
		token, visitorID, chatID string
	}
	for _, tt := range []struct {
		name    string
		webhook bool
		chat    bool // the visitor started a chat, opting in to marketing
		act     func(*testing.T, *consentDomain, subject)
		event   string // "" for none
		contact *visitor.ContactBody
	}{
		{name: "chat start", webhook: true, act: func(t *testing.T, d *consentDomain, s subject) {
			if _, err := d.svc.StartChat(context.Background(), visitor.ChatRequest{Site: d.sites["shop"], Contact: visitor.Contact{Name: "Ada"},
				Token: s.token, UserAgent: consentUA, IP: domainIP}); err != nil {
				t.Fatal(err)
			}
		}, event: visitor.EventChatStarted},
		{name: "rectification", webhook: true, chat: true, act: func(t *testing.T, d *consentDomain, s subject) {
			if _, err := d.svc.RectifyVisitor(context.Background(), d.privacy("shop"), s.visitorID, visitor.ContactChange{Email: &newEmail}); err != nil {
				t.Fatal(err)
			}
		}, event: visitor.EventSubjectRectified, contact: &visitor.ContactBody{Email: newEmail}},
		{name: "erasure", webhook: true, chat: true, act: func(t *testing.T, d *consentDomain, s subject) {
			if err := d.svc.EraseVisitor(context.Background(), d.privacy("shop"), s.visitorID); err != nil {
				t.Fatal(err)
			}
		}, event: visitor.EventSubjectErased},
		{name: "erasure of a visitor without chats", webhook: true, act: func(t *testing.T, d *consentDomain, s subject) {
			if err := d.svc.EraseVisitor(context.Background(), d.privacy("shop"), s.visitorID); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "marketing withdrawal", webhook: true, chat: true, act: func(t *testing.T, d *consentDomain, s subject) {
			if _, err := d.svc.SetConsent(context.Background(), visitor.ConsentRequest{Site: d.sites["shop"], Analytics: true,
				PolicyVersion: domainPolicy, Method: visitor.MethodAPI, Token: s.token, UserAgent: consentUA, IP: domainIP}); err != nil {
				t.Fatal(err)
			}
		}, event: visitor.EventMarketingWithdrawn},
		{name: "chat start without a webhook", act: func(t *testing.T, d *consentDomain, s subject) {
			if _, err := d.svc.StartChat(context.Background(), visitor.ChatRequest{Site: d.sites["shop"], Contact: visitor.Contact{Name: "Ada"},
				Token: s.token, UserAgent: consentUA, IP: domainIP}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			site := consentSite("shop", visitor.ConsentOptIn, visitor.IPTruncate)
			if tt.webhook {
				site = crmSite(visitor.ConsentOptIn)
			}
			d := newConsentDomain(t, site)
			tok := d.track("shop", d.grant("shop", false), "/pricing", "Pricing")
			s := subject{token: tok, visitorID: d.idOf("shop", tok)}
			if tt.chat {
				res, err := d.svc.StartChat(context.Background(), visitor.ChatRequest{Site: site, Contact: visitor.Contact{Name: "Ada", Email: "ada@example.org"},
					MarketingOptIn: true, Token: tok, UserAgent: consentUA, IP: domainIP})
				if err != nil {
					t.Fatal(err)
				}
				s.chatID = res.ChatID
				d.queuedBodies("shop") // the chat.started of the set-up
			}
			tt.act(t, d, s)
			bodies := d.queuedBodies("shop")
			if tt.event == "" {
				if len(bodies) != 0 {
					t.Errorf("queued %v, want nothing", bodies)
				}
				return
			}
			if len(bodies) != 1 {
				t.Fatalf("queued %d deliveries, want one %s: %v", len(bodies), tt.event, bodies)
			}
			if tt.event == visitor.EventChatStarted {
				var b visitor.ChatStartedBody
				if err := json.Unmarshal([]byte(bodies[0]), &b); err != nil {
					t.Fatal(err)
				}
				if b.Event != tt.event || b.Site != "shop" || b.ChatID == "" || b.Name != "Ada" || !b.Time.Equal(d.clock.Now()) {
					t.Errorf("body = %+v", b)
				}
				return
			}
			var b visitor.SubjectBody
			if err := json.Unmarshal([]byte(bodies[0]), &b); err != nil {
				t.Fatal(err)
			}
			if b.Event != tt.event || b.Site != "shop" || !slices.Equal(b.ChatIDs, []string{s.chatID}) || !b.Time.Equal(d.clock.Now()) {
				t.Errorf("body = %+v; want %s naming chat %s", b, tt.event, s.chatID)
			}
			if (b.Contact == nil) != (tt.contact == nil) || b.Contact != nil && *b.Contact != *tt.contact {
				t.Errorf("contact = %+v, want %+v", b.Contact, tt.contact)
			}
		})
	}
}

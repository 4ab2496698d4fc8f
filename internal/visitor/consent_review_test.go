package visitor_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/visitor"
)

// queuedBodies claims and removes every delivery due on site and returns their bodies.
func (d *consentDomain) queuedBodies(site string) []string {
	d.t.Helper()
	ctx := context.Background()
	queue := redisstore.NewWebhookQueue(d.store, d.sealer)
	due, err := queue.Due(ctx, site, d.clock.Now(), 100, time.Minute)
	if err != nil {
		d.t.Fatal(err)
	}
	var bodies []string
	for _, w := range due {
		if w.Err != nil {
			d.t.Fatalf("delivery %s: %v", w.ID, w.Err)
		}
		bodies = append(bodies, string(w.Body))
		if err := queue.Done(ctx, w); err != nil {
			d.t.Fatal(err)
		}
	}
	return bodies
}

// queuedEvents is queuedBodies of the deliveries of event alone (the others
// are taken off the queue too).
func (d *consentDomain) queuedEvents(site, event string) []string {
	d.t.Helper()
	var out []string
	for _, b := range d.queuedBodies(site) {
		if strings.Contains(b, `"event":"`+event+`"`) {
			out = append(out, b)
		}
	}
	return out
}

// crmSite is site shop in consent mode mode, sending its events to a CRM.
func crmSite(mode visitor.ConsentMode) *visitor.Site {
	site := consentSite("shop", mode, visitor.IPTruncate)
	site.Webhook = visitor.Webhook{URL: "https://crm.shop.example/hooks", Secret: bytes.Repeat([]byte("w"), 32)}
	return site
}

// The consent banner asks analytics only (invariant 2: a purpose not asked is
// absent). Its answer, accept or refuse, must neither record a marketing
// refusal nor withdraw the marketing opt-in the visitor gave when starting a
// chat: only marketing false does.
func TestBannerAnswerLeavesChatMarketing(t *testing.T) {
	site := crmSite(visitor.ConsentOptIn)
	site.Retention.Chats = 365
	d := newConsentDomain(t, site)
	ctx := context.Background()
	token := d.grant("shop", false)
	id := d.idOf("shop", token)
	chat, err := d.svc.StartChat(ctx, visitor.ChatRequest{Site: site, Token: token, MarketingOptIn: true,
		Contact: visitor.Contact{Name: "Ada", Email: "ada@math.example"}, URL: consentOrigin + "/pricing", UserAgent: consentUA, IP: domainIP})
	if err != nil {
		t.Fatal(err)
	}
	d.queuedBodies("shop") // chat.started
	op := visitor.Actor{Site: site, KeyID: "agent-1", Role: visitor.RoleOperator}

	// The analytics choice lapses; the banner asks again and the visitor accepts,
	// then later refuses.
	d.clock.Advance(181 * 24 * time.Hour)
	for _, analytics := range []bool{true, false} {
		res, err := d.svc.SetConsent(ctx, visitor.ConsentRequest{Site: site, Analytics: analytics, KeepMarketing: true,
			PolicyVersion: domainPolicy, Method: visitor.MethodBanner, Token: token, UserAgent: consentUA, IP: domainIP})
		if err != nil {
			t.Fatal(err)
		}
		if res.Choice.Analytics != analytics {
			t.Errorf("banner answer %t: choice %+v", analytics, res.Choice)
		}
		v, err := d.svc.ChatContext(ctx, op, chat.ChatID)
		if err != nil {
			t.Fatal(err)
		}
		if !v.Marketing {
			t.Errorf("banner answer analytics %t withdrew the chat's marketing opt-in", analytics)
		}
		if bodies := d.queuedBodies("shop"); len(bodies) != 0 {
			t.Errorf("banner answer analytics %t queued %q", analytics, bodies)
		}
		d.clock.Advance(time.Minute)
	}
	e, err := d.svc.ExportVisitor(ctx, d.privacy("shop"), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Chats) != 1 || !e.Chats[0].Marketing {
		t.Errorf("export chats %+v, want the chat with its marketing opt-in", e.Chats)
	}
	recs := e.Consents
	if len(recs) != 4 {
		t.Fatalf("%d consent records, want grant, chat opt-in, banner accept, banner refusal", len(recs))
	}
	for _, r := range recs[2:] {
		if r.Analytics == nil || r.Marketing != nil {
			t.Errorf("banner record answers analytics %v, marketing %v; want analytics alone", r.Analytics, r.Marketing)
		}
	}
}

// A withdrawal carrying a valid token is never refused by a rate limit, so a
// repeated identical one must not write a record each: a choice that changes
// nothing writes nothing (the first withdrawal is the record).
func TestRepeatedWithdrawalWritesOneRecord(t *testing.T) {
	site := consentSite("shop", visitor.ConsentOptIn, visitor.IPTruncate)
	d := newConsentDomain(t, site)
	ctx := context.Background()
	token := d.grant("shop", true)
	id := d.idOf("shop", token)
	for range 50 {
		d.clock.Advance(time.Second)
		res, err := d.svc.SetConsent(ctx, visitor.ConsentRequest{Site: site, Analytics: false, Marketing: false,
			PolicyVersion: domainPolicy, Method: visitor.MethodBanner, Token: token, UserAgent: consentUA, IP: domainIP})
		if err != nil || res.Choice.Analytics || res.Choice.Marketing || res.Token == "" {
			t.Fatalf("withdrawal: %+v, %v", res, err)
		}
		if strings.Count(res.Token, ".") != 1 {
			t.Fatalf("withdrawal token %q", res.Token)
		}
	}
	recs := d.data("shop", id).Consents
	if len(recs) != 2 {
		t.Fatalf("%d consent records after one grant and 50 identical withdrawals, want 2", len(recs))
	}
	if r := recs[1]; r.Analytics == nil || *r.Analytics || r.Marketing == nil || *r.Marketing {
		t.Errorf("withdrawal record %+v", r)
	}
	// A changed choice is a new record again.
	d.clock.Advance(time.Second)
	if _, err := d.svc.SetConsent(ctx, visitor.ConsentRequest{Site: site, Analytics: true, Marketing: false,
		PolicyVersion: domainPolicy, Method: visitor.MethodBanner, Token: token, UserAgent: consentUA, IP: domainIP}); err != nil {
		t.Fatal(err)
	}
	if n := len(d.data("shop", id).Consents); n != 3 {
		t.Errorf("%d consent records after a new grant, want 3", n)
	}
}

// Invariant 6: erasing one chat of a visitor drops the queued deliveries that
// carry that chat's contact details (a subject.rectified naming it); the
// visitor's other chats still hear of the rectification, without the erased one.
func TestEraseOneChatPurgesQueuedRectification(t *testing.T) {
	site := crmSite(visitor.ConsentOptIn)
	d := newConsentDomain(t, site)
	ctx := context.Background()
	token := d.grant("shop", false)
	id := d.idOf("shop", token)
	var chats []string
	for range 2 {
		res, err := d.svc.StartChat(ctx, visitor.ChatRequest{Site: site, Token: token,
			Contact: visitor.Contact{Name: "Ada", Email: "ada@math.example"}, URL: consentOrigin + "/pricing", UserAgent: consentUA, IP: domainIP})
		if err != nil {
			t.Fatal(err)
		}
		chats = append(chats, res.ChatID)
		d.clock.Advance(time.Minute)
	}
	d.queuedBodies("shop") // chat.started
	name, email := "Grace Hopper", "grace@navy.example"
	if _, err := d.svc.RectifyVisitor(ctx, d.privacy("shop"), id, visitor.ContactChange{Name: &name, Email: &email}); err != nil {
		t.Fatal(err)
	}
	if err := d.svc.EraseChat(ctx, d.privacy("shop"), chats[0]); err != nil {
		t.Fatal(err)
	}
	var rectified []string
	for _, b := range d.queuedBodies("shop") {
		if strings.Contains(b, chats[0]) && strings.Contains(b, "grace") {
			t.Errorf("after erasing chat %s a queued delivery still carries its contact: %s", chats[0], b)
		}
		if strings.Contains(b, `"event":"subject.rectified"`) {
			rectified = append(rectified, b)
		}
	}
	if len(rectified) != 1 || !strings.Contains(rectified[0], chats[1]) || !strings.Contains(rectified[0], "grace@navy.example") {
		t.Errorf("queued subject.rectified %q, want one for the remaining chat %s", rectified, chats[1])
	}
}

// A refusal that left marketing as it was, then a withdrawal of marketing that
// repeats the choice stored (both false, the chat's opt-in given without a
// choice to carry it): the withdrawal still reaches the chat. And a GPC
// objection repeated on every page view (never rate limited) writes one record.
func TestRepeatedChoiceStillWithdrawsChats(t *testing.T) {
	site := crmSite(visitor.ConsentOptOut)
	d := newConsentDomain(t, site)
	ctx := context.Background()
	token := d.track("shop", "", "/", "Home")
	id := d.idOf("shop", token)
	chat, err := d.svc.StartChat(ctx, visitor.ChatRequest{Site: site, Token: token, MarketingOptIn: true,
		Contact: visitor.Contact{Name: "Ada", Email: "ada@math.example"}, URL: consentOrigin + "/", UserAgent: consentUA, IP: domainIP})
	if err != nil {
		t.Fatal(err)
	}
	op := visitor.Actor{Site: site, KeyID: "agent-1", Role: visitor.RoleOperator}
	for _, keep := range []bool{true, false} {
		d.clock.Advance(time.Second)
		if _, err := d.svc.SetConsent(ctx, visitor.ConsentRequest{Site: site, Analytics: false, KeepMarketing: keep,
			PolicyVersion: domainPolicy, Method: visitor.MethodAPI, Token: token, UserAgent: consentUA, IP: domainIP}); err != nil {
			t.Fatal(err)
		}
		v, err := d.svc.ChatContext(ctx, op, chat.ChatID)
		if err != nil {
			t.Fatal(err)
		}
		if v.Marketing != keep {
			t.Errorf("refusal keeping marketing %t: chat marketing %t", keep, v.Marketing)
		}
	}
	n := len(d.data("shop", id).Consents)
	for range 20 {
		d.clock.Advance(time.Second)
		if _, err := d.svc.Track(ctx, visitor.Hit{Site: site, Type: visitor.HitPageview, URL: consentOrigin + "/", Token: token,
			UserAgent: consentUA, IP: domainIP, GPC: true}); err != nil {
			t.Fatal(err)
		}
	}
	if got := len(d.data("shop", id).Consents); got > n+1 {
		t.Errorf("20 GPC page views of a refused identity wrote %d consent records, want at most 1", got-n)
	}
}

// Erasing a visitor's chat takes the visitor out of that chat's e-mail blind
// index once no other chat of theirs gives that e-mail: a search by the e-mail
// must not lead to the visitor whose contact details were erased.
func TestEraseChatLeavesNoEmailLink(t *testing.T) {
	site := consentSite("shop", visitor.ConsentOptIn, visitor.IPTruncate)
	d := newConsentDomain(t, site)
	ctx := context.Background()
	token := d.grant("shop", false)
	id := d.idOf("shop", token)
	start := func(email string) string {
		t.Helper()
		res, err := d.svc.StartChat(ctx, visitor.ChatRequest{Site: site, Token: token,
			Contact: visitor.Contact{Name: "Ada", Email: email}, URL: consentOrigin + "/", UserAgent: consentUA, IP: domainIP})
		if err != nil {
			t.Fatal(err)
		}
		d.clock.Advance(time.Minute)
		return res.ChatID
	}
	a1, a2, b := start("ada@math.example"), start("ada@math.example"), start("ada@work.example")
	search := func(email string) []string {
		t.Helper()
		vs, _, err := d.svc.SearchSubjects(ctx, d.privacy("shop"), email)
		if err != nil {
			t.Fatal(err)
		}
		return vs
	}
	if err := d.svc.EraseChat(ctx, d.privacy("shop"), a1); err != nil {
		t.Fatal(err)
	}
	if vs := search("ada@math.example"); len(vs) != 1 || vs[0] != id {
		t.Errorf("search after erasing one of two chats with the e-mail: %q, want the visitor", vs)
	}
	for _, c := range []string{a2, b} {
		if err := d.svc.EraseChat(ctx, d.privacy("shop"), c); err != nil {
			t.Fatal(err)
		}
	}
	for _, email := range []string{"ada@math.example", "ada@work.example"} {
		if vs := search(email); len(vs) != 0 {
			t.Errorf("search for %s after erasing every chat giving it: %q, want none", email, vs)
		}
	}
}

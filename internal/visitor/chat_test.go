package visitor_test

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// A chat is linked to its visitor and to the session in progress when it
// starts, and only then: what the visitor does later never moves the link, and
// a chat started without a usable identity stays unlinked.
func TestChatLinking(t *testing.T) {
	t.Parallel()
	tracked := func(t *testing.T, d *domain) string { return d.pageview(t, "", "/pricing", "Pricing", "") }
	for _, tt := range []struct {
		name     string
		mode     visitor.ConsentMode
		setup    func(*testing.T, *domain) string // returns the token the chat starts with
		dnt, gpc bool
		then     func(*testing.T, *domain, string) // what the visitor does after the chat started
		linked   bool                              // the chat names the visitor
		session  bool                              // and the session in progress at its start
		previous int                               // earlier chats it names
		issued   bool                              // the chat start issued an identity (on-chat)
		bot      bool                              // the chat is started by a bot
	}{
		{name: "identity with a session", mode: visitor.ConsentOptOut, setup: tracked, linked: true, session: true},
		{name: "returning visitor names the earlier chat", mode: visitor.ConsentOptOut, setup: func(t *testing.T, d *domain) string {
			tok := tracked(t, d)
			d.startChat(t, tok, false, false)
			return tok
		}, linked: true, session: true, previous: 1},
		{name: "a later session does not move the link", mode: visitor.ConsentOptOut, setup: tracked, then: func(t *testing.T, d *domain, tok string) {
			d.clock.Advance(31 * time.Minute)
			d.pageview(t, tok, "/later", "Later", "")
		}, linked: true, session: true},
		{name: "without a token", mode: visitor.ConsentOptOut, setup: func(*testing.T, *domain) string { return "" }},
		{name: "an identity gained after the chat does not link it", mode: visitor.ConsentOptOut, setup: func(*testing.T, *domain) string { return "" },
			then: func(t *testing.T, d *domain, _ string) { d.pageview(t, "", "/after", "After", "") }},
		{name: "dnt", mode: visitor.ConsentOptOut, setup: tracked, dnt: true},
		{name: "gpc", mode: visitor.ConsentOptOut, setup: tracked, gpc: true},
		{name: "an erased visitor's token", mode: visitor.ConsentOptOut, setup: func(t *testing.T, d *domain) string {
			tok := tracked(t, d)
			if err := d.svc.EraseVisitor(d.ctx, d.privacy, d.visitorID(t, tok)); err != nil {
				t.Fatal(err)
			}
			return tok
		}},
		{name: "on-chat: the chat start is the consent", mode: visitor.ConsentOnChat, setup: func(*testing.T, *domain) string { return "" },
			then:   func(t *testing.T, d *domain, tok string) { d.pageview(t, tok, "/after", "After", "") }, // tracked from then on
			linked: true, session: true, issued: true},
		{name: "on-chat under dnt", mode: visitor.ConsentOnChat, setup: func(*testing.T, *domain) string { return "" }, dnt: true},
		{name: "on-chat under gpc", mode: visitor.ConsentOnChat, setup: func(*testing.T, *domain) string { return "" }, gpc: true},
		{name: "on-chat as a bot", mode: visitor.ConsentOnChat, setup: func(*testing.T, *domain) string { return "" }, bot: true},
		{name: "a stranger typing the same e-mail links nothing", mode: visitor.ConsentOptOut, setup: func(t *testing.T, d *domain) string {
			d.startChat(t, tracked(t, d), false, false) // the other visitor's chat, same e-mail
			return tracked(t, d)
		}, linked: true, session: true},
		{name: "a chat without identity typing a known e-mail links nothing", mode: visitor.ConsentOptOut, setup: func(t *testing.T, d *domain) string {
			d.startChat(t, tracked(t, d), false, false)
			return ""
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			site := domainSite()
			site.Consent = tt.mode
			d := newDomain(t, site)
			token := tt.setup(t, d)
			held := storeState(t, d.rdb)
			var res visitor.ChatResult
			if tt.bot {
				var err error
				res, err = d.svc.StartChat(d.ctx, visitor.ChatRequest{Site: d.site, Contact: visitor.Contact{Name: "Ada"},
					URL: domainOrigin + "/contact", UserAgent: "a crawler bot", IP: domainIP})
				if err != nil {
					t.Fatal(err)
				}
			} else {
				res = d.startChat(t, token, tt.dnt, tt.gpc)
			}
			if !tt.linked && token == "" {
				// A chat without identity writes no visitor, session or live
				// entry: only its own records and indexes.
				for k := range storeState(t, d.rdb) {
					if _, ok := held[k]; !ok && (strings.HasPrefix(k, "v:") || strings.HasPrefix(k, "lv:")) {
						t.Errorf("a chat without identity wrote %s", k)
					}
				}
			}
			if got := res.Token != ""; got != tt.issued {
				t.Errorf("chat start issued a token: %v, want %v", got, tt.issued)
			}
			if tt.issued {
				token = res.Token
				// The chat start is the visitor's request: its consent is
				// recorded by chat_start and the session starts at the chat's url.
				data, err := d.store.VisitorData(d.ctx, d.site, d.vkey(d.visitorID(t, token)))
				if err != nil {
					t.Fatal(err)
				}
				if len(data.Consents) != 1 || data.Consents[0].Method != visitor.MethodChatStart || data.Consents[0].Analytics == nil ||
					!*data.Consents[0].Analytics || data.Choice == nil || !data.Choice.Analytics {
					t.Errorf("consent = %+v, records %+v; want analytics given by chat_start", data.Choice, data.Consents)
				}
				if len(data.Sessions) != 1 || data.Sessions[0].CurrentURL != domainOrigin+"/contact" {
					t.Errorf("sessions = %+v; want one started at the chat's url", data.Sessions)
				}
			}
			var vid, session string
			if tt.linked {
				vid = d.visitorID(t, token)
				data, err := d.store.VisitorData(d.ctx, d.site, d.vkey(vid))
				if err != nil || data.Profile == nil {
					t.Fatalf("visitor data = %+v, %v; want a profile", data, err)
				}
				session = data.Profile.CurrentSession
			}
			if tt.then != nil {
				tt.then(t, d, token)
			}
			c, err := d.store.Chat(d.ctx, d.site, res.ChatID)
			if err != nil {
				t.Fatal(err)
			}
			if c.VisitorID != vid || (c.SessionID != "") != tt.session || c.SessionID != session {
				t.Errorf("chat links visitor %q session %q; want %q, %q", c.VisitorID, c.SessionID, vid, session)
			}
			if len(c.Previous) != tt.previous || res.PreviousChats != tt.previous || res.Returning != (tt.previous > 0) {
				t.Errorf("chat names %v earlier chats (result %d, returning %v); want %d", c.Previous, res.PreviousChats, res.Returning, tt.previous)
			}
			if vid != "" {
				data, err := d.store.VisitorData(d.ctx, d.site, d.vkey(vid))
				if err != nil {
					t.Fatal(err)
				}
				if n := len(data.Chats); n != tt.previous+1 {
					t.Errorf("the visitor's data holds %d chats, want %d", n, tt.previous+1)
				}
			}
		})
	}
}

// startChat starts a chat on d's site from a page of it with token ("" for
// none) and fails unless it started.
func (d *domain) startChat(tb testing.TB, token string, dnt, gpc bool) visitor.ChatResult {
	tb.Helper()
	res, err := d.svc.StartChat(d.ctx, visitor.ChatRequest{Site: d.site, Contact: visitor.Contact{Name: "Ada", Email: "ada@example.org"},
		URL: domainOrigin + "/contact", Token: token, UserAgent: domainUA, IP: domainIP, DNT: dnt, GPC: gpc})
	if err != nil {
		tb.Fatalf("start chat: %v", err)
	}
	return res
}

// A chat start that is refused (a contact or url the domain rejects) writes
// nothing, not even with an identity and a marketing opt-in.
func TestStartChatRefusedWritesNothing(t *testing.T) {
	t.Parallel()
	valid := visitor.Contact{Name: "Grace Hopper", Email: "grace@navy.example", Phone: "+1 555 0100"}
	with := func(f func(*visitor.Contact)) visitor.Contact {
		c := valid
		f(&c)
		return c
	}
	for _, tt := range []struct {
		name    string
		contact visitor.Contact
		url     string
		code    string
	}{
		{name: "e-mail without at", contact: with(func(c *visitor.Contact) { c.Email = "grace.navy.example" }), code: visitor.EInvalid},
		{name: "e-mail with display name", contact: with(func(c *visitor.Contact) { c.Email = "Grace <grace@navy.example>" }), code: visitor.EInvalid},
		{name: "e-mail with header injection", contact: with(func(c *visitor.Contact) { c.Email = "grace@navy.example\r\nBcc: all@navy.example" }), code: visitor.EInvalid},
		{name: "e-mail over 254 bytes", contact: with(func(c *visitor.Contact) { c.Email = strings.Repeat("g", 250) + "@navy.example" }), code: visitor.EInvalid},
		{name: "name over 200 bytes", contact: with(func(c *visitor.Contact) { c.Name = strings.Repeat("G", 201) }), code: visitor.EInvalid},
		{name: "name of 67 three-byte runes", contact: with(func(c *visitor.Contact) { c.Name = strings.Repeat("€", 67) }), code: visitor.EInvalid},
		{name: "phone with letters", contact: with(func(c *visitor.Contact) { c.Phone = "+1 555 CALL" }), code: visitor.EInvalid},
		{name: "phone over 40 bytes", contact: with(func(c *visitor.Contact) { c.Phone = strings.Repeat("5", 41) }), code: visitor.EInvalid},
		{name: "url not http", contact: valid, url: "javascript:alert(1)", code: visitor.EInvalid},
		{name: "url of another origin", contact: valid, url: "https://evil.example/help", code: visitor.EURLNotInSite},
		{name: "at the limits", contact: visitor.Contact{Name: strings.Repeat("G", 200), Email: "Grace.Hopper@Navy.example", Phone: "+1 (555) 010-0100"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDomain(t, nil)
			token := d.pageview(t, "", "/", "Home", "")
			held := storeState(t, d.rdb)
			url := tt.url
			if url == "" {
				url = domainOrigin + "/help"
			}
			_, err := d.svc.StartChat(d.ctx, visitor.ChatRequest{Site: d.site, Contact: tt.contact, MarketingOptIn: true, URL: url,
				Token: token, UserAgent: domainUA, IP: domainIP})
			if code := visitor.ErrorCode(err); code != tt.code {
				t.Fatalf("StartChat = %v, want code %q", err, tt.code)
			}
			if tt.code != "" {
				if diff := cmp.Diff(held, storeState(t, d.rdb)); diff != "" {
					t.Errorf("the refused chat wrote (-before +after):\n%s", diff)
				}
			}
		})
	}
}

// A marketing opt-in at a chat start is a consent record answering marketing
// alone, given by chat_start: under the visitor with an identity, under the
// chat without one; a chat without the opt-in has none, and each chat carries
// its own answer.
func TestChatMarketingOptIn(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		identity  bool
		marketing bool
	}{
		{name: "identity", identity: true, marketing: true},
		{name: "no identity", marketing: true},
		{name: "declined", identity: true},
		{name: "declined without identity"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDomain(t, nil)
			token := ""
			if tt.identity {
				token = d.pageview(t, "", "/", "Home", "")
			}
			d.clock.Advance(time.Minute)
			res, err := d.svc.StartChat(d.ctx, visitor.ChatRequest{Site: d.site, Contact: visitor.Contact{Name: "Grace"}, MarketingOptIn: tt.marketing,
				URL: domainOrigin + "/help", Token: token, UserAgent: domainUA, IP: domainIP})
			if err != nil {
				t.Fatal(err)
			}
			c, err := d.store.Chat(d.ctx, d.site, res.ChatID)
			if err != nil {
				t.Fatal(err)
			}
			if c.Marketing != tt.marketing {
				t.Errorf("chat marketing = %v, want %v", c.Marketing, tt.marketing)
			}
			var recs []visitor.ConsentRecord
			if tt.identity {
				data, err := d.store.VisitorData(d.ctx, d.site, d.vkey(d.visitorID(t, token)))
				if err != nil {
					t.Fatal(err)
				}
				recs = data.Consents
			}
			own, err := d.store.ChatConsents(d.ctx, d.site, res.ChatID)
			if err != nil {
				t.Fatal(err)
			}
			if tt.identity && len(own) != 0 {
				t.Errorf("a chat with identity keeps records of its own: %+v", own)
			}
			recs = append(recs, own...)
			if !tt.marketing {
				if len(recs) != 0 {
					t.Errorf("records of a chat without the opt-in: %+v", recs)
				}
				return
			}
			sum := sha256.Sum256([]byte(d.site.LegalText))
			if len(recs) != 1 {
				t.Fatalf("records = %+v, want one", recs)
			}
			r := recs[0]
			if r.Marketing == nil || !*r.Marketing || r.Analytics != nil || r.Method != visitor.MethodChatStart ||
				r.PolicyVersion != d.site.PolicyVersion || r.TextSHA256 != hex.EncodeToString(sum[:]) || !r.Time.Equal(d.clock.Now()) || r.IP != "81.2.69.0/24" {
				t.Errorf("record = %+v, want marketing alone given by chat_start", r)
			}
		})
	}
}

// Invariant 8: contact details are encrypted at rest: no key or value holds
// them, nor the visitor's full IP; an operator reads them decrypted, in the
// chat and as a previous chat.
func TestChatContactSealedAtRest(t *testing.T) {
	t.Parallel()
	d := newDomain(t, nil)
	contact := visitor.Contact{Name: "Grace Hopper", Email: "grace@navy.example", Phone: "+1 555 0100"}
	token := d.pageview(t, "", "/a", "A", "")
	var chats []string
	for _, tok := range []string{token, token, ""} {
		res, err := d.svc.StartChat(d.ctx, visitor.ChatRequest{Site: d.site, Contact: contact, MarketingOptIn: true,
			URL: domainOrigin + "/a", Token: tok, UserAgent: domainUA, IP: domainIP})
		if err != nil {
			t.Fatal(err)
		}
		chats = append(chats, res.ChatID)
		d.clock.Advance(time.Minute)
	}
	v, err := d.svc.ChatContext(d.ctx, d.operator, chats[1])
	if err != nil {
		t.Fatal(err)
	}
	if v.Contact != contact || len(v.Previous) != 1 || v.Previous[0].Contact != contact {
		t.Errorf("chat context = %+v, previous %+v; want the contact decrypted in both", v.Contact, v.Previous)
	}
	for k, val := range redistest.DumpValues(t, d.rdb) {
		for _, s := range []string{"Grace", "Hopper", "grace@", "navy.example", "555 0100", domainIP.String()} {
			if strings.Contains(k, s) || strings.Contains(val, s) {
				t.Errorf("key %s holds %q", k, s)
			}
		}
	}
}

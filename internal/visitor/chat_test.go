package visitor_test

import (
	"testing"
	"time"

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
			linked: true, session: true, issued: true},
		{name: "on-chat under dnt", mode: visitor.ConsentOnChat, setup: func(*testing.T, *domain) string { return "" }, dnt: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			site := domainSite()
			site.Consent = tt.mode
			d := newDomain(t, site)
			token := tt.setup(t, d)
			res := d.startChat(t, token, tt.dnt, tt.gpc)
			if got := res.Token != ""; got != tt.issued {
				t.Errorf("chat start issued a token: %v, want %v", got, tt.issued)
			}
			if tt.issued {
				token = res.Token
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

package visitor_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// Invariant 2 and 5 (issue 17, item 8): under ip: drop no consent record holds
// an IP, whichever way it was given; truncate keeps the /24, full the address.
func TestConsentRecordIPFollowsSiteMode(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mode visitor.IPMode
		want string
	}{
		{name: "drop", mode: visitor.IPDrop, want: ""},
		{name: "truncate", mode: visitor.IPTruncate, want: "81.2.69.0/24"},
		{name: "full", mode: visitor.IPFull, want: "81.2.69.160"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newConsentDomain(t, consentSite("shop", visitor.ConsentOptIn, tt.mode))
			ctx := context.Background()
			site := d.sites["shop"]
			token := d.grant("shop", false)
			d.track("shop", token, "/pricing", "Pricing")
			if _, err := d.svc.StartChat(ctx, visitor.ChatRequest{Site: site, Token: token, MarketingOptIn: true,
				Contact: visitor.Contact{Name: "Ada"}, URL: consentOrigin + "/pricing", UserAgent: consentUA, IP: domainIP}); err != nil {
				t.Fatal(err)
			}
			anon, err := d.svc.StartChat(ctx, visitor.ChatRequest{Site: site, MarketingOptIn: true,
				Contact: visitor.Contact{Name: "Bob"}, UserAgent: consentUA, IP: domainIP})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := d.svc.SetConsent(ctx, visitor.ConsentRequest{Site: site, Analytics: false, Marketing: false,
				PolicyVersion: domainPolicy, Method: visitor.MethodAPI, Token: token, UserAgent: consentUA, IP: domainIP}); err != nil {
				t.Fatal(err)
			}

			id := d.idOf("shop", token)
			recs := d.data("shop", id).Consents
			anonRecs, err := d.store.ChatConsents(ctx, site, anon.ChatID)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, anonRecs...)
			if len(recs) != 4 { // grant, chat-start marketing, withdrawal; the anonymous chat's marketing
				t.Fatalf("%d consent records, want 4: %+v", len(recs), recs)
			}
			for _, r := range recs {
				if r.IP != tt.want {
					t.Errorf("%s record's IP = %q, want %q", r.Method, r.IP, tt.want)
				}
			}
			if tt.mode == visitor.IPDrop {
				d.assertNoValue("81.2.69")
			}
		})
	}
}

// Invariant 1 (issue 17, item 7): a grant under DNT or GPC stores nothing, issues
// no token and answers the choice refused with the reason; with an identity it
// asks the transport to expire the cookie, and GPC's objection is honoured. A
// refusal under DNT/GPC is recorded as usual.
func TestSetConsentUnderSignal(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name                 string
		dnt, gpc             bool
		analytics, marketing bool
		identity             bool
		wantReason           visitor.Reason
		wantToken            bool
		wantMethods          []string // the visitor's consent records after, oldest first
		wantBehaviour        bool     // the visitor's profile and sessions remain
	}{
		{name: "grant under DNT, new visitor", dnt: true, analytics: true, wantReason: visitor.ReasonDNT},
		{name: "grant under GPC, new visitor", gpc: true, analytics: true, marketing: true, wantReason: visitor.ReasonGPC},
		{name: "marketing-only grant under GPC", gpc: true, marketing: true, wantReason: visitor.ReasonGPC},
		{name: "both signals: gpc wins", dnt: true, gpc: true, analytics: true, wantReason: visitor.ReasonGPC},
		{name: "grant under DNT with identity stores nothing", dnt: true, analytics: true, identity: true,
			wantReason: visitor.ReasonDNT, wantMethods: []string{"banner"}, wantBehaviour: true},
		{name: "grant under GPC with identity is an objection", gpc: true, analytics: true, identity: true,
			wantReason: visitor.ReasonGPC, wantMethods: []string{"banner", "gpc"}},
		{name: "refusal under DNT without identity", dnt: true, wantToken: true},
		{name: "refusal under GPC with identity is recorded as usual", gpc: true, identity: true, wantToken: true,
			wantMethods: []string{"banner", "api"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newConsentDomain(t, consentSite("shop", visitor.ConsentOptIn, visitor.IPTruncate))
			ctx := context.Background()
			site := d.sites["shop"]
			var token, id string
			if tt.identity {
				token = d.grant("shop", false)
				id = d.idOf("shop", token)
				d.track("shop", token, "/pricing", "Pricing")
				d.clock.Advance(time.Minute)
			}
			before := redistest.Keys(t, d.rdb)
			res, err := d.svc.SetConsent(ctx, visitor.ConsentRequest{Site: site, Analytics: tt.analytics, Marketing: tt.marketing,
				PolicyVersion: domainPolicy, Method: visitor.MethodAPI, Token: token, UserAgent: consentUA, IP: domainIP,
				DNT: tt.dnt, GPC: tt.gpc})
			if err != nil {
				t.Fatal(err)
			}
			if res.Reason != tt.wantReason || (res.Token != "") != tt.wantToken {
				t.Errorf("reason %q, token %t; want %q, %t", res.Reason, res.Token != "", tt.wantReason, tt.wantToken)
			}
			if tt.wantReason != "" {
				if res.Choice.Analytics || res.Choice.Marketing || !res.Choice.ValidUntil.IsZero() {
					t.Errorf("choice %+v, want refused", res.Choice)
				}
				if res.ForgetIdentity != tt.identity {
					t.Errorf("ForgetIdentity = %t, want %t", res.ForgetIdentity, tt.identity)
				}
			}
			if !tt.identity {
				if tt.wantToken {
					return // a refusal without identity is only counted
				}
				if got := redistest.Keys(t, d.rdb); len(got) != 0 {
					t.Errorf("a grant under a signal wrote %q", got)
				}
				return
			}
			if tt.wantReason == visitor.ReasonDNT {
				if got := redistest.Keys(t, d.rdb); !slicesEqual(got, before) {
					t.Errorf("keys %q, want unchanged %q", got, before)
				}
			}
			vd := d.data("shop", id)
			var methods []string
			for _, r := range vd.Consents {
				methods = append(methods, r.Method)
			}
			if !slicesEqual(methods, tt.wantMethods) {
				t.Errorf("consent records %q, want %q", methods, tt.wantMethods)
			}
			if got := vd.Profile != nil && len(vd.Sessions) > 0; got != tt.wantBehaviour {
				t.Errorf("behaviour data kept = %t, want %t", got, tt.wantBehaviour)
			}
		})
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Invariant 1 (issue 17, item 6): GPC from a known visitor is an objection: the
// behaviour data goes, a withdrawal record with method gpc is written cut like
// an erased one (keyed hash, time, choices, policy version, method), and the
// identity is never tracked again.
func TestGPCObjectionWritesCutWithdrawal(t *testing.T) {
	t.Parallel()
	for _, mode := range []visitor.ConsentMode{visitor.ConsentOptIn, visitor.ConsentOptOut} {
		t.Run(string(mode), func(t *testing.T) {
			t.Parallel()
			d := newConsentDomain(t, consentSite("shop", mode, visitor.IPTruncate))
			ctx := context.Background()
			site := d.sites["shop"]
			var token string
			if mode == visitor.ConsentOptIn {
				token = d.grant("shop", false)
				d.track("shop", token, "/a", "A")
			} else {
				token = d.track("shop", "", "/a", "A")
			}
			id := d.idOf("shop", token)
			d.clock.Advance(time.Minute)
			now := d.clock.Now()
			res, err := d.svc.Track(ctx, visitor.Hit{Site: site, Type: visitor.HitPageview, Token: token,
				UserAgent: consentUA, IP: domainIP, GPC: true})
			if err != nil {
				t.Fatal(err)
			}
			if res.Tracked || res.Reason != visitor.ReasonGPC || !res.ForgetIdentity {
				t.Fatalf("GPC ping = %+v, want refused for gpc, identity forgotten", res)
			}
			vd := d.data("shop", id)
			if vd.Profile != nil || len(vd.Sessions) != 0 {
				t.Errorf("behaviour data after GPC: profile %+v, %d sessions", vd.Profile, len(vd.Sessions))
			}
			if vd.Choice == nil || vd.Choice.Analytics || vd.Choice.Marketing {
				t.Errorf("choice after GPC = %+v, want both purposes refused", vd.Choice)
			}
			// The live entry goes with the behaviour data.
			live, err := d.svc.Live(ctx, visitor.Actor{Site: site, KeyID: "agent-1", Role: visitor.RoleOperator}, 0, "", 0)
			if err != nil || len(live.Visitors) != 0 {
				t.Errorf("Live after GPC = %+v, %v; want nobody", live.Visitors, err)
			}
			if n := len(vd.Consents); mode == visitor.ConsentOptIn && (n != 2 || vd.Consents[0].Analytics == nil || !*vd.Consents[0].Analytics) {
				t.Errorf("consent records after GPC = %+v; want the grant kept as proof beside the objection", vd.Consents)
			}
			last := vd.Consents[len(vd.Consents)-1]
			no := false
			want := visitor.ConsentRecord{Subject: d.svc.AuditTarget("shop", "visitor", id), Time: now,
				Analytics: &no, Marketing: &no, PolicyVersion: domainPolicy, Method: visitor.MethodGPC}
			if got := last; got.Subject != want.Subject || !got.Time.Equal(want.Time) || got.VisitorID != "" ||
				got.Analytics == nil || *got.Analytics || got.Marketing == nil || *got.Marketing ||
				got.PolicyVersion != want.PolicyVersion || got.Method != want.Method || got.IP != "" ||
				got.UserAgent != "" || got.TextSHA256 != "" {
				t.Errorf("gpc record = %+v, want %+v", got, want)
			}
			d.assertNoValue(`"visitor_id":"` + id + `","subject"`)

			d.clock.Advance(time.Minute)
			again, err := d.svc.Track(ctx, visitor.Hit{Site: site, Type: visitor.HitPageview, URL: consentOrigin + "/b",
				Token: token, UserAgent: consentUA, IP: domainIP})
			if err != nil {
				t.Fatal(err)
			}
			// As after a withdrawal, the identity stays refused (its cookie is
			// expired): tracking never resumes under it.
			if again.Tracked || again.Reason != visitor.ReasonNoConsent || !again.ForgetIdentity {
				t.Errorf("the objected identity's next page view = %+v, want no_consent and the identity forgotten", again)
			}
			if vd := d.data("shop", id); vd.Profile != nil || len(vd.Sessions) != 0 {
				t.Errorf("the objected identity was recognised again: %+v", vd.Profile)
			}
		})
	}
}

// Invariant 2 (issue 17, item 3): PUT consent with marketing false withdraws
// the marketing opt-in of every chat of the visitor in the same write (the chat
// context and the export then say false) and queues marketing.withdrawn; a
// chat-start opt-in records the marketing purpose alone.
func TestMarketingWithdrawalReachesChats(t *testing.T) {
	t.Parallel()
	site := crmSite(visitor.ConsentOptIn)
	d := newConsentDomain(t, site)
	ctx := context.Background()
	token := d.grant("shop", false)
	id := d.idOf("shop", token)
	d.track("shop", token, "/pricing", "Pricing")
	var chats []string
	for _, name := range []string{"Ada", "Ada L"} {
		res, err := d.svc.StartChat(ctx, visitor.ChatRequest{Site: site, Token: token, MarketingOptIn: true,
			Contact: visitor.Contact{Name: name, Email: "ada@math.example"}, URL: consentOrigin + "/pricing", UserAgent: consentUA, IP: domainIP})
		if err != nil {
			t.Fatal(err)
		}
		chats = append(chats, res.ChatID)
		d.clock.Advance(time.Minute)
	}
	recs := d.data("shop", id).Consents
	if len(recs) != 3 {
		t.Fatalf("%d consent records, want the grant and two chat-start opt-ins", len(recs))
	}
	for _, r := range recs[1:] {
		if r.Method != visitor.MethodChatStart || r.Analytics != nil || r.Marketing == nil || !*r.Marketing {
			t.Errorf("chat-start record answers analytics %v, marketing %v; want marketing true alone", r.Analytics, r.Marketing)
		}
	}
	op := visitor.Actor{Site: site, KeyID: "agent-1", Role: visitor.RoleOperator}
	if v, err := d.svc.ChatContext(ctx, op, chats[1]); err != nil || !v.Marketing {
		t.Fatalf("chat context before withdrawal: marketing %t, %v", v.Marketing, err)
	}
	d.queuedBodies("shop") // the chat.started deliveries

	d.clock.Advance(time.Minute)
	res, err := d.svc.SetConsent(ctx, visitor.ConsentRequest{Site: site, Analytics: true, Marketing: false,
		PolicyVersion: domainPolicy, Method: visitor.MethodBanner, Token: token, UserAgent: consentUA, IP: domainIP})
	if err != nil || res.Choice.Marketing || !res.Choice.Analytics {
		t.Fatalf("withdrawal: %+v, %v", res.Choice, err)
	}
	for _, c := range chats {
		v, err := d.svc.ChatContext(ctx, op, c)
		if err != nil {
			t.Fatal(err)
		}
		if v.Marketing {
			t.Errorf("chat context of %s says marketing true after the withdrawal", c)
		}
		for _, p := range v.Previous {
			if p.Marketing {
				t.Errorf("previous chat %s says marketing true after the withdrawal", p.ID)
			}
		}
	}
	e, err := d.svc.ExportVisitor(ctx, d.privacy("shop"), id)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range e.Chats {
		if c.Marketing {
			t.Errorf("export says chat %s has marketing true after the withdrawal", c.ID)
		}
	}
	bodies := d.queuedBodies("shop")
	if len(bodies) != 1 || !strings.Contains(bodies[0], `"event":"marketing.withdrawn"`) ||
		!strings.Contains(bodies[0], chats[0]) || !strings.Contains(bodies[0], chats[1]) || strings.Contains(bodies[0], "Ada") {
		t.Errorf("queued after the withdrawal: %q, want one marketing.withdrawn naming both chats, ids only", bodies)
	}

	// A second withdrawal finds nothing left to withdraw: no second event.
	d.clock.Advance(time.Minute)
	if _, err := d.svc.SetConsent(ctx, visitor.ConsentRequest{Site: site, Analytics: true, Marketing: false,
		PolicyVersion: domainPolicy, Method: visitor.MethodBanner, Token: token, UserAgent: consentUA, IP: domainIP}); err != nil {
		t.Fatal(err)
	}
	if bodies := d.queuedBodies("shop"); len(bodies) != 0 {
		t.Errorf("a repeated withdrawal queued %q", bodies)
	}

	// A shorter chats window reaches the set of withdrawn chats too: it names
	// those chats and must not outlive them.
	shorter := site.Retention
	shorter.Chats = 1
	if _, err := d.svc.SetRetention(ctx, d.privacy("shop"), shorter); err != nil {
		t.Fatal(err)
	}
	if err := d.svc.RunRetentionJobs(ctx, "test"); err != nil {
		t.Fatal(err)
	}
	withdrawn := 0
	for _, k := range redistest.Keys(t, d.rdb) {
		if !strings.HasPrefix(k, "v:{shop:") || !strings.HasSuffix(k, ":M") {
			continue
		}
		withdrawn++
		if ttl := d.rdb.PTTL(ctx, k).Val(); ttl > 24*time.Hour+time.Minute {
			t.Errorf("%s expires in %v after the chats window became 1 day", k, ttl)
		}
	}
	if withdrawn != 1 {
		t.Errorf("%d sets of withdrawn chats, want the visitor's one", withdrawn)
	}
}

// The consent banner asks analytics only (invariant 2: a purpose not asked is
// absent). Its answer, accept or refuse, must neither record a marketing
// refusal nor withdraw the marketing opt-in the visitor gave when starting a
// chat: only marketing false does.
func TestBannerAnswerLeavesChatMarketing(t *testing.T) {
	t.Parallel()
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
	t.Parallel()
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

// A refusal that left marketing as it was, then a withdrawal of marketing that
// repeats the choice stored (both false, the chat's opt-in given without a
// choice to carry it): the withdrawal still reaches the chat. And a GPC
// objection repeated on every page view (never rate limited) writes one record.
func TestRepeatedChoiceStillWithdrawsChats(t *testing.T) {
	t.Parallel()
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

// A consent answer is stored as the visitor's choice with a consent record,
// and handed back in a token: an identity for a grant, a refusal token for a
// refusal (no visitor is created for a refusal); a refusal deletes behaviour
// data; a repeated answer writes nothing; DNT and GPC refuse any grant, GPC as
// an objection; the policy must be the site's.
func TestSetConsent(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name                 string
		mode                 visitor.ConsentMode
		prior                bool // the visitor granted analytics and viewed a page before
		analytics, marketing bool
		policy               string // "" for the site's
		dnt, gpc             bool
		code                 string
		kind                 visitor.TokenKind // of the token handed back, "" for none
		reason               visitor.Reason
		records              int  // consent records of the visitor
		dataKept             bool // the prior page view is still stored
		refusals             int64
	}{
		{name: "grant", mode: visitor.ConsentOptIn, analytics: true, kind: visitor.KindID, records: 1},
		{name: "grant with marketing", mode: visitor.ConsentOptIn, analytics: true, marketing: true, kind: visitor.KindID, records: 1},
		{name: "refusal without identity", mode: visitor.ConsentOptIn, kind: visitor.KindRefusal, refusals: 1},
		{name: "refusal on an opt-out site", mode: visitor.ConsentOptOut, kind: visitor.KindRefusal, refusals: 1},
		{name: "grant again", mode: visitor.ConsentOptIn, prior: true, analytics: true, kind: visitor.KindID, records: 1, dataKept: true},
		{name: "withdrawal", mode: visitor.ConsentOptIn, prior: true, kind: visitor.KindRefusal, records: 2},
		{name: "marketing added", mode: visitor.ConsentOptIn, prior: true, analytics: true, marketing: true, kind: visitor.KindID, records: 2, dataKept: true},
		{name: "outdated policy", mode: visitor.ConsentOptIn, analytics: true, policy: "2025-01", code: visitor.EPolicyOutdated},
		{name: "outdated policy with identity", mode: visitor.ConsentOptIn, prior: true, analytics: true, policy: "2025-01", code: visitor.EPolicyOutdated,
			records: 1, dataKept: true},
		{name: "withdrawal of an outdated policy", mode: visitor.ConsentOptIn, prior: true, policy: "2025-01", code: visitor.EPolicyOutdated,
			records: 1, dataKept: true},
		{name: "refusal with identity on an opt-out site", mode: visitor.ConsentOptOut, prior: true, kind: visitor.KindRefusal, records: 2},
		{name: "grant under dnt", mode: visitor.ConsentOptIn, analytics: true, dnt: true, reason: visitor.ReasonDNT},
		{name: "grant under gpc", mode: visitor.ConsentOptIn, analytics: true, gpc: true, reason: visitor.ReasonGPC},
		{name: "dnt keeps an earlier grant's data", mode: visitor.ConsentOptIn, prior: true, analytics: true, dnt: true, reason: visitor.ReasonDNT,
			records: 1, dataKept: true},
		{name: "gpc objects to an earlier grant", mode: visitor.ConsentOptIn, prior: true, analytics: true, gpc: true, reason: visitor.ReasonGPC, records: 2},
		{name: "refusal under dnt is a refusal", mode: visitor.ConsentOptIn, dnt: true, kind: visitor.KindRefusal, refusals: 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			site := consentSite("shop", tt.mode, visitor.IPTruncate)
			d := newConsentDomain(t, site)
			ctx := context.Background()
			var token, vid string
			if tt.prior {
				token = d.grant("shop", false)
				token = d.track("shop", token, "/pricing", "Pricing")
				vid = d.idOf("shop", token)
				d.clock.Advance(time.Minute)
			}
			policy := site.PolicyVersion
			if tt.policy != "" {
				policy = tt.policy
			}
			held := storeState(t, d.rdb)
			res, err := d.svc.SetConsent(ctx, visitor.ConsentRequest{Site: site, Analytics: tt.analytics, Marketing: tt.marketing,
				PolicyVersion: policy, Method: visitor.MethodBanner, Token: token, UserAgent: consentUA, IP: domainIP, DNT: tt.dnt, GPC: tt.gpc})
			if code := visitor.ErrorCode(err); code != tt.code {
				t.Fatalf("SetConsent = %v, want code %q", err, tt.code)
			}
			if !tt.prior && tt.kind != visitor.KindID || tt.code != "" {
				// A refusal without identity is only counted (invariants 2
				// and 10); a refused grant and an outdated policy store nothing.
				if diff := cmp.Diff(held, storeState(t, d.rdb)); diff != "" {
					t.Errorf("SetConsent changed the store (-before +after):\n%s", diff)
				}
			}
			var kind visitor.TokenKind
			if res.Token != "" {
				tok, ok := d.signer.Verify(res.Token, site.ID, d.clock.Now())
				if !ok {
					t.Fatalf("SetConsent handed back a token that does not verify")
				}
				kind = tok.Kind
				if kind == visitor.KindID {
					if vid != "" && tok.VisitorID != vid {
						t.Errorf("the answer changed the visitor's identity")
					}
					vid = tok.VisitorID
				}
			}
			if kind != tt.kind || res.Reason != tt.reason {
				t.Errorf("SetConsent = token %q, reason %q; want %q, %q", kind, res.Reason, tt.kind, tt.reason)
			}
			if kind == visitor.KindRefusal {
				// A refusal token lasts 12 months on an opt-out site, else
				// consent_valid_days.
				valid := time.Duration(site.ConsentValidDays) * 24 * time.Hour
				if tt.mode == visitor.ConsentOptOut {
					valid = 365 * 24 * time.Hour
				}
				tok, _ := d.signer.Verify(res.Token, site.ID, d.clock.Now())
				if got := tok.Expires.Sub(d.clock.Now()); got < valid-time.Second || got > valid+time.Second {
					t.Errorf("refusal token valid %v, want %v", got, valid)
				}
			}
			if tt.prior && kind == visitor.KindRefusal {
				// The refused identity is never tracked again, and the live
				// entry goes with its behaviour data.
				again, err := d.svc.Track(ctx, visitor.Hit{Site: site, Type: visitor.HitPageview, URL: consentOrigin + "/again",
					Token: token, UserAgent: consentUA, IP: domainIP})
				if err != nil || again.Tracked || again.Reason != visitor.ReasonNoConsent {
					t.Errorf("the refused identity's next page view = %+v, %v; want no_consent", again, err)
				}
				live, err := d.svc.Live(ctx, visitor.Actor{Site: site, KeyID: "agent-1", Role: visitor.RoleOperator}, 0, "", 0)
				if err != nil || len(live.Visitors) != 0 {
					t.Errorf("Live after the refusal = %+v, %v; want nobody", live.Visitors, err)
				}
			}
			if tt.kind == visitor.KindID && (res.Choice.Analytics != tt.analytics || res.Choice.Marketing != tt.marketing) {
				t.Errorf("choice = %+v; want analytics %v, marketing %v", res.Choice, tt.analytics, tt.marketing)
			}
			if res.Token != "" {
				// The choice read back for the token is the one answered.
				got, err := d.svc.Consent(ctx, site, res.Token)
				if err != nil || got.Analytics != (tt.kind == visitor.KindID) || got.Marketing != (tt.kind == visitor.KindID && tt.marketing) {
					t.Errorf("Consent(token) = %+v, %v", got, err)
				}
			}
			if got := d.stat(site, "refusal"); got != tt.refusals {
				t.Errorf("refusal counter = %d, want %d", got, tt.refusals)
			}
			if vid == "" {
				return
			}
			data := d.data("shop", vid)
			if len(data.Consents) != tt.records {
				t.Errorf("%d consent records, want %d: %+v", len(data.Consents), tt.records, data.Consents)
			}
			written := tt.records > 0 && (!tt.prior || tt.records > 1)
			if n := len(data.Consents); written && tt.code == "" && tt.reason == "" {
				// The newest record is the proof of this answer, complete.
				last := data.Consents[n-1]
				sum := sha256.Sum256([]byte(site.LegalText))
				if last.VisitorID != vid || !last.Time.Equal(d.clock.Now()) || last.Analytics == nil || *last.Analytics != tt.analytics ||
					last.PolicyVersion != site.PolicyVersion || last.TextSHA256 != hex.EncodeToString(sum[:]) ||
					last.Method != visitor.MethodBanner || last.IP != "81.2.69.0/24" || last.UserAgent != consentUA {
					t.Errorf("consent record = %+v; want the visitor, time, choice, policy, text hash, method, truncated IP and user agent", last)
				}
			}
			if tt.records > 0 {
				choice, ok, err := d.store.ConsentChoice(ctx, site, d.hasher.VisitorKey(site.ID, vid))
				granted := tt.analytics && !tt.gpc
				if tt.code != "" {
					granted = true // a refused request leaves the earlier grant
				}
				if err != nil || !ok || choice.Analytics != granted {
					t.Errorf("stored choice = %+v (%v), %v; want analytics %v", choice, ok, err, granted)
				}
			}
			if kept := len(data.Sessions) > 0; tt.prior && kept != tt.dataKept {
				t.Errorf("the earlier page view is kept: %v, want %v", kept, tt.dataKept)
			}
		})
	}
}

// stat is site's counter name of today, read through the store.
func (d *consentDomain) stat(site *visitor.Site, name string) int64 {
	d.t.Helper()
	m, err := d.store.Stats(context.Background(), site, d.clock.Now())
	if err != nil {
		d.t.Fatal(err)
	}
	return m[name]
}

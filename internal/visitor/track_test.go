package visitor_test

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// What a session observed (page, title, referrer, device, location, IP) lives
// in the session's record only: once the sessions window has passed, no key
// holds it, though the profile (profiles window) is still there; the live view
// and the chat context read it from the session record.
func TestSessionDataLivesInSessionRecord(t *testing.T) {
	t.Parallel()
	d := newDomain(t, nil)
	tok := d.pageview(t, "", "/landing", "Landing page", "https://news.example/story")
	tok = d.pageview(t, tok, "/pricing", "Pricing plans", "")
	vid := d.visitorID(t, tok)

	page, err := d.svc.Live(d.ctx, d.operator, 0, "", 0)
	if err != nil || len(page.Visitors) != 1 {
		t.Fatalf("Live = %+v, %v; want one row", page, err)
	}
	row := page.Visitors[0]
	if row.CurrentURL != domainOrigin+"/pricing" || row.CurrentTitle != "Pricing plans" || row.Pages != 2 ||
		row.Referrer != "https://news.example" || row.Device.Browser != "Firefox" || row.Location.City != "Berlin" {
		t.Errorf("live row = %+v; want the session's current page, pages, referrer, device and location", row)
	}
	res, err := d.svc.StartChat(d.ctx, visitor.ChatRequest{Site: d.site, Contact: visitor.Contact{Name: "Ada"}, Token: tok, UserAgent: domainUA})
	if err != nil {
		t.Fatal(err)
	}
	cv, err := d.svc.ChatContext(d.ctx, d.operator, res.ChatID)
	if err != nil {
		t.Fatal(err)
	}
	if len(cv.Trail) != 2 || cv.Referrer != "https://news.example" || cv.Device.OS != "Linux" || cv.Location.Country != "DE" {
		t.Errorf("chat context = trail %d, referrer %q, device %+v, location %+v; want the session's", len(cv.Trail), cv.Referrer, cv.Device, cv.Location)
	}
	if err := d.svc.EraseChat(d.ctx, d.privacy, res.ChatID); err != nil {
		t.Fatal(err)
	}

	e, err := d.svc.ExportVisitor(d.ctx, d.privacy, vid)
	if err != nil {
		t.Fatal(err)
	}
	if p := e.Profile; p == nil || p.Sessions != 1 || p.CurrentSession == "" || p.FirstSeen.IsZero() || p.LastSeen.IsZero() {
		t.Fatalf("export profile = %+v; want first seen, sessions, current session, write time", e.Profile)
	}
	if len(e.Sessions) != 1 {
		t.Fatalf("export holds %d sessions, want 1", len(e.Sessions))
	}
	if s := e.Sessions[0]; s.IP != "192.0.2.0/24" || s.Referrer != "https://news.example" || s.Device.Browser != "Firefox" ||
		s.Location.City != "Berlin" || s.CurrentURL != domainOrigin+"/pricing" || s.PageViews != 2 {
		t.Errorf("export session = %+v; want what the session observed", s)
	}

	// The sessions window shrinks to one day; two days later the job has run.
	r := d.site.Retention
	r.Sessions = 1
	if _, err := d.svc.SetRetention(d.ctx, d.privacy, r); err != nil {
		t.Fatal(err)
	}
	d.clock.Advance(48 * time.Hour)
	if err := d.svc.RunRetentionJobs(d.ctx, "pod-a"); err != nil {
		t.Fatal(err)
	}
	e, err = d.svc.ExportVisitor(d.ctx, d.privacy, vid)
	if err != nil {
		t.Fatal(err)
	}
	if e.Profile == nil || e.Profile.Sessions != 1 {
		t.Errorf("export profile after the sessions window = %+v; want the profile kept", e.Profile)
	}
	if len(e.Sessions) != 0 {
		t.Errorf("export holds %d sessions after the sessions window, want none", len(e.Sessions))
	}
	// No key holds what the session observed any more.
	for k, v := range redistest.DumpValues(t, d.rdb) {
		for _, observed := range []string{"/pricing", "Pricing plans", "/landing", "news.example", "192.0.2.", "Firefox", "Berlin"} {
			if strings.Contains(v, observed) {
				t.Errorf("key %s still holds %q after the sessions window", k, observed)
			}
		}
	}
}

// A profile written before sessions kept their own data is migrated: on the
// next page view (nothing of its live session lost), on a read (live view,
// export) and by the retention job for those that never come back.
func TestLegacyProfileMigrates(t *testing.T) {
	t.Parallel()
	d := newDomain(t, nil)
	now := d.clock.Now()
	// legacy writes a profile and its current session as the hit script did
	// before issue 17: the session's data in the profile.
	legacy := func(vid string, last time.Time) string {
		t.Helper()
		p := "v:{shop:" + d.vkey(vid) + "}"
		lm := last.UnixMilli()
		if err := d.rdb.HSet(d.ctx, p, "vid", vid, "fs", lm-60_000, "ls", lm, "br", "Safari", "bv", "17", "os", "iOS", "mob", "1",
			"co", "FR", "rg", "IDF", "ci", "Paris", "tz", "Europe/Paris", "ip", "198.51.100.0", "sid", "oldsid", "ss", lm-60_000,
			"sl", lm, "ps", lm, "pc", "0", "np", 2, "ns", 1, "rf", "https://search.example", "w", lm,
			"cu", domainOrigin+"/old-b", "ct", "Old B").Err(); err != nil {
			t.Fatal(err)
		}
		s := p + ":s:oldsid"
		if err := d.rdb.RPush(d.ctx, s, fmt.Sprintf("#%d\thttps://search.example", lm-60_000),
			fmt.Sprintf("%d\t60000\t%s/old-a\tOld A", lm-60_000, domainOrigin), fmt.Sprintf("%d\t0\t%s/old-b\tOld B", lm, domainOrigin)).Err(); err != nil {
			t.Fatal(err)
		}
		d.rdb.ZAdd(d.ctx, p+":S", redisZ(lm, "oldsid"))
		for _, k := range []string{p, s, p + ":S"} {
			d.rdb.Expire(d.ctx, k, 90*24*time.Hour)
		}
		d.rdb.ZAdd(d.ctx, redisstore.LiveKeyOf("shop", d.vkey(vid)), redisZ(lm, d.vkey(vid)))
		d.rdb.Expire(d.ctx, redisstore.LiveKeyOf("shop", d.vkey(vid)), time.Hour)
		d.rdb.ZAdd(d.ctx, "sj:{shop}", redisZ(lm, d.vkey(vid)))
		d.rdb.Expire(d.ctx, "sj:{shop}", 400*24*time.Hour)
		return p
	}
	live := visitor.NewVisitorID()
	liveProfile := legacy(live, now.Add(-time.Minute))
	gone := visitor.NewVisitorID()
	goneProfile := legacy(gone, now.Add(-2*time.Minute))

	// The live view reads the legacy session.
	page, err := d.svc.Live(d.ctx, d.operator, 0, "", 0)
	if err != nil || len(page.Visitors) != 2 {
		t.Fatalf("Live = %+v, %v; want both legacy visitors", page, err)
	}
	for _, row := range page.Visitors {
		if row.CurrentURL != domainOrigin+"/old-b" || row.Pages != 2 || row.Location.City != "Paris" || row.Device.OS != "iOS" || row.Referrer != "https://search.example" {
			t.Errorf("live row of a legacy profile = %+v", row)
		}
	}
	// The live visitor goes on: the same session, its pages kept.
	tok := d.signID(t, live, now)
	d.pageview(t, tok, "/new-c", "New C", "")
	e, err := d.svc.ExportVisitor(d.ctx, d.privacy, live)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Sessions) != 1 {
		t.Fatalf("export of the live legacy visitor holds %d sessions, want its one session", len(e.Sessions))
	}
	s := e.Sessions[0]
	if s.ID != "oldsid" || len(s.Pages) != 3 || s.PageViews != 3 || s.IP != "198.51.100.0" || s.Location.City != "Paris" ||
		s.Referrer != "https://search.example" || s.CurrentURL != domainOrigin+"/new-c" || s.Pages[1].Duration <= 0 {
		t.Errorf("migrated live session = %+v; want the old session with its three pages and its data", s)
	}
	assertIdentityOnly(t, d, liveProfile)

	// The one that never comes back is migrated by the retention job.
	if err := d.svc.RunRetentionJobs(d.ctx, "pod-a"); err != nil {
		t.Fatal(err)
	}
	assertIdentityOnly(t, d, goneProfile)
	e, err = d.svc.ExportVisitor(d.ctx, d.privacy, gone)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Sessions) != 1 || e.Sessions[0].IP != "198.51.100.0" || e.Sessions[0].PageViews != 2 {
		t.Errorf("export of the migrated visitor = %+v; want its session with the data moved into it", e.Sessions)
	}
}

// assertIdentityOnly fails unless the profile hash holds identity-level fields only.
func assertIdentityOnly(tb testing.TB, d *domain, profile string) {
	tb.Helper()
	m, err := d.rdb.HGetAll(d.ctx, profile).Result()
	if err != nil {
		tb.Fatal(err)
	}
	for f := range m {
		switch f {
		case "vid", "fs", "ns", "sid", "w", "ix":
		default:
			tb.Errorf("profile %s still holds %s=%q", profile, f, m[f])
		}
	}
}

// A session stores at most 500 pages; later ones are counted, and the chat
// context returns at most the stored ones.
func TestSessionPagesCapped(t *testing.T) {
	t.Parallel()
	d := newDomain(t, nil)
	const views = redisstore.MaxSessionPages + 20
	tok := ""
	for i := range views {
		tok = d.pageview(t, tok, fmt.Sprintf("/p/%d", i), fmt.Sprintf("Page %d", i), "")
		d.clock.Advance(time.Second)
	}
	vid := d.visitorID(t, tok)
	e, err := d.svc.ExportVisitor(d.ctx, d.privacy, vid)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Sessions) != 1 {
		t.Fatalf("export holds %d sessions, want 1", len(e.Sessions))
	}
	s := e.Sessions[0]
	if len(s.Pages) != redisstore.MaxSessionPages || s.PageViews != views {
		t.Errorf("session stores %d pages and counts %d; want %d stored, %d counted", len(s.Pages), s.PageViews, redisstore.MaxSessionPages, views)
	}
	if got, want := s.Pages[len(s.Pages)-1].URL, fmt.Sprintf("%s/p/%d", domainOrigin, redisstore.MaxSessionPages-1); got != want {
		t.Errorf("last stored page = %q, want %q", got, want)
	}
	if got, want := s.CurrentURL, fmt.Sprintf("%s/p/%d", domainOrigin, views-1); got != want {
		t.Errorf("current page = %q, want %q", got, want)
	}
	// The last stored page's time was closed when the next (counted) page came.
	if got := s.Pages[len(s.Pages)-1].Duration; got != time.Second {
		t.Errorf("last stored page lasted %v, want 1s", got)
	}
	page, err := d.svc.Live(d.ctx, d.operator, 0, "", 0)
	if err != nil || len(page.Visitors) != 1 || page.Visitors[0].Pages != views {
		t.Errorf("Live = %+v, %v; want one row counting %d pages", page, err, views)
	}
	res, err := d.svc.StartChat(d.ctx, visitor.ChatRequest{Site: d.site, Contact: visitor.Contact{Name: "Ada"}, Token: tok, UserAgent: domainUA})
	if err != nil {
		t.Fatal(err)
	}
	cv, err := d.svc.ChatContext(d.ctx, d.operator, res.ChatID)
	if err != nil {
		t.Fatal(err)
	}
	if len(cv.Trail) != redisstore.MaxSessionPages {
		t.Errorf("chat context trail holds %d pages, want %d", len(cv.Trail), redisstore.MaxSessionPages)
	}
}

// stats reads site's counters of the day of now through the store.
func stats(tb testing.TB, st stack, site *visitor.Site) map[string]int64 {
	tb.Helper()
	m, err := st.store.Stats(context.Background(), site, st.clock.Now())
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// grantToken records an analytics grant on site through the banner and
// returns the identity token it issues.
func grantToken(tb testing.TB, st stack, site *visitor.Site) string {
	tb.Helper()
	res, err := st.svc.SetConsent(context.Background(), visitor.ConsentRequest{Site: site, Analytics: true,
		PolicyVersion: site.PolicyVersion, Method: visitor.MethodBanner, UserAgent: domainUA, IP: domainIP})
	if err != nil || res.Token == "" {
		tb.Fatalf("grant on %s: %v (token %q)", site.ID, err, res.Token)
	}
	return res.Token
}

// refusalToken records a refusal on site through the banner and returns the
// refusal token it issues.
func refusalToken(tb testing.TB, st stack, site *visitor.Site) string {
	tb.Helper()
	res, err := st.svc.SetConsent(context.Background(), visitor.ConsentRequest{Site: site,
		PolicyVersion: site.PolicyVersion, Method: visitor.MethodBanner, UserAgent: domainUA, IP: domainIP})
	if err != nil || res.Token == "" {
		tb.Fatalf("refuse on %s: %v (token %q)", site.ID, err, res.Token)
	}
	return res.Token
}

// Invariants 1, 2, 9 and 10: GPC, then DNT, then bots, then consent decide
// whether a hit is tracked, in that order, in every consent mode; what is not
// tracked is counted under its reason (the counters hold no URL), and nothing
// of it is stored and no expiry refreshed, even for a known visitor.
func TestTrackPrivacyPrecedence(t *testing.T) {
	t.Parallel()
	const bot = "Googlebot/2.1 (+http://www.google.com/bot.html)"
	none := func(testing.TB, stack, *visitor.Site) string { return "" }
	// tracked is a visitor with a page view on record (after a grant where
	// the site asks for one); its token.
	tracked := func(tb testing.TB, st stack, site *visitor.Site) string {
		tb.Helper()
		token := ""
		if site.Consent != visitor.ConsentOptOut {
			token = grantToken(tb, st, site)
		}
		res, err := st.svc.Track(context.Background(), visitor.Hit{Site: site, Type: visitor.HitPageview, URL: domainOrigin + "/",
			Token: token, UserAgent: domainUA, IP: domainIP})
		if err != nil || !res.Tracked {
			tb.Fatalf("first page view: %+v, %v", res, err)
		}
		return res.Token
	}
	oldGrant := func(tb testing.TB, st stack, site *visitor.Site) string {
		now := st.clock.Now()
		return st.signer.Sign(visitor.Token{Kind: visitor.KindID, Site: site.ID, IssuedAt: now, Expires: now.Add(time.Hour),
			VisitorID: visitor.NewVisitorID(), ConsentUntil: now.Add(time.Hour), ConsentPolicy: "2025-01"})
	}
	for _, tt := range []struct {
		name     string
		mode     visitor.ConsentMode
		token    func(testing.TB, stack, *visitor.Site) string
		hit      visitor.HitType
		noURL    bool // a count ping: a page view without URL
		dnt, gpc bool
		ua       string
		tracked  bool
		reason   visitor.Reason
		forget   bool   // the identity cookie is to be expired
		counted  string // the day's counter that grows by one ("" for none)
		objected bool   // the visitor's choice is now a refusal and its behaviour data gone
	}{
		{name: "opt-out new visitor", mode: visitor.ConsentOptOut, token: none, tracked: true, counted: "tracked"},
		{name: "opt-out dnt", mode: visitor.ConsentOptOut, token: none, dnt: true, reason: visitor.ReasonDNT, counted: "dnt"},
		{name: "opt-out gpc", mode: visitor.ConsentOptOut, token: none, gpc: true, reason: visitor.ReasonGPC, counted: "gpc"},
		{name: "gpc before dnt", mode: visitor.ConsentOptOut, token: none, dnt: true, gpc: true, reason: visitor.ReasonGPC, counted: "gpc"},
		{name: "opt-out bot", mode: visitor.ConsentOptOut, token: none, ua: bot, reason: visitor.ReasonBot, counted: "bot"},
		{name: "dnt before bot", mode: visitor.ConsentOptOut, token: none, ua: bot, dnt: true, reason: visitor.ReasonDNT, counted: "dnt"},
		{name: "opt-out refusal token", mode: visitor.ConsentOptOut, token: refusalToken, reason: visitor.ReasonNoConsent, counted: "no_consent"},
		{name: "opt-out heartbeat without session", mode: visitor.ConsentOptOut, token: none, hit: visitor.HitHeartbeat, reason: visitor.ReasonNoSession},
		{name: "opt-in new visitor", mode: visitor.ConsentOptIn, token: none, reason: visitor.ReasonNoConsent, counted: "no_consent"},
		{name: "opt-in grant", mode: visitor.ConsentOptIn, token: grantToken, tracked: true, counted: "tracked"},
		{name: "opt-in grant of an older policy", mode: visitor.ConsentOptIn, token: oldGrant, reason: visitor.ReasonNoConsent, counted: "no_consent"},
		{name: "opt-in grant lapsed after consent_valid_days", mode: visitor.ConsentOptIn, token: func(tb testing.TB, st stack, site *visitor.Site) string {
			token := tracked(tb, st, site)
			st.clock.Advance(time.Duration(site.ConsentValidDays) * 24 * time.Hour)
			return token
		}, reason: visitor.ReasonNoConsent, counted: "no_consent"},
		{name: "opt-in refusal token", mode: visitor.ConsentOptIn, token: refusalToken, reason: visitor.ReasonNoConsent, counted: "no_consent"},
		{name: "opt-in grant under dnt", mode: visitor.ConsentOptIn, token: grantToken, dnt: true, reason: visitor.ReasonDNT, forget: true, counted: "dnt"},
		{name: "opt-in grant under gpc objects", mode: visitor.ConsentOptIn, token: grantToken, gpc: true, reason: visitor.ReasonGPC, forget: true,
			counted: "gpc", objected: true},
		{name: "opt-in grant as bot", mode: visitor.ConsentOptIn, token: grantToken, ua: bot, reason: visitor.ReasonBot, counted: "bot"},
		{name: "on-chat new visitor", mode: visitor.ConsentOnChat, token: none, reason: visitor.ReasonNoConsent, counted: "no_consent"},
		{name: "on-chat grant", mode: visitor.ConsentOnChat, token: grantToken, tracked: true, counted: "tracked"},
		{name: "opt-out identity under dnt", mode: visitor.ConsentOptOut, token: tracked, dnt: true, reason: visitor.ReasonDNT, counted: "dnt"},
		{name: "opt-out identity's heartbeat under dnt", mode: visitor.ConsentOptOut, token: tracked, hit: visitor.HitHeartbeat, dnt: true, reason: visitor.ReasonDNT},
		{name: "opt-out identity replayed by a bot", mode: visitor.ConsentOptOut, token: tracked, ua: bot, reason: visitor.ReasonBot, counted: "bot"},
		{name: "opt-out identity under gpc objects", mode: visitor.ConsentOptOut, token: tracked, gpc: true, reason: visitor.ReasonGPC,
			counted: "gpc", objected: true},
		{name: "foreign token under dnt", mode: visitor.ConsentOptOut, token: func(testing.TB, stack, *visitor.Site) string { return "not-a-token" },
			dnt: true, reason: visitor.ReasonDNT, counted: "dnt"},
		{name: "dnt count ping without url", mode: visitor.ConsentOptOut, token: none, noURL: true, dnt: true, reason: visitor.ReasonDNT, counted: "dnt"},
		{name: "gpc count ping without url", mode: visitor.ConsentOptOut, token: none, noURL: true, gpc: true, reason: visitor.ReasonGPC, counted: "gpc"},
		{name: "opt-in heartbeat of a grant without a page view", mode: visitor.ConsentOptIn, token: grantToken, hit: visitor.HitHeartbeat, reason: visitor.ReasonNoSession},
		{name: "opt-out leave without identity", mode: visitor.ConsentOptOut, token: none, hit: visitor.HitLeave, reason: visitor.ReasonNoSession},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			site := domainSite()
			site.Consent = tt.mode
			st := newStack(t, []*visitor.Site{site}, domainDevices{}, domainLocator{})
			ctx := context.Background()
			token := tt.token(t, st, site)
			// The visitor with a token has a page view on record, so that an
			// objection has behaviour data to delete.
			var vid string
			if tok, ok := st.signer.Verify(token, site.ID, st.clock.Now()); ok && tok.Kind == visitor.KindID {
				vid = tok.VisitorID
				if tt.objected && tt.mode != visitor.ConsentOptOut {
					if res, err := st.svc.Track(ctx, visitor.Hit{Site: site, Type: visitor.HitPageview, URL: domainOrigin + "/",
						Token: token, UserAgent: domainUA, IP: domainIP}); err != nil || !res.Tracked {
						t.Fatalf("first page view: %+v, %v", res, err)
					}
				}
			}
			// Time moves on, so that a refreshed expiry would show.
			st.clock.Advance(time.Hour)
			before, held := stats(t, st, site), storeState(t, st.rdb)
			h := visitor.Hit{Site: site, Type: visitor.HitPageview, URL: domainOrigin + "/pricing", Token: token,
				UserAgent: domainUA, IP: domainIP, DNT: tt.dnt, GPC: tt.gpc}
			if tt.hit != "" {
				h.Type, h.URL = tt.hit, ""
			}
			if tt.noURL {
				h.URL = ""
			}
			if tt.ua != "" {
				h.UserAgent = tt.ua
			}
			res, err := st.svc.Track(ctx, h)
			if err != nil {
				t.Fatal(err)
			}
			if res.Tracked != tt.tracked || res.Reason != tt.reason || res.ForgetIdentity != (tt.forget || (tt.dnt || tt.gpc) && token != "") {
				t.Errorf("Track = tracked %v, reason %q, forget %v; want %v, %q, %v", res.Tracked, res.Reason, res.ForgetIdentity,
					tt.tracked, tt.reason, tt.forget || (tt.dnt || tt.gpc) && token != "")
			}
			after := stats(t, st, site)
			for _, k := range []string{"tracked", "gpc", "dnt", "bot", "no_consent", "no_session"} {
				want := before[k]
				if k == tt.counted {
					want++
				}
				if after[k] != want {
					t.Errorf("counter %s = %d, want %d", k, after[k], want)
				}
			}
			if !tt.tracked && !tt.objected {
				// Nothing of the visitor is written and no expiry refreshed;
				// only the day's counters (which hold no URL) may change.
				if diff := cmp.Diff(held, storeState(t, st.rdb)); diff != "" {
					t.Errorf("an untracked hit changed the store (-before +after):\n%s", diff)
				}
			}
			if tt.tracked {
				if vid == "" {
					tok, ok := st.signer.Verify(res.Token, site.ID, st.clock.Now())
					if !ok || !res.Issued {
						t.Fatalf("tracked new visitor without an issued identity: %+v", res)
					}
					vid = tok.VisitorID
				}
				d, err := st.store.VisitorData(ctx, site, st.hasher.VisitorKey(site.ID, vid))
				if err != nil {
					t.Fatal(err)
				}
				if len(d.Sessions) != 1 || d.Sessions[0].CurrentURL != domainOrigin+"/pricing" {
					t.Errorf("sessions = %+v; want one on /pricing", d.Sessions)
				}
			} else if res.Token != "" && res.Token != token {
				t.Errorf("untracked hit issued a token")
			}
			if tt.objected {
				d, err := st.store.VisitorData(ctx, site, st.hasher.VisitorKey(site.ID, vid))
				if err != nil {
					t.Fatal(err)
				}
				if d.Profile != nil || len(d.Sessions) != 0 || d.Choice == nil || d.Choice.Analytics {
					t.Errorf("after the objection: profile %+v, %d sessions, choice %+v; want no behaviour data and a refusal", d.Profile, len(d.Sessions), d.Choice)
				}
				if !slices.ContainsFunc(d.Consents, func(r visitor.ConsentRecord) bool { return r.Method == visitor.MethodGPC }) {
					t.Errorf("consent records = %+v; want the objection, by gpc", d.Consents)
				}
			}
		})
	}
}

// A session is a run of hits without a gap longer than the site's
// session_timeout, at most session_max long (shop: 30 min, 4 h); heartbeats
// keep it alive, a heartbeat outside one is no_session, and a leave closes the
// current page.
func TestTrackSessions(t *testing.T) {
	t.Parallel()
	type step struct {
		after time.Duration
		hit   visitor.HitType
	}
	pv, hb := visitor.HitPageview, visitor.HitHeartbeat
	keepAlive := []step{{0, pv}}
	for range 11 {
		keepAlive = append(keepAlive, step{20 * time.Minute, hb})
	}
	for _, tt := range []struct {
		name      string
		steps     []step
		last      visitor.Reason  // the last hit's reason ("" when tracked)
		sessions  int             // Profile.Sessions
		pageViews int             // of the current session
		closed    bool            // the current page is closed
		durations []time.Duration // time on each page of the current session, when given
	}{
		{name: "page views within the timeout share a session", steps: []step{{0, pv}, {10 * time.Minute, pv}, {29 * time.Minute, pv}}, sessions: 1, pageViews: 3},
		{name: "a gap beyond the timeout starts a session", steps: []step{{0, pv}, {10 * time.Minute, pv}, {31 * time.Minute, pv}}, sessions: 2, pageViews: 1},
		{name: "heartbeats keep a session alive", steps: []step{{0, pv}, {20 * time.Minute, hb}, {20 * time.Minute, hb}, {20 * time.Minute, pv}}, sessions: 1, pageViews: 2},
		{name: "a session ends at its maximum length", steps: append(slices.Clone(keepAlive), step{25 * time.Minute, pv}), sessions: 2, pageViews: 1},
		{name: "a heartbeat after the timeout has no session", steps: []step{{0, pv}, {31 * time.Minute, hb}}, last: visitor.ReasonNoSession, sessions: 1, pageViews: 1},
		{name: "a leave closes the current page", steps: []step{{0, pv}, {time.Minute, visitor.HitLeave}}, sessions: 1, pageViews: 1, closed: true},
		{name: "a month later the same visitor starts a session", steps: []step{{0, pv}, {2 * time.Hour, pv}, {30 * 24 * time.Hour, pv}}, sessions: 3, pageViews: 1},
		{name: "exactly the timeout idle keeps the session", steps: []step{{0, pv}, {30 * time.Minute, pv}}, sessions: 1, pageViews: 2},
		{name: "a second past the timeout starts a session", steps: []step{{0, pv}, {30*time.Minute + time.Second, pv}}, sessions: 2, pageViews: 1},
		{name: "a heartbeat and a leave time the page", steps: []step{{0, pv}, {20 * time.Second, hb}, {10 * time.Second, visitor.HitLeave}},
			sessions: 1, pageViews: 1, closed: true, durations: []time.Duration{30 * time.Second}},
		{name: "a page view after a leave keeps the closed page's time", steps: []step{{0, pv}, {30 * time.Second, visitor.HitLeave}, {30 * time.Second, pv}},
			sessions: 1, pageViews: 2, durations: []time.Duration{30 * time.Second, 0}},
		{name: "a page view closes the page before it", steps: []step{{0, pv}, {15 * time.Second, hb}, {5 * time.Second, pv}},
			sessions: 1, pageViews: 2, durations: []time.Duration{20 * time.Second, 0}},
		{name: "time on a page is capped at the timeout", steps: []step{{0, pv}, {20 * time.Minute, hb}, {20 * time.Minute, hb}, {20 * time.Minute, hb}},
			sessions: 1, pageViews: 1, durations: []time.Duration{30 * time.Minute}},
		{name: "a page view after capped heartbeats keeps the cap", steps: []step{{0, pv}, {20 * time.Minute, hb}, {20 * time.Minute, hb}, {20 * time.Minute, hb}, {time.Second, pv}},
			sessions: 1, pageViews: 2, durations: []time.Duration{30 * time.Minute, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDomain(t, nil)
			var token string
			var res visitor.TrackResult
			for i, s := range tt.steps {
				d.clock.Advance(s.after)
				h := visitor.Hit{Site: d.site, Type: s.hit, Token: token, UserAgent: domainUA, IP: domainIP}
				if s.hit == pv {
					h.URL = fmt.Sprintf("%s/page/%d", domainOrigin, i)
				}
				var err error
				if res, err = d.svc.Track(d.ctx, h); err != nil {
					t.Fatalf("step %d: %v", i, err)
				}
				if token == "" {
					token = res.Token
				} else if res.Tracked && (res.Token != token || res.Issued) {
					// A returning visitor keeps the token issued first: its
					// lifetime is fixed at issue.
					t.Errorf("step %d: token %q (issued %v), want the first one kept", i, res.Token, res.Issued)
				}
			}
			if res.Reason != tt.last || res.Tracked != (tt.last == "") {
				t.Errorf("last hit = tracked %v, reason %q; want reason %q", res.Tracked, res.Reason, tt.last)
			}
			data, err := d.store.VisitorData(d.ctx, d.site, d.vkey(d.visitorID(t, token)))
			if err != nil {
				t.Fatal(err)
			}
			if data.Profile == nil || data.Profile.Sessions != tt.sessions {
				t.Fatalf("profile = %+v; want %d sessions", data.Profile, tt.sessions)
			}
			i := slices.IndexFunc(data.Sessions, func(s visitor.SessionData) bool { return s.ID == data.Profile.CurrentSession })
			if i < 0 {
				t.Fatalf("the current session %q is not among %+v", data.Profile.CurrentSession, data.Sessions)
			}
			cur := data.Sessions[i]
			if cur.PageViews != tt.pageViews || cur.CurrentClosed != tt.closed {
				t.Errorf("current session = %d page views, closed %v; want %d, %v", cur.PageViews, cur.CurrentClosed, tt.pageViews, tt.closed)
			}
			if tt.durations != nil {
				var got []time.Duration
				for _, p := range cur.Pages {
					got = append(got, p.Duration)
				}
				if diff := cmp.Diff(tt.durations, got); diff != "" {
					t.Errorf("time on the current session's pages (-want +got):\n%s", diff)
				}
			}
		})
	}
}

// A page view whose URL is not the site's, or not an absolute http(s) URL, is
// refused with its error code and writes nothing, for a new or a returning
// visitor.
func TestTrackRejectedURLWritesNothing(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name      string
		url       string
		returning bool
		code      string
	}{
		{name: "other origin", url: "https://evil.example/products/42", code: visitor.EURLNotInSite},
		{name: "other scheme", url: "http://shop.example/", code: visitor.EURLNotInSite},
		{name: "other origin, returning visitor", url: "https://evil.example/", returning: true, code: visitor.EURLNotInSite},
		{name: "javascript", url: "javascript:alert(1)", code: visitor.EInvalid},
		{name: "relative, returning visitor", url: "/products/42", returning: true, code: visitor.EInvalid},
		{name: "missing", url: "", code: visitor.EInvalid},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDomain(t, nil)
			token := ""
			if tt.returning {
				token = d.pageview(t, "", "/", "Home", "")
			}
			d.clock.Advance(time.Minute)
			held := storeState(t, d.rdb)
			counted := stats(t, stack{store: d.store, clock: d.clock}, d.site)
			res, err := d.svc.Track(d.ctx, visitor.Hit{Site: d.site, Type: visitor.HitPageview, URL: tt.url, Token: token,
				UserAgent: domainUA, IP: domainIP})
			if code := visitor.ErrorCode(err); code != tt.code {
				t.Fatalf("Track = %+v, %v; want code %q", res, err, tt.code)
			}
			if res.Token != "" {
				t.Errorf("a refused page view handed back a token")
			}
			if diff := cmp.Diff(held, storeState(t, d.rdb)); diff != "" {
				t.Errorf("a refused page view changed the store (-before +after):\n%s", diff)
			}
			if diff := cmp.Diff(counted, stats(t, stack{store: d.store, clock: d.clock}, d.site)); diff != "" {
				t.Errorf("a refused page view was counted (-before +after):\n%s", diff)
			}
		})
	}
}

// A token that is tampered, expired, of another site or signed under an
// unknown secret is foreign: the caller is a new visitor, never an error, and
// the visitor the token was made from is left as it was. The same browser on
// two sites is two unrelated visitors (invariant 7): nothing of one is stored
// under the other's site.
func TestTrackForeignTokenMakesANewVisitor(t *testing.T) {
	t.Parallel()
	unknown, err := visitor.NewSigner([][]byte{[]byte(strings.Repeat("u", visitor.MinSecretBytes))})
	if err != nil {
		t.Fatal(err)
	}
	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		return string(b)
	}
	for _, tt := range []struct {
		name string
		on   string // the site the token is presented on
		// present turns the visitor's real token into the one presented.
		present func(st stack, token, id string) string
	}{
		{name: "payload byte flipped", on: "shop", present: func(_ stack, token, _ string) string { return flip(token, 8) }},
		{name: "signature byte flipped", on: "shop", present: func(_ stack, token, _ string) string { return flip(token, len(token)-3) }},
		{name: "expired", on: "shop", present: func(st stack, token, _ string) string {
			st.clock.Advance(visitor.MaxCookieLifetime + time.Second)
			return token
		}},
		{name: "of another site", on: "blog", present: func(_ stack, token, _ string) string { return token }},
		{name: "the real visitor id under an unknown secret", on: "shop", present: func(st stack, _, id string) string {
			now := st.clock.Now()
			return unknown.Sign(visitor.Token{Kind: visitor.KindID, Site: "shop", IssuedAt: now, Expires: now.Add(time.Hour), VisitorID: id})
		}},
		{name: "garbage", on: "shop", present: func(stack, string, string) string { return "not-a-token" }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			shop, blog := domainSite(), domainSite()
			blog.ID, blog.Origins = "blog", []string{"https://blog.example"}
			sites := map[string]*visitor.Site{"shop": shop, "blog": blog}
			st := newStack(t, []*visitor.Site{shop, blog}, domainDevices{}, domainLocator{})
			ctx := context.Background()
			first, err := st.svc.Track(ctx, visitor.Hit{Site: shop, Type: visitor.HitPageview, URL: domainOrigin + "/", UserAgent: domainUA, IP: domainIP})
			if err != nil || !first.Tracked {
				t.Fatalf("first page view: %+v, %v", first, err)
			}
			tok, _ := st.signer.Verify(first.Token, "shop", st.clock.Now())
			oldKey := st.hasher.VisitorKey("shop", tok.VisitorID)
			held, err := st.store.VisitorData(ctx, shop, oldKey)
			if err != nil {
				t.Fatal(err)
			}
			presented := tt.present(st, first.Token, tok.VisitorID)

			site := sites[tt.on]
			res, err := st.svc.Track(ctx, visitor.Hit{Site: site, Type: visitor.HitPageview, URL: site.Origins[0] + "/next",
				Token: presented, UserAgent: domainUA, IP: domainIP})
			if err != nil || !res.Tracked || !res.Issued || res.Token == presented {
				t.Fatalf("Track = %+v, %v; want a new visitor with a new token", res, err)
			}
			fresh, ok := st.signer.Verify(res.Token, tt.on, st.clock.Now())
			if !ok || fresh.VisitorID == tok.VisitorID {
				t.Fatalf("the new token %+v (valid %v) keeps the foreign token's visitor", fresh, ok)
			}
			newKey := st.hasher.VisitorKey(tt.on, fresh.VisitorID)
			got, err := st.store.VisitorData(ctx, site, newKey)
			if err != nil || got.Profile == nil || got.Profile.Sessions != 1 || len(got.Sessions) != 1 || got.Sessions[0].PageViews != 1 {
				t.Errorf("new visitor = %+v, %v; want its first page of its first session", got.Profile, err)
			}
			after, err := st.store.VisitorData(ctx, shop, oldKey)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(held, after); diff != "" {
				t.Errorf("the token's visitor changed (-before +after):\n%s", diff)
			}
			if tt.on != "blog" {
				return
			}
			// Invariant 7: each visitor's keys carry its own site's hash tag,
			// and no key of one site holds the other's visitor.
			for k, v := range redistest.DumpValues(t, st.rdb) {
				for _, o := range []struct{ site, id, key string }{{"shop", tok.VisitorID, oldKey}, {"blog", fresh.VisitorID, newKey}} {
					if _, tag, _ := strings.Cut(k, "{"); strings.Contains(k, o.key) && !strings.HasPrefix(tag, o.site+":"+o.key+"}") {
						t.Errorf("key %q of the %s visitor does not carry the tag {%s:%s}", k, o.site, o.site, o.key)
					}
					other := "{blog"
					if o.site == "blog" {
						other = "{shop"
					}
					if strings.Contains(k, other) && (strings.Contains(v, o.id) || strings.Contains(v, o.key)) {
						t.Errorf("key %q holds the %s visitor", k, o.site)
					}
				}
			}
		})
	}
}

// A session stores the client's IP as the site's ip mode says (invariant 5):
// truncated to /24 or /48 by default, in full under full, not at all under
// drop, where no key holds any part of it.
func TestTrackStoresIPAsSiteModeSays(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		mode visitor.IPMode
		ip   string
		want string
	}{
		{name: "truncate ipv4", mode: visitor.IPTruncate, ip: "81.2.69.160", want: "81.2.69.0/24"},
		{name: "truncate ipv6", mode: visitor.IPTruncate, ip: "2a02:8000:1234:5678::1", want: "2a02:8000:1234::/48"},
		{name: "full", mode: visitor.IPFull, ip: "81.2.69.160", want: "81.2.69.160"},
		{name: "drop", mode: visitor.IPDrop, ip: "81.2.69.160", want: ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			site := domainSite()
			site.IP = tt.mode
			d := newDomain(t, site)
			res, err := d.svc.Track(d.ctx, visitor.Hit{Site: site, Type: visitor.HitPageview, URL: domainOrigin + "/",
				UserAgent: domainUA, IP: netip.MustParseAddr(tt.ip)})
			if err != nil || !res.Tracked {
				t.Fatalf("Track = %+v, %v", res, err)
			}
			x, err := d.svc.ExportVisitor(d.ctx, d.privacy, d.visitorID(t, res.Token))
			if err != nil || len(x.Sessions) != 1 {
				t.Fatalf("export = %+v, %v; want one session", x.Sessions, err)
			}
			if got := x.Sessions[0].IP; got != tt.want {
				t.Errorf("stored IP = %q, want %q", got, tt.want)
			}
			if tt.mode == visitor.IPDrop {
				for k, v := range redistest.DumpValues(t, d.rdb) {
					if strings.Contains(v, "81.2.69") {
						t.Errorf("key %s holds the dropped IP: %q", k, v)
					}
				}
			}
		})
	}
}

package visitor_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

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

package visitor_test

import (
	"bytes"
	"context"
	"net/netip"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/device"
	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// The domain tests run visitor.Service over a real redisstore.Store on a real
// redis-server, and read back through the store's read methods or the export.

const (
	domainUA     = "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0"
	domainOrigin = "https://shop.example"
)

// domainDevices parses every User-Agent as one desktop Firefox.
type domainDevices struct{}

func (domainDevices) Parse(ua string) visitor.Device {
	if strings.Contains(ua, "bot") {
		return visitor.Device{Bot: true}
	}
	return visitor.Device{Browser: "Firefox", Version: "120.0", OS: "Linux", Mobile: false}
}

// domainLocator places every IP in Berlin.
type domainLocator struct{}

func (domainLocator) Lookup(netip.Addr) visitor.Location {
	return visitor.Location{Country: "DE", Region: "BE", City: "Berlin", TimeZone: "Europe/Berlin"}
}

// domainClock is a settable clock; it starts at the current time, because
// Redis expires keys by its own clock.
type domainClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *domainClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *domainClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

type domain struct {
	svc    *visitor.Service
	store  *redisstore.Store
	rdb    *redis.Client
	site   *visitor.Site
	clock  *domainClock
	hasher *visitor.Hasher
	signer *visitor.Signer
	ctx    context.Context
	// privacy and operator are the site's API keys as actors.
	privacy, operator visitor.Actor
}

func domainSite() *visitor.Site {
	return &visitor.Site{ID: "shop", Origins: []string{domainOrigin}, Consent: visitor.ConsentOptOut,
		ConsentValidDays: 180, IP: visitor.IPTruncate, SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour,
		KeepTitle: true, PolicyVersion: "2026-11", LegalText: "We record the pages you visit.",
		Retention: visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365}}
}

// stack is a Service over a real redisstore.Store on its own redis-server,
// with the secrets every domain test shares.
type stack struct {
	svc    *visitor.Service
	store  *redisstore.Store
	rdb    *redis.Client
	clock  *domainClock
	signer *visitor.Signer
	hasher *visitor.Hasher
	sealer *visitor.Sealer
}

// newStack starts a redis-server and a Service over it for sites; the store
// reads their retention overrides. The clock is pinned but starts at the
// current time, because Redis expires keys by its own clock. A passing test
// must leave no key without a TTL (cfg: keys aside, invariant 3).
func newStack(tb testing.TB, sites []*visitor.Site, devices visitor.Devices, locator visitor.Locator, opts ...visitor.Option) stack {
	tb.Helper()
	set, err := visitor.NewSites(sites)
	if err != nil {
		tb.Fatal(err)
	}
	ids := make([]string, len(sites))
	for i, s := range sites {
		ids[i] = s.ID
	}
	rdb := redistest.Start(tb).Client(tb)
	store := redisstore.New(rdb, redisstore.WithSites(ids...))
	if err := store.LoadScripts(context.Background()); err != nil {
		tb.Fatal(err)
	}
	st := stack{store: store, rdb: rdb, clock: &domainClock{t: time.Now().UTC().Truncate(time.Millisecond)}}
	if st.signer, err = visitor.NewSigner([][]byte{bytes.Repeat([]byte("s"), visitor.MinSecretBytes)}); err != nil {
		tb.Fatal(err)
	}
	if st.hasher, err = visitor.NewHasher(bytes.Repeat([]byte("i"), 32)); err != nil {
		tb.Fatal(err)
	}
	if st.sealer, err = visitor.NewSealer([]visitor.DataKey{{ID: "k1", Key: bytes.Repeat([]byte("d"), 32)}}); err != nil {
		tb.Fatal(err)
	}
	opts = append([]visitor.Option{visitor.WithClock(st.clock.Now)}, opts...)
	st.svc = visitor.NewService(visitor.Deps{Sites: set, Store: store, Signer: st.signer, Hasher: st.hasher, Sealer: st.sealer, Devices: devices, Locator: locator}, opts...)
	tb.Cleanup(func() {
		if !tb.Failed() {
			redistest.AssertAllKeysHaveTTL(tb, rdb, func(k string) bool { return strings.HasPrefix(k, "cfg:") })
		}
	})
	return st
}

// newDomain starts a redis-server and a Service over it for site (domainSite
// when nil).
func newDomain(tb testing.TB, site *visitor.Site) *domain {
	tb.Helper()
	if site == nil {
		site = domainSite()
	}
	st := newStack(tb, []*visitor.Site{site}, domainDevices{}, domainLocator{})
	return &domain{svc: st.svc, store: st.store, rdb: st.rdb, site: site, clock: st.clock, hasher: st.hasher, signer: st.signer, ctx: context.Background(),
		privacy:  visitor.Actor{Site: site, KeyID: "dpo", Role: visitor.RolePrivacy},
		operator: visitor.Actor{Site: site, KeyID: "agent-1", Role: visitor.RoleOperator}}
}

// pageview tracks a page view of path with token ("" for a new visitor) and
// returns the token in force after it.
func (d *domain) pageview(tb testing.TB, token, path, title, referrer string) string {
	tb.Helper()
	res, err := d.svc.Track(d.ctx, visitor.Hit{Site: d.site, Type: visitor.HitPageview, URL: domainOrigin + path,
		Title: title, Referrer: referrer, Token: token, UserAgent: domainUA, IP: netip.MustParseAddr("192.0.2.77")})
	if err != nil {
		tb.Fatalf("Track(%s): %v", path, err)
	}
	if !res.Tracked {
		tb.Fatalf("Track(%s) not tracked: %s", path, res.Reason)
	}
	return res.Token
}

// visitorID is the visitor id behind an identity token.
func (d *domain) visitorID(tb testing.TB, token string) string {
	tb.Helper()
	tok, ok := d.signer.Verify(token, d.site.ID, d.clock.Now())
	if !ok || tok.Kind != visitor.KindID {
		tb.Fatalf("not an identity token: %q", token)
	}
	return tok.VisitorID
}

// vkey is the store's key of a visitor id.
func (d *domain) vkey(id string) string { return d.hasher.VisitorKey(d.site.ID, id) }

// signID signs an identity token for visitor id, as the service issues them.
func (d *domain) signID(tb testing.TB, id string, now time.Time) string {
	tb.Helper()
	return d.signer.Sign(visitor.Token{Kind: visitor.KindID, Site: d.site.ID, IssuedAt: now, Expires: now.Add(24 * time.Hour), VisitorID: id})
}

func redisZ(score int64, member string) redis.Z {
	return redis.Z{Score: float64(score), Member: member}
}

// Fixtures of the domain tests over a real store.
const (
	consentUA     = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	consentOrigin = "https://shop.example"
	domainPolicy  = "2026-11"
)

// domainIP is a visitor's address; no part of it may be stored under ip: drop.
var domainIP = netip.MustParseAddr("81.2.69.160")

// consentDomain is visitor.Service over a real redisstore.Store on its own redis-server.
type consentDomain struct {
	t      testing.TB
	svc    *visitor.Service
	store  *redisstore.Store
	rdb    redis.UniversalClient
	clock  *domainClock
	hasher *visitor.Hasher
	sealer *visitor.Sealer
	signer *visitor.Signer
	sites  map[string]*visitor.Site
}

// consentSite is a site as a sites file gives it, in consent mode mode.
func consentSite(id string, mode visitor.ConsentMode, ip visitor.IPMode) *visitor.Site {
	return &visitor.Site{
		ID: id, Origins: []string{consentOrigin}, Consent: mode, ConsentValidDays: 180, IP: ip,
		SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour, KeepQuery: []string{"utm_*"},
		RedactPaths: []*regexp.Regexp{regexp.MustCompile(`^/orders/[0-9]+`)}, KeepTitle: true,
		Retention:     visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365},
		PolicyVersion: domainPolicy, LegalText: "We record the pages you visit to help our chat team.",
		Controller: visitor.Controller{Name: "Shop Ltd", Contact: "privacy@shop.example"},
	}
}

func newConsentDomain(t testing.TB, sites ...*visitor.Site) *consentDomain {
	t.Helper()
	st := newStack(t, sites, device.NewParser(64), nil)
	d := &consentDomain{t: t, svc: st.svc, store: st.store, rdb: st.rdb, clock: st.clock, hasher: st.hasher, sealer: st.sealer, signer: st.signer, sites: map[string]*visitor.Site{}}
	for _, s := range sites {
		d.sites[s.ID] = s
	}
	return d
}

// privacy is the privacy team's actor on site.
func (d *consentDomain) privacy(site string) visitor.Actor {
	return visitor.Actor{Site: d.sites[site], KeyID: "dpo", Role: visitor.RolePrivacy}
}

// grant records an analytics grant by the banner and returns the identity token.
func (d *consentDomain) grant(site string, marketing bool) string {
	d.t.Helper()
	res, err := d.svc.SetConsent(context.Background(), visitor.ConsentRequest{
		Site: d.sites[site], Analytics: true, Marketing: marketing, PolicyVersion: domainPolicy,
		Method: visitor.MethodBanner, UserAgent: consentUA, IP: domainIP,
	})
	if err != nil || res.Token == "" {
		d.t.Fatalf("grant on %s: %v (token %q)", site, err, res.Token)
	}
	return res.Token
}

// track records a page view and fails unless it was tracked.
func (d *consentDomain) track(site, token, path, title string) string {
	d.t.Helper()
	res, err := d.svc.Track(context.Background(), visitor.Hit{
		Site: d.sites[site], Type: visitor.HitPageview, URL: consentOrigin + path, Title: title,
		Token: token, UserAgent: consentUA, IP: domainIP,
	})
	if err != nil || !res.Tracked {
		d.t.Fatalf("track %s on %s: %v (%+v)", path, site, err, res)
	}
	return res.Token
}

// idOf returns the visitor id an identity token carries.
func (d *consentDomain) idOf(site, token string) string {
	d.t.Helper()
	tok, ok := d.signer.Verify(token, site, d.clock.Now())
	if !ok || tok.Kind != visitor.KindID {
		d.t.Fatalf("token %q is no identity of %s", token, site)
	}
	return tok.VisitorID
}

// data reads everything the store holds of a visitor, through the store.
func (d *consentDomain) data(site, visitorID string) visitor.VisitorData {
	d.t.Helper()
	vd, err := d.store.VisitorData(context.Background(), d.sites[site], d.hasher.VisitorKey(site, visitorID))
	if err != nil {
		d.t.Fatalf("visitor data: %v", err)
	}
	return vd
}

// assertNoValue fails when any key or value in Redis holds one of needles.
func (d *consentDomain) assertNoValue(needles ...string) {
	d.t.Helper()
	for key, value := range redistest.DumpValues(d.t, d.rdb) {
		for _, n := range needles {
			if strings.Contains(key, n) || strings.Contains(value, n) {
				d.t.Errorf("%s holds %q: %q", key, n, value)
			}
		}
	}
}

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

// auditCount counts the entries of action about target, read back through the
// store's audit log.
func (d *consentDomain) auditCount(site, action, target string) int {
	d.t.Helper()
	entries, _, err := d.store.AuditLog(context.Background(), d.sites[site], "", 1000)
	if err != nil {
		d.t.Fatal(err)
	}
	n := 0
	for _, e := range entries {
		if e.Action == action && e.Target == target {
			n += e.Count
		}
	}
	return n
}

// storeState is every key but the day's counters (st:), each with its value
// and expiry: a scan over all keys, to prove that a call wrote nothing and
// refreshed no TTL. A counter key's value may hold only counts by reason.
func storeState(tb testing.TB, rdb redis.UniversalClient) map[string]string {
	tb.Helper()
	out := map[string]string{}
	for k, v := range redistest.DumpValues(tb, rdb) {
		if strings.HasPrefix(k, "st:") {
			if strings.Contains(v, "/") {
				tb.Errorf("counter %s holds more than counts: %q", k, v)
			}
			continue
		}
		at, err := rdb.PExpireTime(context.Background(), k).Result()
		if err != nil {
			tb.Fatal(err)
		}
		out[k] = v + "\nexpires " + at.String()
	}
	return out
}

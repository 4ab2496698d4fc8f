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

// Fixtures of the domain tests over a real store.
const (
	consentUA     = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	consentOrigin = "https://shop.example"
	domainPolicy = "2026-11"
)

// domainIP is a visitor's address; no part of it may be stored under ip: drop.
var domainIP = netip.MustParseAddr("81.2.69.160")

// consentClock is a settable clock for the service under test.
type consentClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *consentClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *consentClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// consentDomain is visitor.Service over a real redisstore.Store on its own redis-server.
type consentDomain struct {
	t      testing.TB
	svc    *visitor.Service
	store  *redisstore.Store
	rdb    redis.UniversalClient
	clock  *consentClock
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
	set, err := visitor.NewSites(sites)
	if err != nil {
		t.Fatal(err)
	}
	rdb := redistest.Start(t).Client(t)
	store := redisstore.New(rdb)
	if err := store.LoadScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	signer, err := visitor.NewSigner([][]byte{bytes.Repeat([]byte("s"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := visitor.NewHasher(bytes.Repeat([]byte("i"), 32))
	if err != nil {
		t.Fatal(err)
	}
	sealer, err := visitor.NewSealer([]visitor.DataKey{{ID: "k1", Key: bytes.Repeat([]byte("d"), 32)}})
	if err != nil {
		t.Fatal(err)
	}
	clk := &consentClock{t: time.Now().UTC().Truncate(time.Millisecond)}
	svc := visitor.NewService(set, store, signer, hasher, sealer, device.NewParser(64), nil, visitor.WithClock(clk.Now))
	d := &consentDomain{t: t, svc: svc, store: store, rdb: rdb, clock: clk, hasher: hasher, sealer: sealer, signer: signer, sites: map[string]*visitor.Site{}}
	for _, s := range sites {
		d.sites[s.ID] = s
	}
	t.Cleanup(func() {
		if !t.Failed() {
			redistest.AssertAllKeysHaveTTL(t, rdb, func(k string) bool { return strings.HasPrefix(k, "cfg:") })
		}
	})
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

// Invariant 2 and 5 (issue 17, item 8): under ip: drop no consent record holds
// an IP, whichever way it was given; truncate keeps the /24, full the address.
func TestConsentRecordIPFollowsSiteMode(t *testing.T) {
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

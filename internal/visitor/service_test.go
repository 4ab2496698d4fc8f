package visitor_test

import (
	"bytes"
	"context"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

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

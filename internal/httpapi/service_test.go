package httpapi

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/visitord/visitord/internal/config"
	"github.com/visitord/visitord/internal/visitor"
)

// The domain implements the interfaces the handlers depend on.
var _ Service = (*visitor.Service)(nil)

// fakeService is an in-memory fake of the domain the handlers call (Service),
// for the transport tests: no store, no Redis. It keeps what the handlers
// handed it (hits, consent and chat requests) and answers what a test sets; a
// test sets fail to make every call that reaches the store fail with it.
//
// Its behaviour is the transport's contract with the domain, not the domain's
// rules: a page view is tracked and issues a token unless the request carried
// one the fake issued; a hit with DNT or GPC is refused with that reason and
// asks for the identity cookie to be forgotten. The domain's own rules are
// tested in package visitor.
type fakeService struct {
	sites *visitor.Sites
	now   time.Time

	mu       sync.Mutex
	fail     error                       // returned by every call that would reach the store
	tokens   map[string]string           // token → visitor id
	hits     []visitor.Hit               // Track's hits, in order
	consents []visitor.ConsentRequest    // SetConsent's requests
	asked    []string                    // the tokens Consent was asked about
	chats    []visitor.ChatRequest       // StartChat's requests
	views    map[string]visitor.ChatView // ChatContext's chats by id
	live     visitor.LivePage            // Live's answer
	liveN    int                         // Live calls
	held     map[string]int              // open streams by key id
	erased   []string                    // visitors, chats and tokens erased
	audit    []visitor.AuditEntry        // AuditTrail's answer
	export   visitor.Export              // the export of any subject
	stats    map[string]int64            // Stats' answer of the day asked
	statsDay time.Time                   // the day Stats was asked
	// retention of every site, nil for the sites file's, and when it changed.
	retention *visitor.Retention
	changed   time.Time
}

// newFakeService returns a fake over the sites of sitesYAML, its clock at now.
func newFakeService(tb testing.TB, sitesYAML string, now time.Time) *fakeService {
	tb.Helper()
	sites, err := config.ParseSites([]byte(sitesYAML), func(string) string { return "" }, 1, 1825)
	if err != nil {
		tb.Fatalf("sites: %v", err)
	}
	set, err := visitor.NewSites(sites)
	if err != nil {
		tb.Fatal(err)
	}
	return &fakeService{sites: set, now: now, tokens: map[string]string{}, views: map[string]visitor.ChatView{}, held: map[string]int{}}
}

// setFail makes every call that would reach the store fail with err (nil: none).
func (f *fakeService) setFail(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail = err
}

// failure is the error set by setFail.
func (f *fakeService) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.fail
}

// issue returns a new token naming a new visitor.
func (f *fakeService) issue() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	tok := "fake.token-" + strconv.Itoa(len(f.tokens)+1)
	f.tokens[tok] = "visitor-" + strconv.Itoa(len(f.tokens)+1)
	return tok
}

func (f *fakeService) known(token string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.tokens[token]
	return ok
}

// lastHit is the last hit Track received; it fails the test if none.
func (f *fakeService) lastHit(tb testing.TB) visitor.Hit {
	tb.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.hits) == 0 {
		tb.Fatal("Track was not called")
	}
	return f.hits[len(f.hits)-1]
}

func (f *fakeService) Sites() *visitor.Sites { return f.sites }
func (f *fakeService) Now() time.Time        { return f.now }
func (f *fakeService) Today() time.Time      { return f.now.Truncate(24 * time.Hour) }

func (f *fakeService) RateLimitKey(site *visitor.Site, kind visitor.LimitKind, subject visitor.LimitSubject) string {
	return "rl:" + site.ID + ":" + string(kind) + ":" + string(subject)
}

func (f *fakeService) Caller(site *visitor.Site, raw string) visitor.Caller {
	f.mu.Lock()
	defer f.mu.Unlock()
	id, ok := f.tokens[raw]
	return visitor.Caller{Raw: raw, Valid: ok, Token: visitor.Token{Kind: visitor.KindID, Site: site.ID, VisitorID: id}}
}

func (f *fakeService) Track(_ context.Context, h visitor.Hit) (visitor.TrackResult, error) {
	f.mu.Lock()
	f.hits = append(f.hits, h)
	f.mu.Unlock()
	if err := h.Validate(); err != nil {
		return visitor.TrackResult{}, err
	}
	if err := f.failure(); err != nil {
		return visitor.TrackResult{}, err
	}
	switch {
	case h.GPC:
		return visitor.TrackResult{Reason: visitor.ReasonGPC, ForgetIdentity: h.Token != ""}, nil
	case h.DNT:
		return visitor.TrackResult{Reason: visitor.ReasonDNT, ForgetIdentity: h.Token != ""}, nil
	case f.known(h.Token):
		return visitor.TrackResult{Tracked: true, Token: h.Token}, nil
	case h.Type != visitor.HitPageview:
		return visitor.TrackResult{Reason: visitor.ReasonNoSession}, nil
	}
	return visitor.TrackResult{Tracked: true, Token: f.issue(), TokenExpires: f.now.Add(395 * 24 * time.Hour), Issued: true}, nil
}

func (f *fakeService) Consent(_ context.Context, site *visitor.Site, token string) (visitor.Choice, error) {
	f.mu.Lock()
	f.asked = append(f.asked, token)
	f.mu.Unlock()
	if err := f.failure(); err != nil {
		return visitor.Choice{}, err
	}
	return site.Defaults(), nil
}

func (f *fakeService) SetConsent(_ context.Context, r visitor.ConsentRequest) (visitor.ConsentResult, error) {
	f.mu.Lock()
	f.consents = append(f.consents, r)
	f.mu.Unlock()
	if err := f.failure(); err != nil {
		return visitor.ConsentResult{}, err
	}
	ch := visitor.Choice{Analytics: r.Analytics, Marketing: r.Marketing, PolicyVersion: r.PolicyVersion,
		Given: f.now, ValidUntil: f.now.Add(time.Duration(r.Site.ConsentValidDays) * 24 * time.Hour)}
	if (r.GPC || r.DNT) && (r.Analytics || r.Marketing) {
		ch = visitor.Choice{PolicyVersion: r.PolicyVersion}
		reason := visitor.ReasonDNT
		if r.GPC {
			reason = visitor.ReasonGPC
		}
		return visitor.ConsentResult{Choice: ch, Reason: reason, ForgetIdentity: r.Token != ""}, nil
	}
	tok := r.Token
	if !f.known(tok) {
		tok = f.issue()
	}
	return visitor.ConsentResult{Choice: ch, Token: tok, TokenExpires: ch.ValidUntil}, nil
}

func (f *fakeService) StartChat(_ context.Context, r visitor.ChatRequest) (visitor.ChatResult, error) {
	f.mu.Lock()
	f.chats = append(f.chats, r)
	n := len(f.chats)
	f.mu.Unlock()
	if err := f.failure(); err != nil {
		return visitor.ChatResult{}, err
	}
	return visitor.ChatResult{ChatID: fmt.Sprintf("chat-%d", n)}, nil
}

func (f *fakeService) Authenticate(siteID, presented string, roles ...visitor.Role) (visitor.Actor, error) {
	if presented == "" {
		return visitor.Actor{}, visitor.Errorf(visitor.EUnauthorized, "an Authorization: Bearer key is required")
	}
	site, err := f.sites.Get(siteID)
	if err != nil {
		return visitor.Actor{}, err
	}
	sum := sha256.Sum256([]byte(presented))
	for _, k := range site.Keys {
		if subtle.ConstantTimeCompare(sum[:], k.SHA256[:]) != 1 {
			continue
		}
		for _, r := range roles {
			if k.Role == r {
				return visitor.Actor{Site: site, KeyID: k.ID, Role: k.Role}, nil
			}
		}
		return visitor.Actor{}, visitor.Errorf(visitor.EForbidden, "role %s may not use this route", k.Role)
	}
	for _, s := range f.sites.All() {
		for _, k := range s.Keys {
			if subtle.ConstantTimeCompare(sum[:], k.SHA256[:]) == 1 {
				return visitor.Actor{}, visitor.Errorf(visitor.EForbidden, "the API key is not valid for site %s", site.ID)
			}
		}
	}
	return visitor.Actor{}, visitor.Errorf(visitor.EUnauthorized, "the API key is not valid")
}

func (f *fakeService) Live(_ context.Context, _ visitor.Actor, _ time.Duration, _ string, _ int) (visitor.LivePage, error) {
	f.mu.Lock()
	f.liveN++
	page, err := f.live, f.fail
	f.mu.Unlock()
	return page, err
}

func (f *fakeService) ChatContext(_ context.Context, _ visitor.Actor, chatID string) (visitor.ChatView, error) {
	if err := f.failure(); err != nil {
		return visitor.ChatView{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	v, ok := f.views[chatID]
	if !ok {
		return visitor.ChatView{}, fmt.Errorf("chat: %w", visitor.ErrNotFound)
	}
	return v, nil
}

func (f *fakeService) Stats(_ context.Context, _ visitor.Actor, day time.Time) (map[string]int64, error) {
	if err := f.failure(); err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.statsDay = day
	out := map[string]int64{}
	for k, n := range f.stats {
		out[k] = n
	}
	return out, nil
}

func (f *fakeService) StatsRange(_ context.Context, _ visitor.Actor, from, to time.Time) ([]visitor.DayStats, error) {
	if err := f.failure(); err != nil {
		return nil, err
	}
	var out []visitor.DayStats
	for d := from; !d.After(to); d = d.Add(24 * time.Hour) {
		out = append(out, visitor.DayStats{Day: d, Counts: map[string]int64{}})
	}
	return out, nil
}

func (f *fakeService) HoldStream(_ context.Context, a visitor.Actor, id string, max int, _ time.Duration) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return f.fail
	}
	f.held[a.KeyID+"/"+id]++
	return nil
}

func (f *fakeService) ReleaseStream(_ context.Context, a visitor.Actor, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.held, a.KeyID+"/"+id)
	return f.fail
}

func (f *fakeService) SearchSubjects(_ context.Context, _ visitor.Actor, email string) ([]string, []string, error) {
	if err := f.failure(); err != nil {
		return nil, nil, err
	}
	if email == "" {
		return nil, nil, visitor.Errorf(visitor.EInvalid, "email is required")
	}
	return []string{}, []string{}, nil
}

func (f *fakeService) exportOf(site, visitorID, chatID string) (visitor.Export, error) {
	if err := f.failure(); err != nil {
		return visitor.Export{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	e := f.export
	e.Site, e.VisitorID, e.ChatID = site, visitorID, chatID
	return e, nil
}

func (f *fakeService) ExportVisitor(_ context.Context, a visitor.Actor, visitorID string) (visitor.Export, error) {
	return f.exportOf(a.Site.ID, visitorID, "")
}

func (f *fakeService) RectifyVisitor(_ context.Context, a visitor.Actor, visitorID string, _ visitor.ContactChange) (visitor.Export, error) {
	return f.exportOf(a.Site.ID, visitorID, "")
}

func (f *fakeService) erase(what string) error {
	if err := f.failure(); err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.erased = append(f.erased, what)
	return nil
}

func (f *fakeService) EraseVisitor(_ context.Context, _ visitor.Actor, visitorID string) error {
	return f.erase(visitorID)
}

func (f *fakeService) EraseChat(_ context.Context, _ visitor.Actor, chatID string) error {
	return f.erase(chatID)
}

func (f *fakeService) ExportMine(_ context.Context, site *visitor.Site, token string) (visitor.Export, error) {
	if !f.known(token) {
		return visitor.Export{}, visitor.Errorf(visitor.EUnauthorized, "a valid identity token is required")
	}
	return f.exportOf(site.ID, token, "")
}

func (f *fakeService) EraseMine(_ context.Context, _ *visitor.Site, token string) error {
	if !f.known(token) {
		return visitor.Errorf(visitor.EUnauthorized, "a valid identity token is required")
	}
	return f.erase(token)
}

func (f *fakeService) ProcessingRecord(a visitor.Actor) visitor.ProcessingRecord {
	r := recordFixture()
	r.GeneratedAt, r.Site.ID, r.Site.Origins = f.now, a.Site.ID, a.Site.Origins
	return r
}

func (f *fakeService) Retention(site *visitor.Site) visitor.Retention {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.retention != nil {
		return *f.retention
	}
	return site.Retention
}

func (f *fakeService) RetentionBounds() visitor.RetentionBounds {
	return visitor.RetentionBounds{Min: 1, Max: 1825, AuditMin: 365}
}

func (f *fakeService) RetentionChanged(context.Context, visitor.Actor) (time.Time, error) {
	if err := f.failure(); err != nil {
		return time.Time{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.changed, nil
}

func (f *fakeService) SetRetention(_ context.Context, _ visitor.Actor, r visitor.Retention) (visitor.Retention, error) {
	if err := f.failure(); err != nil {
		return visitor.Retention{}, err
	}
	b := f.RetentionBounds()
	for _, d := range []int{r.Sessions, r.Profiles, r.Chats, r.Consents, r.Audit} {
		if d < b.Min || d > b.Max {
			return visitor.Retention{}, visitor.Errorf(visitor.ERetentionBounds, "%d days is out of bounds", d)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.retention, f.changed = &r, f.now
	return r, nil
}

func (f *fakeService) AuditTrail(_ context.Context, _ visitor.Actor, _, cursor string, _ int) ([]visitor.AuditEntry, string, error) {
	if err := f.failure(); err != nil {
		return nil, "", err
	}
	if cursor != "" {
		return nil, "", visitor.Errorf(visitor.EInvalid, "cursor is not one this API gave")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.audit, "", nil
}

// newFakeEnv is the HTTP API over a fakeService of testSites: the transport
// alone, without Redis. e.fake is the fake; e.svc and e.rdb are nil.
func newFakeEnv(t testing.TB, opts ...func(*envOptions)) *env {
	t.Helper()
	o := envOptions{sites: testSites, trackTimeout: time.Second, storeTimeout: time.Second}
	for _, f := range opts {
		f(&o)
	}
	clk := &clock{t: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC)}
	fake := newFakeService(t, o.sites, clk.Now())
	e := &env{t: t, clock: clk, logs: &syncBuffer{}, sites: fake.sites, fake: fake, reg: prometheus.NewRegistry()}
	h, err := New(Options{
		Service: fake, Logger: slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registry: e.reg, TrustedProxies: o.trustedProxies, CookieSecure: o.cookieSecure,
		TrackTimeout: o.trackTimeout, StoreTimeout: o.storeTimeout, Ready: func(context.Context) error { return fake.failure() },
		OpenAPI: openAPISpec(t), Demo: o.demo, Limiter: o.limiter, PageViews: o.pageViews, Streams: o.streams,
	})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = httptest.NewServer(h)
	t.Cleanup(e.srv.Close)
	e.client = e.srv.Client()
	if o.streams != nil {
		t.Cleanup(o.streams.Close)
	}
	return e
}

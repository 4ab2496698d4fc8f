package redisstore

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/visitord/visitord/internal/visitor"
)

// MaxSessionPages is visitor.MaxSessionPages, the domain's cap on the pages a
// session stores, under the name tools and tests of the schema use.
const MaxSessionPages = visitor.MaxSessionPages

// hitScript records a page view, heartbeat or leave on the visitor's slot: the
// source of truth of tracking (hit.lua).
var hitScript = declare("hit.lua", "lib_session.lua")

// hitNewScript records the first page view of a visitor whose id was minted
// for it, reading nothing (hit_new.lua).
var hitNewScript = declare("hit_new.lua", "lib_session.lua")

// hitArgs are hit.lua's KEYS and ARGV by name. The policy values (grant,
// session limits, windows, page cap) are the domain's; the script applies them.
type hitArgs struct {
	keys visitorKeys
	op   visitor.HitType
	now  time.Time
	// requireGrant refuses the hit unless the stored choice grants analytics
	// for policy, valid at now (the rule of visitor.Token.HasGrant).
	requireGrant bool
	policy       string
	// sessionTimeout closes a session after that much inactivity, sessionMax
	// after that long in all.
	sessionTimeout, sessionMax time.Duration
	sessionsTTL, profilesTTL   time.Duration
	newSessionID, visitorID    string
	page                       visitor.Page
	device                     visitor.Device
	location                   visitor.Location
	ip                         string
	maxPages                   int
	// indexNeeds is the subject-index score this write needs (when its data
	// expires); indexWrite the score written when the entry must grow.
	indexNeeds, indexWrite time.Time
	// minted says the visitor id was drawn for this hit (visitor.HitWrite's
	// NewVisitor): its first page view, when it needs no grant, reads nothing
	// and writes the first session (hit_new.lua).
	minted bool
	// ttlSlack is how far short of their windows the TTLs may fall before a
	// hit within a session refreshes them (ttlSlackOf).
	ttlSlack time.Duration
	// consts, when it fits the fields above, are their values boxed already.
	consts *hitConsts
}

// Boxed once: converting a string to any allocates, and a page view sends
// these on every call.
var (
	boxedOps                  = map[visitor.HitType]any{visitor.HitPageview: "p", visitor.HitHeartbeat: "h", visitor.HitLeave: "l"}
	boxedFalse, boxedTrue any = "0", "1"
)

func boxedBit(b bool) any {
	if b {
		return boxedTrue
	}
	return boxedFalse
}

// hitConsts are hit.lua's arguments that a site and its retention fix, boxed
// once per site and retention (siteKeys.hitConsts): the page-view path sends
// them on every call.
type hitConsts struct {
	policy                   string
	sessionTimeout           time.Duration
	sessionsTTL, profilesTTL time.Duration
	maxPages                 int
	// boxed holds ARGV[4], ARGV[5], ARGV[7], ARGV[8] and ARGV[15] in that
	// order: the others change with the hit's time.
	boxed [5]any
}

func newHitConsts(a hitArgs) *hitConsts {
	c := &hitConsts{policy: a.policy, sessionTimeout: a.sessionTimeout,
		sessionsTTL: a.sessionsTTL, profilesTTL: a.profilesTTL, maxPages: a.maxPages}
	c.boxed = [5]any{a.policy, a.sessionTimeout.Milliseconds(), seconds(a.sessionsTTL), seconds(a.profilesTTL), a.maxPages}
	return c
}

// fits reports whether c holds a's constant arguments.
func (c *hitConsts) fits(a hitArgs) bool {
	return c != nil && c.policy == a.policy && c.sessionTimeout == a.sessionTimeout &&
		c.sessionsTTL == a.sessionsTTL && c.profilesTTL == a.profilesTTL && c.maxPages == a.maxPages
}

// call is the script call of the hit: hit_new.lua for the first page view of
// a minted id that needs no grant (it reads nothing), hit.lua for any other.
func (a hitArgs) call() (*call, error) {
	op, ok := boxedOps[a.op]
	if !ok {
		return nil, fmt.Errorf("%w: hit type %q", visitor.ErrInvalid, a.op)
	}
	c := a.consts
	if !c.fits(a) {
		c = newHitConsts(a)
	}
	if a.minted && !a.requireGrant && a.op == visitor.HitPageview {
		keys := []string{a.keys.profile}
		return sharedCall(hitNewScript, keys, append(evalshaOf(hitNewScript, keys, 11),
			ms(a.now), a.newSessionID, a.visitorID, a.page.URL, a.page.Title, a.page.Referrer,
			sessionFacts(a.device, a.location, a.ip), c.boxed[2], c.boxed[3], c.boxed[4], ms(a.indexWrite))), nil
	}
	// The script compares times as strings (hit.lua's ge): the bounds it
	// compares with are computed here, none below 0.
	now := ms(a.now)
	before := func(d time.Duration) int64 { return max(0, now-d.Milliseconds()) }
	keys := []string{a.keys.profile, a.keys.choice, a.keys.tombstone, a.keys.sessions}
	return sharedCall(hitScript, keys, append(evalshaOf(hitScript, keys, 19),
		op, now, boxedBit(a.requireGrant), c.boxed[0], c.boxed[1], before(a.sessionMax), c.boxed[2], c.boxed[3],
		a.newSessionID, a.visitorID, a.page.URL, a.page.Title, a.page.Referrer,
		sessionFacts(a.device, a.location, a.ip), c.boxed[4],
		ms(a.indexNeeds), ms(a.indexWrite), before(a.ttlSlack), before(a.sessionTimeout),
	)), nil
}

// sessionFacts is hit.lua's ARGV[14]: device, location and IP as a session's
// record stores them (recordFields from br on), tab-separated. A tab inside a
// value (a User-Agent may carry one) becomes a space: the record's separator
// is never data.
func sessionFacts(d visitor.Device, l visitor.Location, ip string) string {
	facts := [...]string{d.Browser, d.Version, d.OS, bit(d.Mobile), l.Country, l.Region, l.City, l.TimeZone, ip}
	n := len(facts) - 1
	for _, v := range facts {
		n += len(v)
	}
	var b strings.Builder
	b.Grow(n)
	for i, v := range facts {
		if i > 0 {
			b.WriteByte('\t')
		}
		if strings.IndexByte(v, '\t') >= 0 {
			v = strings.ReplaceAll(v, "\t", " ")
		}
		b.WriteString(v)
	}
	return b.String()
}

// hitReply is hit.lua's reply.
type hitReply struct {
	outcome visitor.HitOutcome
	// raiseIndex asks the caller to raise the visitor's subject-index entry to
	// hitArgs.indexWrite: the data now outlives it.
	raiseIndex bool
}

// decodeHit reads hit.lua's reply.
func decodeHit(c *call) (hitReply, error) {
	res, err := c.cmd.Text()
	if err != nil {
		return hitReply{}, translate(err)
	}
	res, raise := strings.CutSuffix(res, "|ix")
	r := hitReply{raiseIndex: raise}
	switch res {
	case "new":
		r.outcome = visitor.OutcomeNewSession
	case "ok":
		r.outcome = visitor.OutcomeTracked
	case "no_session":
		r.outcome = visitor.OutcomeNoSession
	case "no_consent":
		r.outcome = visitor.OutcomeNoConsent
	case "erased":
		r.outcome = visitor.OutcomeErased
	default:
		return hitReply{}, fmt.Errorf("unexpected hit script answer %q", res)
	}
	if raise && r.outcome != visitor.OutcomeNewSession && r.outcome != visitor.OutcomeTracked {
		return hitReply{}, fmt.Errorf("unexpected hit script answer %q", res+"|ix")
	}
	return r, nil
}

// siteScript updates the site-level indexes of one consent change on one
// shard: the live set and a per-day counter (site_index.lua). Page views reach
// them through the pod's buffer (aggregate.go).
var siteScript = declare("site_index.lua")

// liveOp is what site_index.lua does to the live set.
type liveOp string

// Live-set operations.
const (
	liveNone   liveOp = ""
	liveAdd    liveOp = "+"
	liveRemove liveOp = "-"
)

// siteArgs are site_index.lua's KEYS and ARGV by name.
type siteArgs struct {
	live, counters string
	op             liveOp
	vkey           string
	now            time.Time
	add, takeBack  visitor.Reason
	trim           bool
	// consts are the site's live TTL, counters TTL and live-set cap.
	consts *siteConsts
}

// siteConsts are the arguments of a site's index updates that never change,
// boxed once per site and Store: boxing a number above 255 allocates, and the
// page-view path sends them on every call.
type siteConsts struct {
	liveTTL         any // ms: 2 × the session timeout
	countersTTL     any // s
	maxLivePerShard any
}

func newSiteConsts(liveTTL, countersTTL time.Duration, maxLivePerShard int) *siteConsts {
	return &siteConsts{liveTTL: liveTTL.Milliseconds(), countersTTL: seconds(countersTTL), maxLivePerShard: maxLivePerShard}
}

func (a siteArgs) call() *call {
	return &call{script: siteScript, keys: []string{a.live, a.counters}, args: []any{
		string(a.op), a.vkey, ms(a.now), a.consts.liveTTL, string(a.add), string(a.takeBack),
		a.consts.countersTTL, a.consts.maxLivePerShard, bit(a.trim),
	}}
}

// siteCall updates the site-level indexes of one consent change, on the shard
// of vkey (any shard when there is none): add and takeBack name per-day counters ("" for
// none).
func (s *Store) siteCall(site *visitor.Site, vkey string, now time.Time, op liveOp, add, takeBack visitor.Reason) *call {
	n := s.siteCalls.Add(1)
	shard := int(n % SiteShards)
	if vkey != "" {
		shard = shardOf(vkey)
	}
	sk := s.siteKeysOf(site)
	k := sk.shards[shard]
	return siteArgs{
		live: k.live, counters: k.stats(now), op: op, vkey: vkey, now: now,
		add: add, takeBack: takeBack, trim: n%trimEvery == 0, consts: sk.consts,
	}.call()
}

// trimEvery is how often (one site-index update in trimEvery) a live-set shard
// is trimmed by time and size: trimming on every page view costs Redis work that
// readers, which filter by time anyway, do not need.
const trimEvery = 32

// siteKeys are a site's index key names, built once per Store: the page-view
// path sends them on every call; and what this pod buffered of the site's
// derived data (aggregate.go).
type siteKeys struct {
	site   string
	consts *siteConsts
	shards [SiteShards]*shardKeys
	buf    siteBuffer
	// hit holds the site's hit.lua constants of the retention last seen.
	hit atomic.Pointer[hitConsts]
}

// hitConsts returns the site's boxed hit.lua constants for a, made again when
// the retention (or the site) changed.
func (k *siteKeys) hitConsts(a hitArgs) *hitConsts {
	if c := k.hit.Load(); c.fits(a) {
		return c
	}
	c := newHitConsts(a)
	k.hit.Store(c)
	return c
}

type shardKeys struct {
	site, live string
	shard      int
	day        atomic.Pointer[dayKey]
}

type dayKey struct {
	day int64 // days since the epoch
	key string
}

func (s *Store) siteKeysOf(site *visitor.Site) *siteKeys {
	if k, ok := s.siteKeys.Load(site.ID); ok {
		return k.(*siteKeys)
	}
	k := &siteKeys{site: site.ID, consts: newSiteConsts(2*site.SessionTimeout, visitor.StatsTTL, MaxLive/SiteShards)}
	for i := range k.shards {
		k.shards[i] = &shardKeys{site: site.ID, shard: i, live: liveKey(site.ID, i)}
	}
	v, _ := s.siteKeys.LoadOrStore(site.ID, k)
	return v.(*siteKeys)
}

// stats is the shard's counters key of now's day, cached for the day.
func (k *shardKeys) stats(now time.Time) string {
	day := now.Unix() / 86400
	if d := k.day.Load(); d != nil && d.day == day {
		return d.key
	}
	d := &dayKey{day: day, key: statsKey(k.site, k.shard, now)}
	k.day.Store(d)
	return d.key
}

// maxTTLSlack bounds how long after the last refresh of a visitor's TTLs (the
// profile's w) a hit within a session refreshes them again: the profile write
// and three EXPIREs a page view saves, against data that expires at most this
// much before its window from the last write (never after it).
const maxTTLSlack = time.Hour

// ttlSlackOf is the TTL slack of a retention: maxTTLSlack, or a hundredth of
// the shorter of the sessions and profiles windows when that is less.
func ttlSlackOf(r visitor.Retention) time.Duration {
	return min(maxTTLSlack, days(min(r.Sessions, r.Profiles))/100)
}

// subjectSlack is how far ahead of its data's expiry a visitor's subject-index
// entry is written, so that a returning visitor raises it about once a slack
// (one more command then), not on every page view.
const subjectSlack = 7 * 24 * time.Hour

// RecordHit writes a hit as one script on the visitor's slot, in one round
// trip. Its site-level data (live entry, counter, subject-index entry) follows
// from the script's answer, so nothing is written on the expectation that the
// hit is tracked and taken back when it is not: it goes to this pod's buffer
// (aggregate.go), flushed by RunFlusher or, without it, before RecordHit
// returns.
func (s *Store) RecordHit(ctx context.Context, w visitor.HitWrite) (visitor.HitOutcome, error) {
	until := w.Now.Add(days(max(w.Retention.Sessions, w.Retention.Profiles)))
	ixScore := until.Add(subjectSlack)
	sk := s.siteKeysOf(w.Site)
	a := hitArgs{
		keys: hitKeysOf(w.Site.ID, w.VisitorKey), op: w.Type, now: w.Now,
		requireGrant: w.RequireGrant, policy: w.Site.PolicyVersion,
		sessionTimeout: w.Site.SessionTimeout, sessionMax: w.Site.SessionMax,
		sessionsTTL: days(w.Retention.Sessions), profilesTTL: days(w.Retention.Profiles),
		newSessionID: w.NewSessionID, visitorID: w.VisitorID, page: w.Page, device: w.Device, location: w.Location, ip: w.IP,
		maxPages: visitor.MaxSessionPages, indexNeeds: until, indexWrite: ixScore, minted: w.NewVisitor,
		ttlSlack: ttlSlackOf(w.Retention),
	}
	a.consts = sk.hitConsts(a)
	hit, err := a.call()
	if err != nil {
		return 0, fmt.Errorf("record hit: %w", err)
	}
	if err := s.runShared(ctx, hit); err != nil {
		return 0, fmt.Errorf("record hit: %w", err)
	}
	res, err := decodeHit(hit)
	if err != nil {
		return 0, fmt.Errorf("record hit: %w", err)
	}
	buf := &sk.buf
	switch res.outcome {
	case visitor.OutcomeNewSession, visitor.OutcomeTracked:
		var reason visitor.Reason
		if w.Count {
			reason = visitor.ReasonTracked
		}
		// A new visitor enters the subject index; a returning one raises its
		// entry when its data now outlives it (about once a subjectSlack), so
		// that the retention job keeps reaching it.
		var subject int64
		if w.NewVisitor || res.raiseIndex {
			subject = ms(ixScore)
		}
		buf.add(w.VisitorKey, w.Now, subject, reason)
	case visitor.OutcomeNoConsent:
		if !w.Count {
			return res.outcome, nil
		}
		buf.add("", w.Now, 0, visitor.ReasonNoConsent)
	default:
		return res.outcome, nil
	}
	if err := s.flushed(ctx); err != nil {
		return 0, fmt.Errorf("record hit: %w", err)
	}
	return res.outcome, nil
}

// CountRefused adds one to the site's per-day counter of reason (buffered as
// RecordHit's site-level data is).
func (s *Store) CountRefused(ctx context.Context, site *visitor.Site, now time.Time, reason visitor.Reason) error {
	s.bufferOf(site).add("", now, 0, reason)
	if err := s.flushed(ctx); err != nil {
		return fmt.Errorf("count %s: %w", reason, err)
	}
	return nil
}

package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
)

// Store is visitord's Redis store. It is safe for concurrent use.
type Store struct {
	c           redis.UniversalClient
	minReplicas int
	sites       []string
}

// Option sets an optional tunable of the Store.
type Option func(*Store)

// WithSites names the sites whose configuration the store reads.
func WithSites(ids ...string) Option { return func(s *Store) { s.sites = ids } }

// WithMinReplicas makes consent and chat writes wait until n replicas hold them.
func WithMinReplicas(n int) Option { return func(s *Store) { s.minReplicas = n } }

// New returns a Store over c.
func New(c redis.UniversalClient, opts ...Option) *Store {
	s := &Store{c: c}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Ping reports whether Redis answers; ErrStoreUnavailable otherwise.
func (s *Store) Ping(ctx context.Context) error {
	return translate(s.c.Ping(ctx).Err())
}

// LoadScripts loads the store's scripts on every node, so the first page views
// after a start need no fallback; scripts missing later (a restart, a failover)
// are sent whole once.
func (s *Store) LoadScripts(ctx context.Context) error {
	load := func(ctx context.Context, c *redis.Client) error {
		for _, sc := range declared {
			if err := sc.Load(ctx, c).Err(); err != nil {
				return translate(err)
			}
		}
		return nil
	}
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, load)
	}
	for _, sc := range declared {
		if err := sc.Load(ctx, s.c).Err(); err != nil {
			return translate(err)
		}
	}
	return nil
}

// call is one script call of a pipeline.
type call struct {
	script *script
	keys   []string
	args   []any
	cmd    *redis.Cmd
}

// run sends calls in one pipeline: one round trip on a single Redis, one per node
// involved on a Cluster. A call whose script the node lost (NOSCRIPT after a
// restart or failover) is sent again whole; the others ran once.
func (s *Store) run(ctx context.Context, calls ...*call) error {
	return runOn(ctx, s.c, calls...)
}

// runner is what run needs: the client, or one connection of it (redis.Conn).
type runner interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// runOn is run on r: with a redis.Conn every command, fallbacks included, goes
// over that one connection.
func runOn(ctx context.Context, r runner, calls ...*call) error {
	pipe := r.Pipeline()
	for _, c := range calls {
		c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	if _, err := pipe.Exec(ctx); err == nil {
		return nil
	}
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			c.cmd = c.script.Eval(ctx, r, c.keys, c.args...)
		}
	}
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return translate(err)
		}
	}
	return nil
}

// translate turns a driver error into a domain one: a Redis that cannot be reached
// in time is ErrStoreUnavailable; a Redis that answers with an error is a bug.
func translate(err error) error {
	if err == nil {
		return nil
	}
	var rerr redis.Error
	if errors.As(err, &rerr) && !redis.HasErrorPrefix(err, "LOADING") && !redis.HasErrorPrefix(err, "READONLY") &&
		!redis.HasErrorPrefix(err, "CLUSTERDOWN") && !redis.HasErrorPrefix(err, "TRYAGAIN") && !redis.HasErrorPrefix(err, "MASTERDOWN") {
		return fmt.Errorf("redis: %w", err)
	}
	return fmt.Errorf("%w: %v", visitor.ErrStoreUnavailable, err)
}

func ms(t time.Time) int64 { return t.UnixMilli() }

func days(n int) time.Duration { return time.Duration(n) * 24 * time.Hour }

func seconds(d time.Duration) int64 { return int64(d / time.Second) }

func bit(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// siteCall updates the site-level indexes of one hit, on the shard of vkey (any
// shard when there is none): live op as siteScript says; add and takeBack name
// per-day counters ("" for none).
func siteCall(site *visitor.Site, vkey string, now time.Time, live string, add, takeBack visitor.Reason) *call {
	n := siteCalls.Add(1)
	trim := "0"
	if n%trimEvery == 0 {
		trim = "1"
	}
	shard := int(n % SiteShards)
	if vkey != "" {
		shard = shardOf(vkey)
	}
	sk := siteKeysOf(site)
	k := sk.shards[shard]
	return &call{script: siteScript, keys: []string{k.live, k.stats(now)}, args: []any{
		live, vkey, ms(now), sk.liveTTL, string(add), string(takeBack), statsTTLSeconds, maxLivePerShard, trim,
	}}
}

// Constant arguments, boxed once.
var (
	statsTTLSeconds any = seconds(StatsTTL)
	maxLivePerShard any = MaxLive / SiteShards
	maxSessionPages any = MaxSessionPages
)

// siteKeys are a site's index key names, built once: the page-view path sends
// them on every call.
type siteKeys struct {
	liveTTL any
	shards  [SiteShards]*shardKeys
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

var siteKeyCache sync.Map // site id → *siteKeys

func siteKeysOf(site *visitor.Site) *siteKeys {
	if k, ok := siteKeyCache.Load(site.ID); ok {
		return k.(*siteKeys)
	}
	k := &siteKeys{liveTTL: (2 * site.SessionTimeout).Milliseconds()}
	for i := range k.shards {
		k.shards[i] = &shardKeys{site: site.ID, shard: i, live: liveKey(site.ID, i)}
	}
	v, _ := siteKeyCache.LoadOrStore(site.ID, k)
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

// trimEvery is how often (one site-index update in trimEvery) a live-set shard
// is trimmed by time and size: trimming on every page view costs Redis work that
// readers, which filter by time, do not need.
const trimEvery = 32

var siteCalls atomic.Uint64

// subjectCall enters a subject in the site's subject index, which the retention
// job walks, scored by until: when the subject's data expires.
func subjectCall(site string, subject string, until, now time.Time) *call {
	return &call{script: subjectScript, keys: []string{subjectsKey(site)}, args: []any{subject, ms(until), ms(now)}}
}

// subjectSlack is how far ahead of its data's expiry a visitor's subject-index
// entry is written, so that a returning visitor raises it about once a slack
// (one more command then), not on every page view.
const subjectSlack = 7 * 24 * time.Hour

var hitOps = map[visitor.HitType]string{visitor.HitPageview: "p", visitor.HitHeartbeat: "h", visitor.HitLeave: "l"}

// RecordHit writes a hit as one script on the visitor's slot plus one command on
// the site's indexes, in one pipeline. The indexes are written on the expectation
// that the hit is tracked; when the script refuses it, a second round trip takes
// the index entries back (rare: a withdrawn grant or an erased visitor).
func (s *Store) RecordHit(ctx context.Context, w visitor.HitWrite) (visitor.HitOutcome, error) {
	profile := visitorPrefix(w.Site.ID, w.VisitorKey)
	var tracked visitor.Reason
	if w.Count {
		tracked = visitor.ReasonTracked
	}
	until := w.Now.Add(days(max(w.Retention.Sessions, w.Retention.Profiles)))
	ixScore := until.Add(subjectSlack)
	hit := &call{script: hitScript, keys: []string{profile, profile + ":c", profile + ":t", profile + ":S"}, args: []any{
		hitOps[w.Type], ms(w.Now), bit(w.RequireGrant), w.Site.PolicyVersion,
		w.Site.SessionTimeout.Milliseconds(), w.Site.SessionMax.Milliseconds(),
		seconds(days(w.Retention.Sessions)), seconds(days(w.Retention.Profiles)),
		w.NewSessionID, w.VisitorID, w.Page.URL, w.Page.Title, w.Page.Referrer,
		w.Device.Browser, w.Device.Version, w.Device.OS, bit(w.Device.Mobile),
		w.Location.Country, w.Location.Region, w.Location.City, w.Location.TimeZone, w.IP, maxSessionPages,
		ms(until), ms(ixScore), bit(w.NewVisitor),
	}}
	calls := []*call{hit, siteCall(w.Site, w.VisitorKey, w.Now, "+", tracked, "")}
	if w.NewVisitor {
		calls = append(calls, subjectCall(w.Site.ID, w.VisitorKey, ixScore, w.Now))
	}
	if err := s.run(ctx, calls...); err != nil {
		return 0, fmt.Errorf("record hit: %w", err)
	}
	res, err := hit.cmd.Text()
	if err != nil {
		return 0, fmt.Errorf("record hit: %w", translate(err))
	}
	res, raise := strings.CutSuffix(res, "|ix")
	if raise {
		// The visitor's data now outlives its subject-index entry: raise it, so
		// that the retention job keeps reaching it (about once a subjectSlack).
		if err := s.run(ctx, subjectCall(w.Site.ID, w.VisitorKey, ixScore, w.Now)); err != nil {
			return 0, fmt.Errorf("record hit: %w", err)
		}
	}
	var out visitor.HitOutcome
	var refused visitor.Reason
	undo := []*call{siteCall(w.Site, w.VisitorKey, w.Now, "-", "", "")}
	switch res {
	case "new":
		return visitor.OutcomeNewSession, nil
	case "ok":
		return visitor.OutcomeTracked, nil
	case "no_session":
		out = visitor.OutcomeNoSession
	case "no_consent":
		out = visitor.OutcomeNoConsent
		if w.Count {
			refused = visitor.ReasonNoConsent
		}
	case "erased":
		out = visitor.OutcomeErased
		if w.NewVisitor {
			undo = append(undo, &call{script: subjectScript, keys: []string{subjectsKey(w.Site.ID)}, args: []any{w.VisitorKey, "", ms(w.Now)}})
		}
	default:
		return 0, fmt.Errorf("record hit: unexpected script answer %q", res)
	}
	undo[0] = siteCall(w.Site, w.VisitorKey, w.Now, "-", refused, tracked)
	if err := s.run(ctx, undo...); err != nil {
		return 0, fmt.Errorf("take back hit: %w", err)
	}
	return out, nil
}

// CountRefused adds one to the site's per-day counter of reason.
func (s *Store) CountRefused(ctx context.Context, site *visitor.Site, now time.Time, reason visitor.Reason) error {
	if err := s.run(ctx, siteCall(site, "", now, "", reason, "")); err != nil {
		return fmt.Errorf("count %s: %w", reason, err)
	}
	return nil
}

// ConsentChoice returns the visitor's current consent choice.
func (s *Store) ConsentChoice(ctx context.Context, site *visitor.Site, vkey string) (visitor.Choice, bool, error) {
	v, err := s.c.HMGet(ctx, keysOf(site.ID, vkey).choice, "a", "m", "pv", "t", "u").Result()
	if err != nil {
		return visitor.Choice{}, false, fmt.Errorf("consent choice: %w", translate(err))
	}
	if v[0] == nil {
		return visitor.Choice{}, false, nil
	}
	str := func(i int) string { s, _ := v[i].(string); return s }
	return visitor.Choice{
		Analytics: str(0) == "1", Marketing: str(1) == "1", PolicyVersion: str(2),
		Given: msTime(str(3)), ValidUntil: msTime(str(4)),
	}, true, nil
}

func msTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// consentRecordJSON is how a consent record is kept (and exported).
type consentRecordJSON struct {
	VisitorID     string    `json:"visitor_id,omitempty"`
	Subject       string    `json:"subject,omitempty"` // keyed hash, after an erasure
	Time          time.Time `json:"time"`
	Analytics     *bool     `json:"analytics,omitempty"` // absent: not asked
	Marketing     *bool     `json:"marketing,omitempty"`
	PolicyVersion string    `json:"policy_version"`
	TextSHA256    string    `json:"text_sha256"`
	Method        string    `json:"method"`
	IP            string    `json:"ip,omitempty"`
	UserAgent     string    `json:"user_agent,omitempty"`
}

// SaveConsent writes a consent record and the choice it makes in one script on
// the visitor's slot; a refusal also deletes behaviour data and the live entry,
// a marketing withdrawal withdraws the permission of the visitor's chats (the
// ids returned) in the same script. With WithMinReplicas it returns once that
// many replicas hold the write.
func (s *Store) SaveConsent(ctx context.Context, w visitor.ConsentWrite) ([]string, error) {
	k := keysOf(w.Site.ID, w.VisitorKey)
	r := w.Record
	rec, err := json.Marshal(consentRecordJSON{
		VisitorID: r.VisitorID, Subject: r.Subject, Time: r.Time, Analytics: r.Analytics, Marketing: r.Marketing,
		PolicyVersion: r.PolicyVersion, TextSHA256: r.TextSHA256, Method: r.Method, IP: r.IP, UserAgent: r.UserAgent,
	})
	if err != nil {
		return nil, fmt.Errorf("save consent: %w", err)
	}
	c := w.Choice
	save := &call{script: consentScript, keys: []string{k.choice, k.records, k.tombstone, k.profile, k.sessions, k.chats, k.withdrawn, k.owed},
		args: []any{
			bit(c.Analytics), bit(c.Marketing), c.PolicyVersion, ms(c.Given), ms(c.ValidUntil),
			rec, ms(r.Time.Add(days(w.Retention.Consents))), ms(r.Time), bit(w.Forget), ms(choiceExpiry(w)),
			bit(w.WithdrawMarketing), bit(w.UnlessChanged),
		}}
	calls := []*call{save, subjectCall(w.Site.ID, w.VisitorKey, r.Time.Add(days(w.Retention.Consents)), r.Time)}
	if w.Forget {
		calls = append(calls, siteCall(w.Site, w.VisitorKey, r.Time, "-", w.Count, ""))
	} else if w.Count != "" {
		calls = append(calls, siteCall(w.Site, "", r.Time, "", w.Count, ""))
	}
	on, release := s.durable()
	defer release()
	if err := runOn(ctx, on, calls...); err != nil {
		return nil, fmt.Errorf("save consent: %w", err)
	}
	switch res, _ := save.cmd.Text(); res {
	case "erased":
		return nil, fmt.Errorf("save consent: %w", visitor.ErrErased)
	case "same":
		return nil, fmt.Errorf("save consent: %w", visitor.ErrUnchanged)
	}
	withdrawn, _ := save.cmd.StringSlice()
	sort.Strings(withdrawn)
	return withdrawn, s.waitReplicas(ctx, on)
}

// OwedWithdrawals returns the chats of a visitor whose marketing.withdrawn is
// owed (a withdrawal written, its delivery not queued), sorted.
func (s *Store) OwedWithdrawals(ctx context.Context, site *visitor.Site, vkey string) ([]string, error) {
	ids, err := s.c.SMembers(ctx, keysOf(site.ID, vkey).owed).Result()
	if err != nil {
		return nil, fmt.Errorf("owed withdrawals: %w", translate(err))
	}
	sort.Strings(ids)
	return ids, nil
}

// SettleWithdrawals records that the marketing.withdrawn of chatIDs is queued.
func (s *Store) SettleWithdrawals(ctx context.Context, site *visitor.Site, vkey string, chatIDs []string) error {
	if len(chatIDs) == 0 {
		return nil
	}
	members := make([]any, len(chatIDs))
	for i, id := range chatIDs {
		members[i] = id
	}
	if err := s.c.SRem(ctx, keysOf(site.ID, vkey).owed, members...).Err(); err != nil {
		return fmt.Errorf("settle withdrawals: %w", translate(err))
	}
	return nil
}

// choiceExpiry is when a choice's key goes: a grant when it lapses; a refusal
// not before every identity it replaced has expired, so a replayed old token
// stays refused.
func choiceExpiry(w visitor.ConsentWrite) time.Time {
	until := w.Choice.ValidUntil
	if !w.Choice.Analytics {
		if idEnd := w.Record.Time.Add(visitor.MaxCookieLifetime); idEnd.After(until) {
			until = idEnd
		}
	}
	return until
}

// durable returns where a consent or chat write goes and a function that
// releases it. WAIT counts only the writes of the connection it runs on, and
// go-redis pools connections: a WAIT sent through the pool may run on another
// connection and return at once, acknowledging a write no replica holds. So with
// WithMinReplicas on a single Redis or a Sentinel master (a *redis.Client) the
// write and its WAIT share one connection, held until release. A Cluster spreads
// a write over several nodes, each needing its own WAIT; not done yet, so there
// WAIT still goes through the pool and proves nothing.
func (s *Store) durable() (runner, func()) {
	if s.minReplicas > 0 {
		if c, ok := s.c.(*redis.Client); ok {
			conn := c.Conn()
			return conn, func() { _ = conn.Close() }
		}
	}
	return s.c, func() {}
}

// waitReplicas blocks until minReplicas replicas acknowledged the writes made
// on the connection durable returned; ErrStoreUnavailable when fewer did within
// WAIT's timeout. A write that was not acknowledged may still be on the master.
func (s *Store) waitReplicas(ctx context.Context, on runner) error {
	if s.minReplicas <= 0 {
		return nil
	}
	n, err := on.Do(ctx, "WAIT", s.minReplicas, 1000).Int()
	if err != nil {
		return fmt.Errorf("wait for replicas: %w", translate(err))
	}
	if n < s.minReplicas {
		return fmt.Errorf("%w: %d of %d replicas acknowledged the write", visitor.ErrStoreUnavailable, n, s.minReplicas)
	}
	return nil
}

package redisstore

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// The service calls the store through this interface.
var _ visitor.RetentionStore = (*Store)(nil)

// rxOld is the site's retention before the change; rxShort shrinks sessions
// 90→1, profiles 395→2, chats 90→1, consents 1095→400 and audit 365→2 days.
var (
	rxOld   = visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365}
	rxShort = visitor.Retention{Sessions: 1, Profiles: 2, Chats: 1, Consents: 400, Audit: 2}
)

// rxTolerance absorbs the time between a write and the PTTL read.
const rxTolerance = 2 * time.Minute

func rxSite() *visitor.Site {
	return &visitor.Site{ID: "shop", SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour,
		ConsentValidDays: 180, PolicyVersion: "2026-11", Retention: rxOld}
}

// rxNow is the pinned clock of a test: the current time, because Redis expires
// keys by its own clock.
func rxNow() time.Time { return time.Now().UTC().Truncate(time.Millisecond) }

type rxEnv struct {
	c    *redis.Client
	s    *Store
	site *visitor.Site
	ctx  context.Context
}

func rxStart(tb testing.TB) rxEnv {
	tb.Helper()
	rs := redistest.Start(tb)
	c := rs.Client(tb)
	site := rxSite()
	tb.Cleanup(func() {
		redistest.AssertAllKeysHaveTTL(tb, c, func(k string) bool { return strings.HasPrefix(k, "cfg:") })
	})
	// The site's data is in the current layout: no migration pass is due.
	if err := c.Set(context.Background(), schemaKey(site.ID), schemaVersion, 0).Err(); err != nil {
		tb.Fatal(err)
	}
	return rxEnv{c: c, s: New(c, WithSites(site.ID)), site: site, ctx: context.Background()}
}

// hit records a page view of vkey at at, opening session sid if it opens one.
func (e rxEnv) hit(tb testing.TB, vkey, vid, sid string, at time.Time) {
	tb.Helper()
	// The id is minted (the write-only path) for a visitor's first hit only.
	n, err := e.c.Exists(e.ctx, keysOf(e.site.ID, vkey).profile).Result()
	if err != nil {
		tb.Fatal(err)
	}
	out, err := e.s.RecordHit(e.ctx, visitor.HitWrite{Site: e.site, Retention: rxOld, VisitorID: vid, VisitorKey: vkey,
		Type: visitor.HitPageview, Now: at, Page: visitor.Page{URL: "https://shop.example/p", Title: "P"},
		Device: visitor.Device{Browser: "Firefox"}, NewSessionID: sid, Count: true, NewVisitor: n == 0})
	if err != nil || out != visitor.OutcomeNewSession {
		tb.Fatalf("RecordHit(%s at %v) = %v, %v; want a new session", vkey, at, out, err)
	}
}

func (e rxEnv) consent(tb testing.TB, vkey, vid string, at time.Time) {
	tb.Helper()
	_, err := e.s.SaveConsent(e.ctx, visitor.ConsentWrite{Site: e.site, Retention: rxOld, VisitorKey: vkey,
		Record: visitor.ConsentRecord{VisitorID: vid, Time: at, Analytics: answered(true), PolicyVersion: "2026-11",
			TextSHA256: "ab12", Method: "banner", IP: "192.0.2.0", UserAgent: "Firefox"},
		Choice: visitor.Choice{Analytics: true, PolicyVersion: "2026-11", Given: at, ValidUntil: at.Add(180 * 24 * time.Hour)}})
	if err != nil {
		tb.Fatal(err)
	}
}

// chat starts chat id at at, of vkey ("" for a chat without identity), with a
// marketing opt-in, an e-mail's blind-index entry and, if webhook, a delivery.
func (e rxEnv) chat(tb testing.TB, id, vkey, vid, email string, at time.Time, webhook bool) {
	tb.Helper()
	w := visitor.ChatWrite{Site: e.site, Retention: rxOld, ChatID: id, VisitorID: vid, VisitorKey: vkey, Start: at,
		URL: "https://shop.example/p", Marketing: true, Name: "k1:sealed", Email: "k1:sealed", EmailIndex: email,
		MarketingRecord: &visitor.ConsentRecord{VisitorID: vid, Time: at, Marketing: answered(true), PolicyVersion: "2026-11",
			TextSHA256: "ab12", Method: "chat_start"}}
	if webhook {
		w.Webhook = &visitor.Delivery{ID: "d" + id, Event: "chat.started", Sealed: "k1:sealed"}
	}
	if err := e.s.SaveChat(e.ctx, w); err != nil {
		tb.Fatal(err)
	}
	if vkey == "" && email != "" {
		// SaveChat should keep the blind-index key of a chat in its "ei" field
		// (the erasure and this job read it), but it appends the field after the
		// hash's arguments were taken; written here as a fixed SaveChat would.
		if err := e.c.HSet(e.ctx, chatKey(e.site.ID, id), "ei", emailKey(e.site.ID, email)).Err(); err != nil {
			tb.Fatal(err)
		}
	}
}

// job runs the whole job as owner in batches of batch and returns how many
// calls it took.
func (e rxEnv) job(tb testing.TB, r visitor.Retention, now time.Time, owner string, batch int) int {
	tb.Helper()
	for n := 1; n < 10_000; n++ {
		done, err := e.s.ReexpireBatch(e.ctx, e.site, r, now, owner, batch)
		if err != nil {
			tb.Fatalf("ReexpireBatch #%d: %v", n, err)
		}
		if done {
			return n
		}
	}
	tb.Fatal("the job never ends")
	return 0
}

// ageFlag rewrites the flag as if the change were made a minute ago, past the
// time pods may still write with the old windows.
func (e rxEnv) ageFlag(tb testing.TB) {
	tb.Helper()
	if err := e.c.Set(e.ctx, reexpireKey(e.site.ID), ms(time.Now().Add(-time.Minute)), 0).Err(); err != nil {
		tb.Fatal(err)
	}
}

func (e rxEnv) pending(tb testing.TB) bool {
	tb.Helper()
	p, err := e.s.PendingReexpiry(e.ctx, e.site)
	if err != nil {
		tb.Fatal(err)
	}
	return p
}

// expiresAt fails tb unless key exists and expires at want (± rxTolerance).
func (e rxEnv) expiresAt(tb testing.TB, key string, want time.Time) {
	tb.Helper()
	got, err := e.c.PExpireTime(e.ctx, key).Result()
	if err != nil {
		tb.Fatal(err)
	}
	if got < 0 {
		tb.Errorf("%s: PEXPIRETIME %v, want it to exist and expire at %v", key, got, want)
		return
	}
	at := time.UnixMilli(int64(got / time.Millisecond))
	if d := at.Sub(want); d > rxTolerance || d < -rxTolerance {
		tb.Errorf("%s expires at %v, want %v (off by %v)", key, at.UTC(), want.UTC(), d)
	}
}

func (e rxEnv) gone(tb testing.TB, keys ...string) {
	tb.Helper()
	for _, k := range keys {
		if n, err := e.c.Exists(e.ctx, k).Result(); err != nil || n != 0 {
			tb.Errorf("%s exists (%d, %v), want it deleted", k, n, err)
		}
	}
}

// score returns member's score in key (ms), -1 when absent.
func (e rxEnv) score(tb testing.TB, key, member string) int64 {
	tb.Helper()
	sc, err := e.c.ZScore(e.ctx, key, member).Result()
	if errors.Is(err, redis.Nil) {
		return -1
	}
	if err != nil {
		tb.Fatal(err)
	}
	return int64(sc)
}

// recordScores returns the scores of a consent-records zset, oldest first.
func (e rxEnv) recordScores(tb testing.TB, key string) []int64 {
	tb.Helper()
	zs, err := e.c.ZRangeWithScores(e.ctx, key, 0, -1).Result()
	if err != nil {
		tb.Fatal(err)
	}
	var out []int64
	for _, z := range zs {
		out = append(out, int64(z.Score))
	}
	return out
}

// rxDay is a day of retention.
const rxDay = 24 * time.Hour

func TestReexpireShrinks(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	now := rxNow()
	old, fresh := now.Add(-3*rxDay), now.Add(-time.Hour)
	vA, vB, vC, vD := "vkA0000000000000", "vkB0000000000000", "vkC0000000000000", "vkD0000000000000"

	e.hit(t, vA, "vidA", "sA1", old) // everything 3 days old
	e.consent(t, vA, "vidA", old)
	e.chat(t, "chA", vA, "vidA", "hashA", old, false)
	e.hit(t, vB, "vidB", "sB1", fresh) // everything an hour old
	e.consent(t, vB, "vidB", fresh)
	e.chat(t, "chB", vB, "vidB", "hashB", fresh, true)
	e.hit(t, vC, "vidC", "sC1", old) // an old and a fresh session and consent
	e.consent(t, vC, "vidC", old)
	e.hit(t, vC, "vidC", "sC2", fresh)
	e.consent(t, vC, "vidC", fresh)
	e.hit(t, vD, "vidD", "sD1", old) // an old visitor without consent: nothing stays
	e.chat(t, "cxOld", "", "", "hashX", old, false)
	e.chat(t, "cxNew", "", "", "hashY", fresh, true)
	au := auditKey(e.site.ID)
	for _, at := range []time.Time{old, fresh} {
		if err := e.c.XAdd(e.ctx, &redis.XAddArgs{Stream: au, ID: fmt.Sprintf("%d-0", ms(at)), Values: []any{"t", ms(at), "action", "x"}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	e.c.PExpire(e.ctx, au, 365*rxDay)
	pA, pB, pC, pD := keysOf("shop", vA), keysOf("shop", vB), keysOf("shop", vC), keysOf("shop", vD)
	choiceBefore, _ := e.c.PExpireTime(e.ctx, pB.choice).Result()

	if err := e.s.SaveRetention(e.ctx, e.site, rxShort, true); err != nil {
		t.Fatal(err)
	}
	if !e.pending(t) {
		t.Fatal("PendingReexpiry = false after a shorter window was saved")
	}
	if n := e.job(t, rxShort, now, "pod-a", 2); n < 4 {
		t.Errorf("the job of 6 subjects took %d calls of 2, want at least 4", n)
	}

	// Visitor A: all behaviour data and the chat are past; consent records stay
	// 400 days from their time, and so does A in the subject index.
	e.gone(t, pA.profile, sessionKey(pA.profile, "sA1"), pA.sessions, pA.chats, pA.indexes, chatKey("shop", "chA"), emailKey("shop", "hashA"))
	if got, want := e.recordScores(t, pA.records), []int64{ms(old.Add(400 * rxDay)), ms(old.Add(400 * rxDay))}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("A's records scored %v, want %v", got, want)
	}
	e.expiresAt(t, pA.records, old.Add(400*rxDay))
	if e.score(t, subjectsKey("shop"), vA) < 0 {
		t.Error("A left the subject index while its consent records remain")
	}

	// Visitor B: every record expires at its write time + the new window.
	e.expiresAt(t, pB.profile, fresh.Add(2*rxDay))
	e.expiresAt(t, sessionKey(pB.profile, "sB1"), fresh.Add(rxDay))
	e.gone(t, pB.sessions) // a one-session visitor has no session index
	e.expiresAt(t, pB.chats, fresh.Add(rxDay))
	e.expiresAt(t, pB.indexes, fresh.Add(rxDay))
	e.expiresAt(t, chatKey("shop", "chB"), fresh.Add(rxDay))
	e.expiresAt(t, chatKey("shop", "chB")+":w:dchB", fresh.Add(rxDay))
	e.expiresAt(t, pB.records, fresh.Add(400*rxDay))
	if got, want := e.score(t, emailKey("shop", "hashB"), "v:vidB"), ms(fresh.Add(rxDay)); got != want {
		t.Errorf("B's blind-index entry scored %d, want %d", got, want)
	}
	e.expiresAt(t, emailKey("shop", "hashB"), fresh.Add(rxDay))
	if choiceAfter, _ := e.c.PExpireTime(e.ctx, pB.choice).Result(); choiceAfter != choiceBefore {
		t.Errorf("B's consent choice expires at %v, was %v: it lasts as long as the choice is valid", choiceAfter, choiceBefore)
	}

	// Visitor C: the old session goes, from the index too; the fresh one stays.
	e.gone(t, sessionKey(pC.profile, "sC1"))
	if e.score(t, pC.sessions, "sC1") >= 0 {
		t.Error("the deleted session sC1 is still in C's session index")
	}
	e.expiresAt(t, sessionKey(pC.profile, "sC2"), fresh.Add(rxDay))
	e.expiresAt(t, pC.profile, fresh.Add(2*rxDay))
	if got, want := e.recordScores(t, pC.records), []int64{ms(old.Add(400 * rxDay)), ms(fresh.Add(400 * rxDay))}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("C's records scored %v, want %v", got, want)
	}
	e.expiresAt(t, pC.records, fresh.Add(400*rxDay))

	// Visitor D: nothing left, and gone from the subject index.
	e.gone(t, pD.profile, pD.sessions, sessionKey(pD.profile, "sD1"))
	if e.score(t, subjectsKey("shop"), vD) >= 0 {
		t.Error("D, with no data left, is still in the subject index")
	}

	// Chats without identity.
	e.gone(t, chatKey("shop", "cxOld"), emailKey("shop", "hashX"))
	e.expiresAt(t, chatKey("shop", "cxOld")+":r", old.Add(400*rxDay))
	e.expiresAt(t, chatKey("shop", "cxNew"), fresh.Add(rxDay))
	e.expiresAt(t, chatKey("shop", "cxNew")+":w:dcxNew", fresh.Add(rxDay))
	e.expiresAt(t, chatKey("shop", "cxNew")+":r", fresh.Add(400*rxDay))
	e.expiresAt(t, emailKey("shop", "hashY"), fresh.Add(rxDay))
	visitors, chats, err := e.s.SearchEmail(e.ctx, e.site, "hashX", now)
	if err != nil || len(visitors)+len(chats) != 0 {
		t.Errorf("SearchEmail(hashX) = %v, %v, %v; want nothing: its chat is gone", visitors, chats, err)
	}

	// Audit: trimmed to 2 days, expiring 2 days after its last entry.
	if n, _ := e.c.XLen(e.ctx, au).Result(); n != 1 {
		t.Errorf("audit stream holds %d entries, want the fresh one", n)
	}
	e.expiresAt(t, au, fresh.Add(2*rxDay))

	// The pass began within seconds of the change, when another pod could still
	// write with the old windows: the flag stays for one more pass.
	e.gone(t, reexpireLockKey("shop"), reexpireCheckpointKey("shop"))
	if !e.pending(t) {
		t.Error("the flag was cleared by a pass that began right after the change")
	}
	e.ageFlag(t)
	e.job(t, rxShort, now, "pod-b", 500)
	if e.pending(t) {
		t.Error("PendingReexpiry = true after a full pass begun after the change settled")
	}
	e.gone(t, reexpireLockKey("shop"), reexpireCheckpointKey("shop"))
	e.expiresAt(t, pB.profile, fresh.Add(2*rxDay))
}

func TestReexpireNeverExtends(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	now := rxNow()
	fresh := now.Add(-time.Hour)
	v := "vkE0000000000000"
	e.hit(t, v, "vidE", "sE0", fresh.Add(-2*time.Hour)) // an earlier session, in the index
	e.hit(t, v, "vidE", "sE1", fresh)
	e.consent(t, v, "vidE", fresh)
	e.chat(t, "chE", v, "vidE", "hashE", fresh, true)
	e.chat(t, "cxE", "", "", "hashF", fresh, false)
	k := keysOf("shop", v)
	keys := []string{k.profile, k.sessions, sessionKey(k.profile, "sE1"), k.chats, k.indexes, k.records, k.choice,
		chatKey("shop", "chE"), chatKey("shop", "chE") + ":w:dchE", chatKey("shop", "cxE"), chatKey("shop", "cxE") + ":r",
		emailKey("shop", "hashE"), emailKey("shop", "hashF")}
	expiries := func() map[string]time.Time {
		out := map[string]time.Time{}
		for _, key := range keys {
			at, _ := e.c.PExpireTime(e.ctx, key).Result()
			out[key] = time.UnixMilli(at.Milliseconds()).UTC()
		}
		return out
	}
	before := expiries()

	// Every window grows: nothing changes (a longer window applies to new writes only).
	grown := visitor.Retention{Sessions: 120, Profiles: 400, Chats: 120, Consents: 1200, Audit: 400}
	e.ageFlag(t)
	e.job(t, grown, now, "pod-a", 500)
	after := expiries()
	for _, key := range keys {
		if !after[key].Equal(before[key]) {
			t.Errorf("%s expires at %v, was %v: a longer window changed stored data", key, after[key], before[key])
		}
	}
	if got, want := e.recordScores(t, k.records), []int64{ms(fresh.Add(1095 * rxDay)), ms(fresh.Add(1095 * rxDay))}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("records scored %v, want %v (unchanged)", got, want)
	}

	// Sessions grow while profiles shrink: only the profile's window applies.
	e.ageFlag(t)
	e.job(t, visitor.Retention{Sessions: 120, Profiles: 2, Chats: 90, Consents: 1095, Audit: 365}, now, "pod-a", 500)
	e.expiresAt(t, k.profile, fresh.Add(2*rxDay))
	// The session index never expires before a session list it names, so an
	// erasure still finds them.
	e.expiresAt(t, k.sessions, fresh.Add(120*rxDay))
	if sk := sessionKey(k.profile, "sE1"); !expiries()[sk].Equal(before[sk]) {
		t.Errorf("session expires at %v, was %v: its window grew", expiries()[sk], before[sk])
	}
}

// TestReexpireResumesAfterCrash kills a job half-way: its lock keeps others
// out while its lease runs, then another owner resumes from the checkpoint.
func TestReexpireResumesAfterCrash(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	now := rxNow()
	var vkeys []string
	for i := range 7 {
		vkey := fmt.Sprintf("vkR%013d", i)
		vkeys = append(vkeys, vkey)
		e.hit(t, vkey, fmt.Sprintf("vidR%d", i), "s1", now.Add(-3*rxDay+time.Duration(i)*time.Minute))
		e.consent(t, vkey, fmt.Sprintf("vidR%d", i), now.Add(-3*rxDay+time.Duration(i)*time.Minute))
	}
	if err := e.s.SaveRetention(e.ctx, e.site, rxShort, true); err != nil {
		t.Fatal(err)
	}
	e.ageFlag(t)
	lk, ck := reexpireLockKey("shop"), reexpireCheckpointKey("shop")
	checkpoint := func() string {
		m, err := e.c.HGet(e.ctx, ck, "m").Result()
		if err != nil {
			t.Fatalf("checkpoint: %v", err)
		}
		return m
	}

	done, err := e.s.ReexpireBatch(e.ctx, e.site, rxShort, now, "pod-a", 2)
	if err != nil || done {
		t.Fatalf("first batch = %v, %v; want more to do", done, err)
	}
	// pod-a crashes here.
	if got, want := checkpoint(), vkeys[1]; got != want {
		t.Fatalf("checkpoint at %q, want %q (the second subject)", got, want)
	}
	if ttl := e.c.PTTL(e.ctx, ck).Val(); ttl <= 9*time.Minute || ttl > LockTTL {
		t.Errorf("checkpoint TTL %v, want about %v", ttl, LockTTL)
	}
	if ttl := e.c.PTTL(e.ctx, lk).Val(); ttl <= 0 || ttl > LockTTL {
		t.Errorf("lock TTL %v, want a lease of at most %v", ttl, LockTTL)
	}
	if owner := e.c.Get(e.ctx, lk).Val(); owner != "pod-a" {
		t.Errorf("lock held by %q, want pod-a", owner)
	}
	e.gone(t, keysOf("shop", vkeys[0]).profile, keysOf("shop", vkeys[1]).profile)
	if n := e.c.Exists(e.ctx, keysOf("shop", vkeys[2]).profile).Val(); n != 1 {
		t.Fatal("the first batch went past its 2 subjects")
	}

	done, err = e.s.ReexpireBatch(e.ctx, e.site, rxShort, now, "pod-b", 2)
	if !errors.Is(err, visitor.ErrJobHeld) || done {
		t.Fatalf("pod-b while pod-a's lock holds = %v, %v; want ErrJobHeld", done, err)
	}
	if got := checkpoint(); got != vkeys[1] {
		t.Errorf("checkpoint moved to %q while the job was held", got)
	}
	if n := e.c.Exists(e.ctx, keysOf("shop", vkeys[2]).profile).Val(); n != 1 {
		t.Error("pod-b re-expired data while pod-a held the lock")
	}

	// pod-a's lease runs out.
	e.c.PExpire(e.ctx, lk, time.Millisecond)
	time.Sleep(10 * time.Millisecond)
	done, err = e.s.ReexpireBatch(e.ctx, e.site, rxShort, now, "pod-b", 2)
	if err != nil || done {
		t.Fatalf("pod-b resuming = %v, %v; want more to do", done, err)
	}
	if got, want := checkpoint(), vkeys[3]; got != want {
		t.Fatalf("after pod-b's first batch the checkpoint is at %q, want %q: resumed, not restarted", got, want)
	}
	if _, err := e.s.ReexpireBatch(e.ctx, e.site, rxShort, now, "pod-a", 2); !errors.Is(err, visitor.ErrJobHeld) {
		t.Errorf("pod-a back while pod-b holds the job: %v, want ErrJobHeld", err)
	}
	e.job(t, rxShort, now, "pod-b", 2)

	for _, vkey := range vkeys {
		k := keysOf("shop", vkey)
		e.gone(t, k.profile, k.sessions, sessionKey(k.profile, "s1"))
		if n := len(e.recordScores(t, k.records)); n != 1 {
			t.Errorf("%s holds %d consent records, want 1", vkey, n)
		}
	}
	e.gone(t, lk, ck)
	if e.pending(t) {
		t.Error("the flag survived the resumed job")
	}
	if done, err := e.s.ReexpireBatch(e.ctx, e.site, rxShort, now, "pod-a", 2); err != nil || !done {
		t.Errorf("a batch with no job pending = %v, %v; want done", done, err)
	}
	e.gone(t, lk, ck)
}

// TestReexpireChangedMidJob changes the windows while a job runs: the pass
// starts again under the new ones, and a pass under windows that are not the
// stored override (a stale cache) leaves the flag.
func TestReexpireChangedMidJob(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	now := rxNow()
	fresh := now.Add(-time.Hour)
	for i := range 5 {
		e.hit(t, fmt.Sprintf("vkM%013d", i), fmt.Sprintf("vidM%d", i), "s1", fresh.Add(time.Duration(i)*time.Second))
	}
	first := visitor.Retention{Sessions: 60, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365}
	if err := e.s.SaveRetention(e.ctx, e.site, first, true); err != nil {
		t.Fatal(err)
	}
	e.ageFlag(t)
	if done, err := e.s.ReexpireBatch(e.ctx, e.site, first, now, "pod-a", 2); err != nil || done {
		t.Fatalf("first batch = %v, %v", done, err)
	}
	e.expiresAt(t, sessionKey(keysOf("shop", "vkM0000000000000").profile, "s1"), fresh.Add(60*rxDay))

	// The window shrinks again: the flag gets a new value.
	if err := e.s.SaveRetention(e.ctx, e.site, rxShort, true); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Set(e.ctx, reexpireKey("shop"), ms(time.Now().Add(-50*time.Second)), 0).Err(); err != nil {
		t.Fatal(err)
	}
	e.job(t, rxShort, now, "pod-a", 2)
	for i := range 5 {
		e.expiresAt(t, sessionKey(keysOf("shop", fmt.Sprintf("vkM%013d", i)).profile, "s1"), fresh.Add(time.Duration(i)*time.Second+rxDay))
	}
	if e.pending(t) {
		t.Error("the flag stayed after a pass under the latest windows")
	}

	// A pod whose cache still has the first windows runs a pass: the flag stays.
	if err := e.s.SaveRetention(e.ctx, e.site, rxShort, true); err != nil {
		t.Fatal(err)
	}
	e.ageFlag(t)
	e.job(t, first, now, "pod-stale", 500)
	if !e.pending(t) {
		t.Error("a pass under windows other than the override cleared the flag")
	}
}

// TestRunRetentionJobs runs the jobs through the service, as every pod does.
func TestRunRetentionJobs(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	now := rxNow()
	fresh := now.Add(-time.Hour)
	v := "vkS0000000000000"
	e.hit(t, v, "vidS", "s1", fresh)
	e.consent(t, v, "vidS", fresh)
	e.hit(t, "vkS0000000000001", "vidS1", "s1", now.Add(-3*rxDay))
	sites, err := visitor.NewSites([]*visitor.Site{e.site})
	if err != nil {
		t.Fatal(err)
	}
	hasher, err := visitor.NewHasher(bytes.Repeat([]byte("k"), visitor.MinIndexKeyBytes))
	if err != nil {
		t.Fatal(err)
	}
	svc := visitor.NewService(visitor.Deps{Sites: sites, Store: e.s, Hasher: hasher}, visitor.WithClock(func() time.Time { return now }),
		visitor.WithAuditMinDays(1)) // rxShort shrinks the audit window to 2 days
	if _, err := svc.SetRetention(e.ctx, visitor.Actor{Site: e.site, KeyID: "dpo", Role: visitor.RolePrivacy}, rxShort); err != nil {
		t.Fatal(err)
	}
	if err := svc.RunRetentionJobs(e.ctx, "pod-a"); err != nil {
		t.Fatal(err)
	}
	k := keysOf("shop", v)
	e.expiresAt(t, k.profile, fresh.Add(2*rxDay))
	e.expiresAt(t, sessionKey(k.profile, "s1"), fresh.Add(rxDay))
	e.gone(t, keysOf("shop", "vkS0000000000001").profile)

	// Another pod holds the job: this one leaves it, at once.
	e.ageFlag(t)
	e.c.Set(e.ctx, reexpireLockKey("shop"), "pod-b", time.Minute)
	start := time.Now()
	if err := svc.RunRetentionJobs(e.ctx, "pod-a"); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("RunRetentionJobs took %v with the job held elsewhere", d)
	}
	if !e.pending(t) {
		t.Fatal("the flag went while another pod held the job")
	}
	e.c.Del(e.ctx, reexpireLockKey("shop"))

	// The loop picks the job up.
	ctx, cancel := context.WithCancel(e.ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		svc.RetentionLoop(ctx, "pod-a", 20*time.Millisecond, slog.New(slog.DiscardHandler))
	}()
	deadline := time.Now().Add(5 * time.Second)
	for e.pending(t) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	<-stopped
	if e.pending(t) {
		t.Error("RetentionLoop did not finish the job")
	}
}

// benchReexpireVisitors is how many visitors BenchmarkReexpire100k re-expires.
const benchReexpireVisitors = 100_000

// benchPopulateReexpire writes n visitors of site straight into Redis as the
// hit and consent scripts leave them, written evenly over the 3 days before
// now: a profile, one session list, the session index, a consent record and an
// entry in the subject index, every key with a TTL.
func benchPopulateReexpire(tb testing.TB, c redis.UniversalClient, site string, n int, now time.Time) {
	tb.Helper()
	ctx := context.Background()
	step := 3 * rxDay / time.Duration(n)
	const batch = 2000
	for start := 0; start < n; start += batch {
		pipe := c.Pipeline()
		members := make([]redis.Z, 0, batch)
		for i := start; i < min(start+batch, n); i++ {
			vkey := fmt.Sprintf("bench%011d", i)
			vid := fmt.Sprintf("bench-visitor-%016d", i)
			w := now.Add(-time.Duration(i) * step)
			wms := strconv.FormatInt(ms(w), 10)
			k := keysOf(site, vkey)
			sid := fmt.Sprintf("s%015d", i)
			pipe.HSet(ctx, k.profile, "vid", vid, "fs", wms, "sid", sid, "ns", 1, "w", wms)
			pipe.Expire(ctx, k.profile, 395*rxDay)
			sk := sessionKey(k.profile, sid)
			pipe.RPush(ctx, sk, recordItem(map[string]string{"ss": wms, "sl": wms, "ps": wms, "pc": "0", "np": "2",
				"cu": "https://bench.example/products/1", "ct": "A product", "rf": "https://news.example", "br": "Chrome",
				"bv": "120", "os": "Windows 10", "mob": "0", "co": "DE", "ci": "Berlin", "ip": "192.0.2.0"}),
				wms+"\t30000\thttps://bench.example/\tHome", wms+"\t0\thttps://bench.example/products/1\tA product")
			pipe.Expire(ctx, sk, 90*rxDay)
			pipe.ZAdd(ctx, k.sessions, redis.Z{Score: float64(ms(w)), Member: sid})
			pipe.Expire(ctx, k.sessions, 395*rxDay)
			rec, _ := json.Marshal(consentRecordJSON{VisitorID: vid, Time: w, Analytics: answered(true), PolicyVersion: "2026-11",
				TextSHA256: strings.Repeat("ab", 32), Method: "banner", IP: "192.0.2.0", UserAgent: "Mozilla/5.0 Chrome/120"})
			pipe.ZAdd(ctx, k.records, redis.Z{Score: float64(ms(w.Add(1095 * rxDay))), Member: string(rec)})
			pipe.PExpireAt(ctx, k.records, w.Add(1095*rxDay))
			members = append(members, redis.Z{Score: float64(ms(w)), Member: vkey})
		}
		pipe.ZAdd(ctx, subjectsKey(site), members...)
		pipe.Expire(ctx, subjectsKey(site), 1825*rxDay) // the longest window a site may set
		if _, err := pipe.Exec(ctx); err != nil {
			tb.Fatalf("populate: %v", err)
		}
	}
}

// BenchmarkReexpire100k times one full re-expiry job, in batches of 500, over
// a site of 100k visitors written over 3 days, after sessions shrank 90→1 and
// profiles 395→2 days (about two thirds are deleted, the rest brought forward)
// and consents 1095→400.
func BenchmarkReexpire100k(b *testing.B) {
	rs := redistest.Start(b)
	c := rs.Client(b)
	s := New(c)
	site := rxSite()
	ctx := context.Background()
	var total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		if err := c.FlushAll(ctx).Err(); err != nil {
			b.Fatal(err)
		}
		now := rxNow()
		benchPopulateReexpire(b, c, site.ID, benchReexpireVisitors, now)
		if err := c.Set(ctx, reexpireKey(site.ID), ms(now.Add(-time.Minute)), 0).Err(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		for {
			done, err := s.ReexpireBatch(ctx, site, rxShort, now, "bench", visitor.ReexpiryBatch)
			if err != nil {
				b.Fatal(err)
			}
			if done {
				break
			}
		}
		total += time.Since(start)
		b.StopTimer()
		if n := c.Exists(ctx, reexpireKey(site.ID)).Val(); n != 0 {
			b.Fatal("the job left its flag")
		}
	}
	b.ReportMetric(total.Seconds()/float64(b.N), "s/job")
	b.ReportMetric(float64(benchReexpireVisitors)*float64(b.N)/total.Seconds(), "subjects/s")
}

// RetentionChanged is zero until an override is saved, then the time it was.
func TestRetentionChanged(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	if got, err := e.s.RetentionChanged(e.ctx, e.site); err != nil || !got.IsZero() {
		t.Fatalf("before any change: %v, %v", got, err)
	}
	before := time.Now().Add(-time.Second)
	if err := e.s.SaveRetention(e.ctx, e.site, rxOld, false); err != nil {
		t.Fatal(err)
	}
	got, err := e.s.RetentionChanged(e.ctx, e.site)
	if err != nil || got.Before(before) || got.After(time.Now().Add(time.Second)) {
		t.Errorf("after a change: %v, %v", got, err)
	}
	// The override itself reads back unchanged beside the time.
	m, err := e.s.Retentions(e.ctx)
	if err != nil || m[e.site.ID] != rxOld {
		t.Errorf("Retentions: %v, %v, want %v", m, err, rxOld)
	}
}

// Retentions finds every saved override whatever sites the reading Store was
// told of: a Store built without WithSites reads another pod's override, and
// an override saved before the index existed is found through WithSites and
// indexed on the way.
func TestRetentionsNeedNoWithSites(t *testing.T) {
	t.Parallel()
	c := redistest.Start(t).Client(t)
	ctx := context.Background()
	shop, blog := &visitor.Site{ID: "shop"}, &visitor.Site{ID: "blog"}
	if err := New(c, WithSites("shop")).SaveRetention(ctx, shop, rxShort, true); err != nil {
		t.Fatal(err)
	}
	// blog's override was written by a version of the store without the index.
	if err := c.HSet(ctx, retentionKey(blog.ID), "sessions", 7, "profiles", 8, "chats", 9, "consents", 10, "audit", 11).Err(); err != nil {
		t.Fatal(err)
	}
	blogR := visitor.Retention{Sessions: 7, Profiles: 8, Chats: 9, Consents: 10, Audit: 11}
	for _, tc := range []struct {
		name  string
		store *Store
		want  map[string]visitor.Retention
	}{
		{name: "without WithSites", store: New(c), want: map[string]visitor.Retention{"shop": rxShort}},
		{name: "with the sites", store: New(c, WithSites("shop", "blog", "news")), want: map[string]visitor.Retention{"shop": rxShort, "blog": blogR}},
		{name: "without WithSites once indexed", store: New(c), want: map[string]visitor.Retention{"shop": rxShort, "blog": blogR}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.store.Retentions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Retentions (-want +got):\n%s", diff)
			}
		})
	}
}

// A site checked by the re-expiry job before it holds data records its data's
// layout as the code's: its first subjects start no migration pass, which
// would chase every new visitor through the subject index.
func TestFreshSiteStartsNoMigrationPass(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name  string
		write func(t *testing.T, e stEnv)
	}{
		{name: "a new visitor's page view", write: func(t *testing.T, e stEnv) { e.pageview(t, stKeyA, "s1", 0, "/a") }},
		{name: "a new visitor's page view, aggregated", write: func(t *testing.T, e stEnv) {
			e = e.aggregating()
			e.pageview(t, stKeyA, "s1", 0, "/a")
			e.flush(t)
		}},
		{name: "a consent", write: func(t *testing.T, e stEnv) { e.grant(t, stKeyA, stVidA, 0, time.Hour, "2026-11") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := stStart(t)
			if p, err := e.s.PendingReexpiry(e.ctx, e.site); err != nil || p {
				t.Fatalf("PendingReexpiry of a site without data = %v, %v; want no pass", p, err)
			}
			tc.write(t, e)
			if p, err := e.s.PendingReexpiry(e.ctx, e.site); err != nil || p {
				t.Errorf("PendingReexpiry = %v, %v; want no pass", p, err)
			}
		})
	}
}

// The re-expiry job counts a session's window from its last activity: the
// session index holds only the session's opening.
func TestReexpireSessionFromLastActivity(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	now := rxNow()
	vkey, vid := "vkA0000000000000", "vidA"
	e.hit(t, vkey, vid, "s1", now.Add(-time.Hour))
	for _, at := range []time.Duration{-40 * time.Minute, -20 * time.Minute} {
		out, err := e.s.RecordHit(e.ctx, visitor.HitWrite{Site: e.site, Retention: rxOld, VisitorID: vid, VisitorKey: vkey,
			Type: visitor.HitPageview, Now: now.Add(at), Page: visitor.Page{URL: "https://shop.example/q"}, NewSessionID: "s9", Count: true})
		if err != nil || out != visitor.OutcomeTracked {
			t.Fatalf("RecordHit at %v = %v, %v; want the session continued", at, out, err)
		}
	}
	if err := e.s.SaveRetention(e.ctx, e.site, rxShort, true); err != nil {
		t.Fatal(err)
	}
	e.job(t, rxShort, now, "pod-a", 500)
	k := keysOf("shop", vkey)
	last := now.Add(-20 * time.Minute).Add(days(rxShort.Sessions))
	e.expiresAt(t, sessionKey(k.profile, "s1"), last)
}

package redisstore

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
)

func rz(score int64, member string) redis.Z { return redis.Z{Score: float64(score), Member: member} }

// The subject index is scored by the expiry of each subject's data: trimmed on
// write and by the retention job, expiring with its highest score, and not
// refreshed by every write; a returning visitor raises its own entry once its
// data outlives it.
func TestSubjectIndexScoredByExpiry(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	sj := subjectsKey("shop")
	now := rxNow()
	ahead := days(max(rxOld.Sessions, rxOld.Profiles)) + subjectSlack

	e.hit(t, "vkA0000000000000", "vidA", "s1", now)
	if got, want := e.score(t, sj, "vkA0000000000000"), ms(now.Add(ahead)); got != want {
		t.Errorf("new visitor's score = %d, want %d (its data's expiry and the slack)", got, want)
	}
	e.expiresAt(t, sj, now.Add(ahead))

	// A subject whose data expired is trimmed by the next write; the TTL stays
	// the highest score, not a fixed five years.
	if err := e.s.run(e.ctx, subjectCall("shop", "vkGone", now.Add(-time.Hour), now.Add(-2*time.Hour))); err != nil {
		t.Fatal(err)
	}
	later := now.Add(10 * time.Minute)
	out, err := e.s.RecordHit(e.ctx, visitor.HitWrite{Site: e.site, Retention: rxOld, VisitorID: "vidA", VisitorKey: "vkA0000000000000",
		Type: visitor.HitPageview, Now: later, Page: visitor.Page{URL: "https://shop.example/q"}, NewSessionID: "s2", Count: true})
	if err != nil || out != visitor.OutcomeTracked {
		t.Fatalf("RecordHit = %v, %v", out, err)
	}
	if got, want := e.score(t, sj, "vkA0000000000000"), ms(now.Add(ahead)); got != want {
		t.Errorf("a page view within the slack moved the score to %d, want it kept at %d", got, want)
	}
	e.hit(t, "vkB0000000000000", "vidB", "s1", now.Add(time.Minute))
	if n, _ := e.c.ZCard(e.ctx, sj).Result(); n != 2 {
		t.Errorf("subject index holds %d members, want A and B (the expired one trimmed)", n)
	}
	e.expiresAt(t, sj, now.Add(time.Minute+ahead))

	// Past the slack, the visitor's data outlives its entry: the entry grows.
	back := now.Add(subjectSlack + time.Hour)
	if _, err := e.s.RecordHit(e.ctx, visitor.HitWrite{Site: e.site, Retention: rxOld, VisitorID: "vidA", VisitorKey: "vkA0000000000000",
		Type: visitor.HitPageview, Now: back, Page: visitor.Page{URL: "https://shop.example/r"}, NewSessionID: "s3", Count: true}); err != nil {
		t.Fatal(err)
	}
	if got, want := e.score(t, sj, "vkA0000000000000"), ms(back.Add(ahead)); got != want {
		t.Errorf("returning visitor's score = %d, want %d", got, want)
	}
	e.expiresAt(t, sj, back.Add(ahead))

	// The retention job trims what expired since.
	if err := e.c.ZAdd(e.ctx, sj, rz(ms(now.Add(-time.Minute)), "vkLapsed")).Err(); err != nil {
		t.Fatal(err)
	}
	if err := e.s.SaveRetention(e.ctx, e.site, rxShort, true); err != nil {
		t.Fatal(err)
	}
	e.job(t, rxShort, now, "pod-a", 500)
	if _, err := e.c.ZScore(e.ctx, sj, "vkLapsed").Result(); err == nil {
		t.Error("the retention job kept a subject whose data expired")
	}
}

// The consent proof an erasure leaves (a visitor's cut records, an erased
// chat's proof) stays in the subject index, so the retention job re-expires it
// when the consents window shrinks.
func TestReexpireReachesErasedProof(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	now := rxNow()
	at := now.Add(-10 * rxDay)
	e.hit(t, "vkE0000000000000", "vidE", "s1", at)
	e.consent(t, "vkE0000000000000", "vidE", at)
	e.chat(t, "chatAnon00000000000000", "", "", "", at, false)

	if err := e.s.Erase(e.ctx, e.site, visitor.Erasure{VisitorKey: "vkE0000000000000", VisitorID: "vidE", Subject: "subjE"}); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Erase(e.ctx, e.site, visitor.Erasure{ChatID: "chatAnon00000000000000", Subject: "subjC"}); err != nil {
		t.Fatal(err)
	}
	records, proof := proofKey("shop", "subjE"), proofKey("shop", "subjC")
	e.expiresAt(t, records, at.Add(days(rxOld.Consents)))
	e.expiresAt(t, proof, at.Add(days(rxOld.Consents)))

	shorter := rxOld
	shorter.Consents = 400
	if err := e.s.SaveRetention(e.ctx, e.site, shorter, true); err != nil {
		t.Fatal(err)
	}
	e.job(t, shorter, now, "pod-a", 500)
	e.expiresAt(t, records, at.Add(400*rxDay))
	e.expiresAt(t, proof, at.Add(400*rxDay))
	if n := len(e.recordScores(t, records)); n != 1 {
		t.Errorf("erased visitor's proof holds %d records, want 1", n)
	}
	if n := len(e.recordScores(t, proof)); n != 1 {
		t.Errorf("erased chat's proof holds %d records, want 1", n)
	}
}

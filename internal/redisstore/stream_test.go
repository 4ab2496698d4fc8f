package redisstore

import (
	"testing"
	"time"
)

// HoldStream keeps at most max places per key; a renewal keeps its own place,
// a release frees it, and a lease that ended is dropped. The key expires with
// its last lease (rxStart's cleanup checks every key has a TTL).
func TestHoldStream(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	now := rxNow()
	lease := 45 * time.Second
	hold := func(id string, at time.Time) bool {
		t.Helper()
		ok, err := e.s.HoldStream(e.ctx, e.site, "agent-1", id, at, at.Add(lease), 2)
		if err != nil {
			t.Fatal(err)
		}
		return ok
	}
	for _, step := range []struct {
		name string
		id   string
		at   time.Time
		want bool
	}{
		{"first", "a", now, true},
		{"second", "b", now, true},
		{"third is refused", "c", now, false},
		{"a renewal keeps its place", "a", now.Add(10 * time.Second), true},
	} {
		if got := hold(step.id, step.at); got != step.want {
			t.Errorf("%s: %v, want %v", step.name, got, step.want)
		}
	}
	if ttl := e.c.PTTL(e.ctx, "ls:{shop}:agent-1").Val(); ttl <= 0 || ttl > lease+10*time.Second+rxTolerance {
		t.Errorf("TTL %v, want until the last lease ends", ttl)
	}
	if err := e.s.ReleaseStream(e.ctx, e.site, "agent-1", "b"); err != nil {
		t.Fatal(err)
	}
	if !hold("c", now) {
		t.Error("after a release, c was refused")
	}
	if hold("d", now) {
		t.Error("d held a place beyond max")
	}
	// b's and c's leases end at now+45s, a's at now+55s: at now+50s only a holds.
	if !hold("d", now.Add(50*time.Second)) {
		t.Error("after c's lease ended, d was refused")
	}
	if got := e.c.ZRange(e.ctx, "ls:{shop}:agent-1", 0, -1).Val(); len(got) != 2 || got[0] != "a" || got[1] != "d" {
		t.Errorf("places %v, want a and d", got)
	}
	// Another key of the site has places of its own.
	if ok, err := e.s.HoldStream(e.ctx, e.site, "dpo", "x", now, now.Add(lease), 2); !ok || err != nil {
		t.Errorf("another key: %v %v", ok, err)
	}
}

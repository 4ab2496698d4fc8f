package redisstore

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/visitor"
)

// StatsDays reads every shard of every day asked, in the order asked, and an
// empty day as empty counts.
func TestStatsDays(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	day := time.Date(2026, 11, 20, 0, 0, 0, 0, time.UTC)
	for _, w := range []struct {
		at     time.Time
		reason visitor.Reason
		n      int
	}{
		{day.Add(time.Hour), visitor.ReasonDNT, 3},
		{day.Add(23 * time.Hour), visitor.ReasonBot, 1},
		{day.AddDate(0, 0, 2).Add(time.Minute), visitor.ReasonGPC, 2},
		{day.AddDate(0, 0, 2).Add(time.Minute), visitor.ReasonNoConsent, 1},
	} {
		for range w.n {
			// Each call lands in some shard: the read must add them all.
			if err := e.s.CountRefused(e.ctx, e.site, w.at, w.reason); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := e.s.StatsDays(e.ctx, e.site, []time.Time{day.AddDate(0, 0, 2), day, day.AddDate(0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	want := []map[string]int64{{"gpc": 2, "no_consent": 1}, {"dnt": 3, "bot": 1}, {}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("StatsDays (-want +got):\n%s", diff)
	}
	if got, err := e.s.StatsDays(e.ctx, e.site, nil); err != nil || len(got) != 0 {
		t.Errorf("StatsDays of no days: %v, %v", got, err)
	}
}

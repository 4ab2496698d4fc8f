package redisstore

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// The service calls the store through this interface.
var _ visitor.AuditStore = (*Store)(nil)

// auditWrite is one call of Store.Audit in a test: at offset from the test's
// start, under the audit window in days, folding reads within fold.
type auditWrite struct {
	at      time.Duration
	window  int
	fold    time.Duration
	entries []visitor.AuditEntry
}

// auditRow is what a test compares of an entry read back through AuditLog.
type auditRow struct {
	Actor, Action, Target string
	First, Last           time.Duration // offsets from the test's start
	Count                 int
}

func auditRead(actor, target string) visitor.AuditEntry {
	return visitor.AuditEntry{Actor: actor, Action: "chat.read", Target: target}
}

// Store.Audit against real Redis: folding of repeated reads, MINID trimming to
// the audit window by the service's clock, TTL refreshed on write, and entry
// ids that never go back when a pod's clock does.
func TestAuditFoldAndTrim(t *testing.T) {
	t.Parallel()
	const fold = 10 * time.Minute
	tests := []struct {
		name   string
		writes []auditWrite
		want   []auditRow // newest first
	}{
		{
			name: "a repeat read within the fold adds to the entry's count",
			writes: []auditWrite{
				{at: 0, window: 365, fold: fold, entries: []visitor.AuditEntry{auditRead("agent-1", "T1")}},
				{at: 5 * time.Second, window: 365, fold: fold, entries: []visitor.AuditEntry{auditRead("agent-1", "T1")}},
				{at: fold - time.Millisecond, window: 365, fold: fold, entries: []visitor.AuditEntry{auditRead("agent-1", "T1")}},
			},
			want: []auditRow{{"agent-1", "chat.read", "T1", 0, fold - time.Millisecond, 3}},
		},
		{
			name: "a read the fold's length after the entry's first starts a new entry",
			writes: []auditWrite{
				{at: 0, window: 365, fold: fold, entries: []visitor.AuditEntry{auditRead("agent-1", "T1")}},
				{at: 9 * time.Minute, window: 365, fold: fold, entries: []visitor.AuditEntry{auditRead("agent-1", "T1")}},
				{at: fold, window: 365, fold: fold, entries: []visitor.AuditEntry{auditRead("agent-1", "T1")}},
			},
			want: []auditRow{
				{"agent-1", "chat.read", "T1", fold, fold, 1},
				{"agent-1", "chat.read", "T1", 0, 9 * time.Minute, 2},
			},
		},
		{
			name: "another key, target or action is an entry of its own; the fold moves its entry to the top",
			writes: []auditWrite{
				{at: 0, window: 365, fold: fold, entries: []visitor.AuditEntry{auditRead("agent-1", "T1"), auditRead("agent-1", "T2")}},
				{at: time.Second, window: 365, fold: fold, entries: []visitor.AuditEntry{auditRead("agent-2", "T1")}},
				{at: 2 * time.Second, window: 365, fold: fold, entries: []visitor.AuditEntry{{Actor: "agent-1", Action: "subject.export", Target: "T1"}}},
				{at: 3 * time.Second, window: 365, fold: fold, entries: []visitor.AuditEntry{auditRead("agent-1", "T1")}},
			},
			want: []auditRow{
				{"agent-1", "chat.read", "T1", 0, 3 * time.Second, 2},
				{"agent-1", "subject.export", "T1", 2 * time.Second, 2 * time.Second, 1},
				{"agent-2", "chat.read", "T1", time.Second, time.Second, 1},
				{"agent-1", "chat.read", "T2", 0, 0, 1},
			},
		},
		{
			name: "without a fold every write is an entry",
			writes: []auditWrite{
				{at: 0, window: 365, entries: []visitor.AuditEntry{{Actor: "dpo", Action: "subject.erase", Target: "T1"}}},
				{at: time.Second, window: 365, entries: []visitor.AuditEntry{{Actor: "dpo", Action: "subject.erase", Target: "T1"}}},
			},
			want: []auditRow{
				{"dpo", "subject.erase", "T1", time.Second, time.Second, 1},
				{"dpo", "subject.erase", "T1", 0, 0, 1},
			},
		},
		{
			name: "entries older than the audit window are trimmed on write",
			writes: []auditWrite{
				{at: 0, window: 365, entries: []visitor.AuditEntry{{Actor: "dpo", Action: "a", Target: "T1"}, {Actor: "dpo", Action: "b", Target: "T2"}}},
				{at: 24 * time.Hour, window: 365, entries: []visitor.AuditEntry{{Actor: "dpo", Action: "c", Target: "T3"}}},
				{at: 365*24*time.Hour + time.Millisecond, window: 365, entries: []visitor.AuditEntry{{Actor: "dpo", Action: "d", Target: "T4"}}},
			},
			want: []auditRow{
				{"dpo", "d", "T4", 365*24*time.Hour + time.Millisecond, 365*24*time.Hour + time.Millisecond, 1},
				{"dpo", "c", "T3", 24 * time.Hour, 24 * time.Hour, 1},
			},
		},
		{
			name: "a folded entry is trimmed by its last read",
			writes: []auditWrite{
				{at: 0, window: 1, fold: fold, entries: []visitor.AuditEntry{auditRead("agent-1", "T1")}},
				{at: 5 * time.Minute, window: 1, fold: fold, entries: []visitor.AuditEntry{auditRead("agent-1", "T1")}},
				{at: 24*time.Hour + time.Minute, window: 1, fold: fold, entries: []visitor.AuditEntry{auditRead("agent-2", "T2")}},
			},
			want: []auditRow{
				{"agent-2", "chat.read", "T2", 24*time.Hour + time.Minute, 24*time.Hour + time.Minute, 1},
				{"agent-1", "chat.read", "T1", 0, 5 * time.Minute, 2},
			},
		},
		{
			name: "a pod whose clock is behind still appends",
			writes: []auditWrite{
				{at: time.Minute, window: 365, entries: []visitor.AuditEntry{{Actor: "dpo", Action: "a", Target: "T1"}}},
				{at: 0, window: 365, entries: []visitor.AuditEntry{{Actor: "dpo", Action: "b", Target: "T1"}}},
			},
			want: []auditRow{
				{"dpo", "b", "T1", 0, 0, 1},
				{"dpo", "a", "T1", time.Minute, time.Minute, 1},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := rxStart(t)
			start := rxNow()
			for _, w := range tt.writes {
				entries := make([]visitor.AuditEntry, len(w.entries))
				for i, en := range w.entries {
					en.Time, en.Count = start.Add(w.at), 1
					entries[i] = en
				}
				r := rxOld
				r.Audit = w.window
				if err := e.s.Audit(e.ctx, e.site, r, w.fold, entries...); err != nil {
					t.Fatalf("Audit at +%v: %v", w.at, err)
				}
			}
			got, next, err := e.s.AuditLog(e.ctx, e.site, "", visitor.MaxAuditPage)
			if err != nil || next != "" {
				t.Fatalf("AuditLog: next %q, err %v", next, err)
			}
			rows := make([]auditRow, 0, len(got))
			for _, en := range got {
				rows = append(rows, auditRow{en.Actor, en.Action, en.Target, en.Time.Sub(start), en.Last.Sub(start), en.Count})
			}
			if diff := cmp.Diff(tt.want, rows); diff != "" {
				t.Errorf("audit log, newest first (-want +got):\n%s", diff)
			}
			// Ids go forward and follow the service's clock: the id of an entry
			// is the time of its last write, or later.
			for i, en := range got {
				msPart, _, _ := strings.Cut(en.ID, "-")
				idMS, err := strconv.ParseInt(msPart, 10, 64)
				if err != nil || idMS < ms(en.Last) {
					t.Errorf("entry %d id %q is before its last write %d", i, en.ID, ms(en.Last))
				}
			}
			// The stream expires its window after the last write.
			last := tt.writes[len(tt.writes)-1]
			ttl := e.c.PTTL(e.ctx, auditKey("shop")).Val()
			if want := days(last.window); ttl > want || ttl < want-rxTolerance {
				t.Errorf("audit stream TTL %v, want %v", ttl, want)
			}
		})
	}
}

// Fold keys live no longer than the fold and hold no raw id; the stream's TTL
// follows the window in force at each write; a retention change's windows
// read back.
func TestAuditKeysAndWindows(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	now := rxNow()
	read := visitor.AuditEntry{Time: now, Count: 1, Actor: "agent-1", Action: "chat.read", Target: "Tgt"}
	if err := e.s.Audit(e.ctx, e.site, rxOld, 10*time.Minute, read); err != nil {
		t.Fatal(err)
	}
	fk := auditFoldKey("shop", "agent-1", "chat.read", "Tgt")
	if ttl := e.c.PTTL(e.ctx, fk).Val(); ttl <= 0 || ttl > 10*time.Minute {
		t.Errorf("fold key %s TTL %v, want at most the fold", fk, ttl)
	}
	var keys []string
	for _, k := range redistest.Keys(t, e.c) {
		if !strings.HasPrefix(k, "cfg:") { // configuration, not the audit's
			keys = append(keys, k)
		}
	}
	if got := keys; !cmp.Equal(got, []string{auditKey("shop"), fk}, cmpopts.SortSlices(func(a, b string) bool { return a < b })) {
		t.Errorf("keys after an audited read: %q", got)
	}

	old, cur := rxOld, rxOld
	cur.Audit = 400
	change := visitor.AuditEntry{Time: now.Add(time.Second), Count: 1, Actor: "dpo", Action: "retention.change", Target: "S", OldRetention: &old, NewRetention: &cur}
	if err := e.s.Audit(e.ctx, e.site, cur, 0, change); err != nil {
		t.Fatal(err)
	}
	if ttl, want := e.c.PTTL(e.ctx, auditKey("shop")).Val(), days(400); ttl > want || ttl < want-rxTolerance {
		t.Errorf("audit stream TTL %v after a write under 400 days, want %v", ttl, want)
	}
	got, _, err := e.s.AuditLog(e.ctx, e.site, "", 10)
	if err != nil || len(got) != 2 {
		t.Fatalf("AuditLog: %d entries, %v", len(got), err)
	}
	if got[0].OldRetention == nil || *got[0].OldRetention != old || got[0].NewRetention == nil || *got[0].NewRetention != cur {
		t.Errorf("retention change read back as %+v / %+v, want %+v / %+v", got[0].OldRetention, got[0].NewRetention, old, cur)
	}
	if got[1].OldRetention != nil || got[1].NewRetention != nil {
		t.Errorf("a read carries retention windows: %+v", got[1])
	}

	// Paging by the ids AuditLog gives.
	page, next, err := e.s.AuditLog(e.ctx, e.site, "", 1)
	if err != nil || len(page) != 1 || next != page[0].ID {
		t.Fatalf("first page %+v next %q err %v", page, next, err)
	}
	page, next, err = e.s.AuditLog(e.ctx, e.site, next, 1)
	if err != nil || len(page) != 1 || page[0].Action != "chat.read" {
		t.Fatalf("second page %+v next %q err %v", page, next, err)
	}
	if page, _, err = e.s.AuditLog(context.Background(), e.site, next, 1); err != nil || len(page) != 0 {
		t.Errorf("past the end: %+v, %v", page, err)
	}
}

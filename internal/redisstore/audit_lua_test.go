package redisstore

import (
	"testing"
	"time"

	"github.com/visitord/visitord/internal/visitor"
)

// audit.lua appends one entry per entry given, folds a repeated read within
// fold into its entry (same first time, count + 1), never folds with fold 0,
// keeps a retention change's windows, and keeps the stream's TTL at the window.
func TestAuditScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	site := &visitor.Site{ID: "shop"}
	read := func(target string, at time.Time) visitor.AuditEntry {
		return visitor.AuditEntry{Time: at, Actor: "agent-1", Action: "chat.read", Target: target}
	}
	old, cur := visitor.Retention{Sessions: 90, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365}, visitor.Retention{Sessions: 30, Profiles: 395, Chats: 90, Consents: 1095, Audit: 365}
	for _, tc := range []struct {
		name    string
		at      time.Time
		fold    time.Duration
		entries []visitor.AuditEntry
		// wantTop is the newest entry after the call: its count and first time.
		wantCount int
		wantFirst time.Time
		wantLen   int // entries in the stream
	}{
		{name: "first read", at: luaT0, fold: time.Hour, entries: []visitor.AuditEntry{read("x", luaT0)},
			wantCount: 1, wantFirst: luaT0, wantLen: 1},
		{name: "repeated read folds", at: luaT0.Add(time.Minute), fold: time.Hour, entries: []visitor.AuditEntry{read("x", luaT0.Add(time.Minute))},
			wantCount: 2, wantFirst: luaT0, wantLen: 1},
		{name: "read after the fold window", at: luaT0.Add(2 * time.Hour), fold: time.Hour, entries: []visitor.AuditEntry{read("x", luaT0.Add(2*time.Hour))},
			wantCount: 1, wantFirst: luaT0.Add(2 * time.Hour), wantLen: 2},
		{name: "no folding", at: luaT0.Add(2*time.Hour + time.Second), entries: []visitor.AuditEntry{read("x", luaT0.Add(2*time.Hour+time.Second))},
			wantCount: 1, wantFirst: luaT0.Add(2*time.Hour + time.Second), wantLen: 3},
		{name: "two entries at once", at: luaT0.Add(3 * time.Hour), fold: time.Hour,
			entries:   []visitor.AuditEntry{read("y", luaT0.Add(3*time.Hour)), read("z", luaT0.Add(3*time.Hour))},
			wantCount: 1, wantFirst: luaT0.Add(3 * time.Hour), wantLen: 5},
		{name: "retention change", at: luaT0.Add(4 * time.Hour),
			entries: []visitor.AuditEntry{{Time: luaT0.Add(4 * time.Hour), Actor: "dpo", Action: "retention.change", Target: "shop",
				OldRetention: &old, NewRetention: &cur}},
			wantCount: 1, wantFirst: luaT0.Add(4 * time.Hour), wantLen: 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			window := 365 * 24 * time.Hour
			c := auditArgs{site: "shop", now: tc.at, window: window, fold: tc.fold, entries: tc.entries}.call()
			e.run(t, c)
			ids, err := decodeAudit(c)
			if err != nil || len(ids) != len(tc.entries) {
				t.Fatalf("ids %v, %v; want %d", ids, err, len(tc.entries))
			}
			log, _, err := e.s.AuditLog(e.ctx, site, "", 100)
			if err != nil {
				t.Fatal(err)
			}
			if len(log) != tc.wantLen {
				t.Fatalf("%d entries, want %d: %+v", len(log), tc.wantLen, log)
			}
			top, last := log[0], tc.entries[len(tc.entries)-1]
			if top.ID != ids[len(ids)-1] || top.Count != tc.wantCount || !top.Time.Equal(tc.wantFirst) || !top.Last.Equal(tc.at) ||
				top.Target != last.Target || top.Action != last.Action {
				t.Errorf("newest entry %+v, want %s of %s counted %d since %v", top, last.Action, last.Target, tc.wantCount, tc.wantFirst)
			}
			if (last.OldRetention != nil) != (top.OldRetention != nil) || (top.NewRetention != nil && *top.NewRetention != cur) {
				t.Errorf("retention windows %v → %v, want %v → %v", top.OldRetention, top.NewRetention, last.OldRetention, last.NewRetention)
			}
			if ttl := e.c.PTTL(e.ctx, auditKey("shop")).Val(); ttl < window-time.Minute || ttl > window {
				t.Errorf("stream TTL %v, want %v", ttl, window)
			}
		})
	}
}

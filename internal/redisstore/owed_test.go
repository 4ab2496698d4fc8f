package redisstore

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
)

// An erasure that owes (Erasure.Owed) stays pending once its keys are gone,
// with what it owes; SettleErasure writes its audit entry and drops it, and a
// second settling (a sweep racing the request) writes no second entry.
func TestSettleErasureAuditsOnce(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		e    visitor.Erasure
	}{
		{name: "visitor", e: visitor.Erasure{VisitorKey: "vkO0000000000000", VisitorID: "vidO", Subject: "subjO",
			Owed: &visitor.ErasureOwed{Actor: "dpo", ChatIDs: []string{"chatA", "chatB"}}}},
		{name: "chat", e: visitor.Erasure{ChatID: "chatC", Subject: "subjC",
			Owed: &visitor.ErasureOwed{Actor: "dpo", ChatIDs: []string{"chatC"}}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := rxStart(t)
			if err := e.s.Erase(e.ctx, e.site, tc.e); err != nil {
				t.Fatal(err)
			}
			pending, err := e.s.PendingErasures(e.ctx, e.site)
			if err != nil {
				t.Fatal(err)
			}
			if len(pending) != 1 || pending[0].Owed == nil || pending[0].Owed.Actor != "dpo" ||
				len(pending[0].Owed.ChatIDs) != len(tc.e.Owed.ChatIDs) || pending[0].Subject != tc.e.Subject {
				t.Fatalf("pending erasures %+v, want the erasure with what it owes", pending)
			}
			entry := visitor.AuditEntry{Time: rxNow(), Count: 1, Actor: "dpo", Action: "subject.erase", Target: tc.e.Subject}
			r := visitor.Retention{Audit: 365}
			for range 2 {
				if err := e.s.SettleErasure(e.ctx, e.site, pending[0], entry, r); err != nil {
					t.Fatal(err)
				}
			}
			log, _, err := e.s.AuditLog(e.ctx, e.site, "", 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(log) != 1 || log[0].Target != tc.e.Subject || log[0].Actor != "dpo" || log[0].Count != 1 {
				t.Errorf("audit log %+v, want one entry for %s", log, tc.e.Subject)
			}
			if pending, err := e.s.PendingErasures(e.ctx, e.site); err != nil || len(pending) != 0 {
				t.Errorf("pending after settling = %+v, %v; want none", pending, err)
			}
		})
	}
}

// OwedWithdrawals lists what SaveConsent withdrew until SettleWithdrawals.
func TestOwedWithdrawalsUntilSettled(t *testing.T) {
	t.Parallel()
	e := rxStart(t)
	now := rxNow()
	vkey := "vkW0000000000000"
	k := keysOf(e.site.ID, vkey)
	for _, id := range []string{"chatB", "chatA"} {
		if err := e.c.ZAdd(e.ctx, k.chats, redis.Z{Score: float64(ms(now)), Member: id}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.c.PExpire(e.ctx, k.chats, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}
	w := visitor.ConsentWrite{Site: e.site, Retention: rxOld, VisitorKey: vkey,
		Record: visitor.ConsentRecord{VisitorID: "vidW", Time: now, PolicyVersion: "p"},
		Choice: visitor.Choice{Analytics: true, PolicyVersion: "p", Given: now, ValidUntil: now.Add(time.Hour)}, WithdrawMarketing: true}
	got, err := e.s.SaveConsent(e.ctx, w)
	if err != nil || len(got) != 2 || got[0] != "chatA" || got[1] != "chatB" {
		t.Fatalf("SaveConsent withdrew %v, %v; want [chatA chatB]", got, err)
	}
	if err := e.s.SettleWithdrawals(e.ctx, e.site, vkey, []string{"chatA"}); err != nil {
		t.Fatal(err)
	}
	if owed, err := e.s.OwedWithdrawals(e.ctx, e.site, vkey); err != nil || len(owed) != 1 || owed[0] != "chatB" {
		t.Errorf("owed after settling chatA = %v, %v; want [chatB]", owed, err)
	}
	// A later write returns what is still owed.
	w.Record.Time, w.Choice.Given = now.Add(time.Second), now.Add(time.Second)
	if got, err := e.s.SaveConsent(e.ctx, w); err != nil || len(got) != 1 || got[0] != "chatB" {
		t.Errorf("SaveConsent after a partial settling = %v, %v; want [chatB]", got, err)
	}
	if err := e.s.SettleWithdrawals(e.ctx, e.site, vkey, []string{"chatB"}); err != nil {
		t.Fatal(err)
	}
	if owed, err := e.s.OwedWithdrawals(e.ctx, e.site, vkey); err != nil || len(owed) != 0 {
		t.Errorf("owed after settling all = %v, %v; want none", owed, err)
	}
}

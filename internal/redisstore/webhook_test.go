package redisstore

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
	"github.com/visitord/visitord/internal/webhook"
)

// answered is a purpose's answer in a consent record.
func answered(b bool) *bool { return &b }

// The dispatcher drains the store's queue through this interface.
var _ webhook.Queue = (*WebhookQueue)(nil)

// whqEnv is a store, its webhook queue and the sealer of both.
type whqEnv struct {
	s      *Store
	q      *WebhookQueue
	sealer *visitor.Sealer
	site   *visitor.Site
	ctx    context.Context
}

func whqStart(t *testing.T) whqEnv {
	t.Helper()
	c := redistest.Start(t).Client(t)
	sealer, err := visitor.NewSealer([]visitor.DataKey{{ID: "k1", Key: bytes.Repeat([]byte("d"), 32)}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		redistest.AssertAllKeysHaveTTL(t, c, func(k string) bool { return strings.HasPrefix(k, "cfg:") })
	})
	s := New(c, WithSites("shop"))
	site := &visitor.Site{ID: "shop", SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour,
		ConsentValidDays: 180, PolicyVersion: "2026-11", Retention: rxOld}
	return whqEnv{s: s, q: NewWebhookQueue(s, sealer), sealer: sealer, site: site, ctx: context.Background()}
}

// delivery seals body as delivery id of event, kept with vkey ("" for none).
func (e whqEnv) delivery(id, event, body, vkey string) visitor.Delivery {
	return visitor.Delivery{ID: id, Event: event, Sealed: e.sealer.Seal("shop", "webhook", id, body), VisitorKey: vkey}
}

// due claims what is due at now and returns it by delivery id.
func (e whqEnv) due(t *testing.T, now time.Time) map[string]webhook.Delivery {
	t.Helper()
	got, err := e.q.Due(e.ctx, "shop", now, 100, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]webhook.Delivery{}
	for _, d := range got {
		out[d.ID] = d
	}
	return out
}

func sortedIDs(m map[string]webhook.Delivery) []string {
	var ids []string
	for id := range m {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

// Issue 17, item 2: every kind of delivery (kept with a chat, with a visitor, or
// of ids only) is claimed, opened under its own id, leased, retried and removed
// through the queue's own methods.
func TestWebhookQueueEnqueueClaimOpen(t *testing.T) {
	t.Parallel()
	e := whqStart(t)
	now := rxNow()
	if err := e.s.SaveChat(e.ctx, visitor.ChatWrite{Site: e.site, Retention: rxOld, ChatID: "chat1", Start: now,
		URL: "https://shop.example/p", Name: "k1:x",
		Webhook: ptr(e.delivery("dChat", visitor.EventChatStarted, `{"event":"chat.started"}`, ""))}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []visitor.Delivery{
		e.delivery("dRect", visitor.EventSubjectRectified, `{"event":"subject.rectified"}`, "vkey1"),
		e.delivery("dErased", visitor.EventSubjectErased, `{"event":"subject.erased"}`, ""),
		e.delivery("dWithdrawn", visitor.EventMarketingWithdrawn, `{"event":"marketing.withdrawn"}`, ""),
	} {
		if err := e.s.Enqueue(e.ctx, e.site, d, now); err != nil {
			t.Fatal(err)
		}
	}

	got := e.due(t, now)
	if want := []string{"dChat", "dErased", "dRect", "dWithdrawn"}; !slices.Equal(sortedIDs(got), want) {
		t.Fatalf("claimed %q, want %q", sortedIDs(got), want)
	}
	for id, d := range got {
		if d.Err != nil || d.Site != "shop" || d.Attempts != 0 || !strings.Contains(string(d.Body), `"event":"`+d.Event+`"`) {
			t.Errorf("%s = %+v (body %s), want opened under its id", id, d, d.Body)
		}
	}
	if again := e.due(t, now); len(again) != 0 {
		t.Errorf("leased deliveries claimed again: %q", sortedIDs(again))
	}

	// A failed attempt comes back after its back-off with its count; a done one never.
	rect := got["dRect"]
	rect.Attempts = 1
	if err := e.q.Retry(e.ctx, rect, now.Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"dChat", "dErased", "dWithdrawn"} {
		if err := e.q.Done(e.ctx, got[id]); err != nil {
			t.Fatal(err)
		}
	}
	later := e.due(t, now.Add(2*time.Minute))
	if !slices.Equal(sortedIDs(later), []string{"dRect"}) || later["dRect"].Attempts != 1 || later["dRect"].Err != nil {
		t.Fatalf("after retry and done: %+v, want dRect alone with 1 attempt", later)
	}
	if err := e.q.Done(e.ctx, later["dRect"]); err != nil {
		t.Fatal(err)
	}
	if left := e.due(t, now.Add(time.Hour)); len(left) != 0 {
		t.Errorf("queue still holds %q", sortedIDs(left))
	}
}

// Issue 17, item 2: an erasure drops the subject's queued deliveries that carry
// contact details (its rectifications, its chats' chat.started), off the queue
// too, and keeps those of ids only.
func TestWebhookQueuePurgedByErasure(t *testing.T) {
	t.Parallel()
	e := whqStart(t)
	now := rxNow()
	rx := rxEnv{c: nil, s: e.s, site: e.site, ctx: e.ctx}
	rx.consent(t, "vkey1", "vid1", now)
	if err := e.s.SaveChat(e.ctx, visitor.ChatWrite{Site: e.site, Retention: rxOld, ChatID: "chat1", Start: now,
		VisitorID: "vid1", VisitorKey: "vkey1", Name: "k1:x",
		Webhook: ptr(e.delivery("dChat1", visitor.EventChatStarted, `{"name":"Ada"}`, ""))}); err != nil {
		t.Fatal(err)
	}
	if err := e.s.SaveChat(e.ctx, visitor.ChatWrite{Site: e.site, Retention: rxOld, ChatID: "chat2", Start: now,
		Name: "k1:y", Webhook: ptr(e.delivery("dChat2", visitor.EventChatStarted, `{"name":"Bob"}`, ""))}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []visitor.Delivery{
		e.delivery("dRect1", visitor.EventSubjectRectified, `{"contact":{"name":"Ada L"}}`, "vkey1"),
		e.delivery("dRect2", visitor.EventSubjectRectified, `{"contact":{"name":"Ada Lo"}}`, "vkey1"),
		e.delivery("dOther", visitor.EventSubjectRectified, `{"contact":{"name":"Eve"}}`, "vkey2"),
		e.delivery("dIDs", visitor.EventMarketingWithdrawn, `{"chat_ids":["chat1"]}`, ""),
	} {
		if err := e.s.Enqueue(e.ctx, e.site, d, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.s.Erase(e.ctx, e.site, visitor.Erasure{VisitorKey: "vkey1", VisitorID: "vid1", Subject: "h1"}); err != nil {
		t.Fatal(err)
	}
	if err := e.s.Erase(e.ctx, e.site, visitor.Erasure{ChatID: "chat2", Subject: "h2"}); err != nil {
		t.Fatal(err)
	}
	got := e.due(t, now)
	if want := []string{"dIDs", "dOther"}; !slices.Equal(sortedIDs(got), want) {
		t.Fatalf("after the erasures the queue holds %q, want %q", sortedIDs(got), want)
	}
	for id, d := range got {
		if d.Err != nil {
			t.Errorf("%s: %v", id, d.Err)
		}
	}
	for key, value := range redistest.DumpValues(t, e.s.c) {
		for _, gone := range []string{"dChat1", "dChat2", "dRect1", "dRect2"} {
			if strings.Contains(key, gone) || strings.Contains(value, gone) {
				t.Errorf("%s still names purged delivery %s", key, gone)
			}
		}
	}
}

// Issue 17, item 2: a delivery that cannot be opened, or that expired, is
// handed to the dispatcher with Err set, never left out in silence.
func TestWebhookQueueReportsUnreadableAndGone(t *testing.T) {
	t.Parallel()
	e := whqStart(t)
	now := rxNow()
	other, err := visitor.NewSealer([]visitor.DataKey{{ID: "k9", Key: bytes.Repeat([]byte("o"), 32)}})
	if err != nil {
		t.Fatal(err)
	}
	bad := visitor.Delivery{ID: "dBad", Event: visitor.EventSubjectErased, Sealed: other.Seal("shop", "webhook", "dBad", `{}`)}
	moved := visitor.Delivery{ID: "dMoved", Event: visitor.EventSubjectErased, Sealed: e.sealer.Seal("shop", "webhook", "another id", `{}`)}
	gone := e.delivery("dGone", visitor.EventMarketingWithdrawn, `{}`, "")
	for _, d := range []visitor.Delivery{bad, moved, gone} {
		if err := e.s.Enqueue(e.ctx, e.site, d, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.s.c.Del(e.ctx, hookKey("shop", "dGone")).Err(); err != nil { // as its TTL would
		t.Fatal(err)
	}
	got := e.due(t, now)
	if want := []string{"dBad", "dGone", "dMoved"}; !slices.Equal(sortedIDs(got), want) {
		t.Fatalf("claimed %q, want %q", sortedIDs(got), want)
	}
	for id, want := range map[string]error{"dBad": webhook.ErrUnreadable, "dMoved": webhook.ErrUnreadable, "dGone": webhook.ErrGone} {
		if d := got[id]; !errors.Is(d.Err, want) {
			t.Errorf("%s: Err = %v, want %v", id, d.Err, want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

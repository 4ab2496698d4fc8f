package httpapi

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// deliveriesOf reads the dispatcher's delivery counter of event and result.
func (s *whStack) deliveriesOf(event, result string) float64 {
	s.t.Helper()
	mfs, err := s.metrics.Gather()
	if err != nil {
		s.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "visitord_webhook_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["event"] == event && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

// privacyDo sends a privacy-team request with the test site's dpo key.
func (s *whStack) privacyDo(method, path, body string) resp {
	s.t.Helper()
	return s.do(req{method: method, path: path, body: body, headers: map[string]string{"Authorization": "Bearer " + shopPrivacyKey}})
}

// whSchemas names each event's body schema in api/openapi.yaml.
var whSchemas = map[string]string{
	visitor.EventChatStarted:        "WebhookChatStarted",
	visitor.EventSubjectRectified:   "WebhookSubjectRectified",
	visitor.EventSubjectErased:      "WebhookSubjectErased",
	visitor.EventMarketingWithdrawn: "WebhookMarketingWithdrawn",
}

// checkWebhookBody fails t unless body matches event's schema in api/openapi.yaml.
func checkWebhookBody(t *testing.T, event string, body any) {
	t.Helper()
	doc, _ := loadSpec(t)
	ref := doc.Components.Schemas[whSchemas[event]]
	if ref == nil || ref.Value == nil {
		t.Fatalf("api/openapi.yaml describes no body of %s (components/schemas/%s)", event, whSchemas[event])
	}
	if err := ref.Value.VisitJSON(body); err != nil {
		t.Errorf("%s body does not match api/openapi.yaml: %v", event, err)
	}
}

// Every webhook event has its body described in api/openapi.yaml.
func TestWebhookEventsDescribed(t *testing.T) {
	t.Parallel()
	for _, event := range visitor.WebhookEvents {
		doc, _ := loadSpec(t)
		if ref := doc.Components.Schemas[whSchemas[event]]; ref == nil || ref.Value == nil {
			t.Errorf("api/openapi.yaml describes no body of %s", event)
		}
	}
	if len(whSchemas) != len(visitor.WebhookEvents) {
		t.Errorf("schemas for %d events, visitor.WebhookEvents has %d", len(whSchemas), len(visitor.WebhookEvents))
	}
}

// Issue 17, item 2: every event goes through the real Redis queue to a real
// HTTP receiver exactly once, signed over time, delivery id and body, with a
// lower-case snake_case body; an erasure purges the subject's queued contact
// details and sends subject.erased with ids only; a delivery that cannot be
// opened is logged and counted.
func TestWebhookEveryEventDeliveredOnce(t *testing.T) {
	t.Parallel()
	s, rc := newWHStack(t, http.StatusOK)
	ctx := context.Background()
	token := s.mustTrack("shop", shopOrigin+"/pricing", "")
	vid := s.visitorID("shop", token)
	chatID := s.chat(token)

	// marketing.withdrawn: the visitor withdraws the chat's opt-in.
	r := putConsent(s.env, "shop", true, false, "1", map[string]string{"Origin": shopOrigin, tokenHeader: token})
	if r.status != http.StatusOK {
		t.Fatalf("withdrawal: %d %s", r.status, r.body)
	}
	// subject.rectified: the privacy team corrects the name.
	const newName = "Grace B. Hopper"
	if r := s.privacyDo(http.MethodPatch, "/v1/sites/shop/visitors/"+vid, `{"contact":{"name":"`+newName+`"}}`); r.status != http.StatusOK {
		t.Fatalf("rectify: %d %s", r.status, r.body)
	}
	if n := s.dispatcher.Tick(ctx); n != 3 {
		t.Fatalf("Tick attempted %d, want 3", n)
	}

	// A second rectification is queued, then the subject is erased before it
	// goes out: the erasure purges it and queues subject.erased.
	const lateName = "Grace Brewster Murray Hopper"
	if r := s.privacyDo(http.MethodPatch, "/v1/sites/shop/visitors/"+vid, `{"contact":{"name":"`+lateName+`"}}`); r.status != http.StatusOK {
		t.Fatalf("second rectify: %d %s", r.status, r.body)
	}
	if r := s.privacyDo(http.MethodDelete, "/v1/sites/shop/visitors/"+vid, ""); r.status/100 != 2 {
		t.Fatalf("erase: %d %s", r.status, r.body)
	}
	for key, value := range redistest.DumpValues(t, s.rdb) {
		if strings.Contains(value, lateName) || strings.Contains(key, lateName) {
			t.Errorf("%s holds the erased subject's queued contact", key)
		}
	}
	if n := s.dispatcher.Tick(ctx); n != 1 {
		t.Fatalf("Tick after the erasure attempted %d, want 1 (subject.erased)", n)
	}
	s.clock.Advance(time.Hour)
	if n := s.dispatcher.Tick(ctx); n != 0 {
		t.Errorf("a later Tick attempted %d, want nothing left", n)
	}

	got := rc.requests()
	var events []string
	ids := map[string]bool{}
	for _, req := range got {
		event, id := req.header.Get("Visitord-Event"), req.header.Get("Visitord-Delivery")
		events = append(events, event)
		if req.verifyErr != nil {
			t.Errorf("%s: signature does not verify: %v", event, req.verifyErr)
		}
		if ids[id] || id == "" {
			t.Errorf("%s: delivery id %q repeated or empty", event, id)
		}
		ids[id] = true
		var body map[string]any
		if err := json.Unmarshal(req.body, &body); err != nil {
			t.Fatalf("%s body %s: %v", event, req.body, err)
		}
		checkWebhookBody(t, event, body)
		if body["event"] != event || body["site"] != "shop" {
			t.Errorf("%s body = %s", event, req.body)
		}
		if event != visitor.EventChatStarted && !slices.Equal(anyStrings(body["chat_ids"]), []string{chatID}) {
			t.Errorf("%s chat_ids = %v, want [%s]", event, body["chat_ids"], chatID)
		}
		switch event {
		case visitor.EventSubjectRectified:
			if c, _ := body["contact"].(map[string]any); len(c) != 1 || c["name"] != newName {
				t.Errorf("subject.rectified contact = %v, want the new name alone", body["contact"])
			}
		case visitor.EventSubjectErased, visitor.EventMarketingWithdrawn:
			for _, pii := range []string{whName, whEmail, whPhone, "Grace", vid, token} {
				if strings.Contains(string(req.body), pii) {
					t.Errorf("%s carries %q; want ids only", event, pii)
				}
			}
		}
	}
	slices.Sort(events)
	if want := []string{"chat.started", "marketing.withdrawn", "subject.erased", "subject.rectified"}; !slices.Equal(events, want) {
		t.Errorf("receiver got %q, want each event once: %q", events, want)
	}
	for _, event := range visitor.WebhookEvents {
		if got := s.deliveriesOf(event, "delivered"); got != 1 {
			t.Errorf("delivered counter of %s = %v, want 1", event, got)
		}
	}

	// A delivery that cannot be opened is logged and counted, then removed.
	other := s.chat("")
	dkey, _, _ := s.queued(other)
	if err := s.rdb.HSet(ctx, dkey, "p", "k1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").Err(); err != nil {
		t.Fatal(err)
	}
	before := len(rc.requests())
	s.dispatcher.Tick(ctx)
	if len(rc.requests()) != before {
		t.Error("an unreadable delivery was sent")
	}
	if got := s.deliveriesOf(visitor.EventChatStarted, "unreadable"); got != 1 {
		t.Errorf("unreadable counter = %v, want 1", got)
	}
	if _, _, ok := s.queued(other); ok {
		t.Error("the unreadable delivery stays queued")
	}
	if !strings.Contains(s.logs.String(), `"result":"unreadable"`) {
		t.Errorf("the unreadable delivery was not logged:\n%s", s.logs.String())
	}
	s.assertLogsClean(whName, whEmail, whPhone, newName, lateName, token)
}

func anyStrings(v any) []string {
	list, _ := v.([]any)
	out := make([]string, 0, len(list))
	for _, x := range list {
		s, _ := x.(string)
		out = append(out, s)
	}
	return out
}

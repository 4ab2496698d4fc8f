package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/visitord/visitord/internal/config"
	"github.com/visitord/visitord/internal/device"
	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
	"github.com/visitord/visitord/internal/webhook"
)

// whSecret signs the test site's webhooks.
var whSecret = []byte("webhook-secret-0123456789abcdef-0123")

// whRequest is one request the receiver got.
type whRequest struct {
	method, path string
	header       http.Header
	body         []byte
	verifyErr    error
}

// whReceiver is the site's webhook endpoint: it verifies each request's
// signature at the test clock's time and answers the statuses in turn (the
// last one from then on).
type whReceiver struct {
	srv      *httptest.Server
	clock    *clock
	mu       sync.Mutex
	statuses []int
	got      []whRequest
}

func newWHReceiver(t *testing.T, clk *clock, statuses ...int) *whReceiver {
	t.Helper()
	rc := &whReceiver{clock: clk, statuses: statuses}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		rc.got = append(rc.got, whRequest{
			method: r.Method, path: r.URL.Path, header: r.Header.Clone(), body: body,
			verifyErr: webhook.Verify(whSecret, r.Header.Get("Visitord-Signature"), r.Header.Get("Visitord-Delivery"), body, rc.clock.Now(), webhook.DefaultTolerance),
		})
		w.WriteHeader(rc.statuses[min(len(rc.got), len(rc.statuses))-1])
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *whReceiver) requests() []whRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]whRequest(nil), rc.got...)
}

// whStack is the whole stack with a webhook: env for the HTTP side, plus the
// dispatcher over the real Redis queue, driven by Tick.
type whStack struct {
	*env
	dispatcher *webhook.Dispatcher
	metrics    *prometheus.Registry
	// store, targets and logger build another dispatcher over the same queue.
	store   *redisstore.Store
	targets map[string]webhook.Target
	logger  *slog.Logger
}

// newWHStack builds the pieces by hand: newEnvOn reads sites with an empty
// environment, so a site with a webhook secret cannot be made there.
func newWHStack(t *testing.T, statuses ...int) (*whStack, *whReceiver) {
	t.Helper()
	clk := &clock{t: time.Now().UTC().Truncate(time.Millisecond)}
	rc := newWHReceiver(t, clk, statuses...)
	yaml := fmt.Sprintf(`
sites:
  - id: shop
    origins: [%q]
    consent: opt-out
    legal_text: "We send your chat details to our CRM."
    webhook: {url: %q, secret_env: HOOK}
    keys:
      - {id: agent-1, role: operator, sha256: "933174a2b21fc9af707473cd8a34d704c75c44d34c15073977611508c0d94f01"}
      - {id: dpo, role: privacy, sha256: "9b98b2e892e32b76693355ee5ffe2e7a6b98b001059abbc172169dd1e75e4660"}
`, shopOrigin, rc.srv.URL+"/hooks/visitord")
	getenv := func(k string) string { return map[string]string{"HOOK": string(whSecret)}[k] }
	parsed, err := config.ParseSites([]byte(yaml), getenv, 1, 1825)
	if err != nil {
		t.Fatalf("sites: %v", err)
	}
	sites, err := visitor.NewSites(parsed)
	if err != nil {
		t.Fatal(err)
	}
	rs := redistest.Start(t)
	rdb := rs.Client(t)
	store := redisstore.New(rdb)
	if err := store.LoadScripts(context.Background()); err != nil {
		t.Fatal(err)
	}
	signer, hasher, sealer := testKeys(t, [][]byte{testSecret})
	svc := visitor.NewService(visitor.Deps{Sites: sites, Store: store, Signer: signer, Hasher: hasher, Sealer: sealer, Devices: device.NewParser(1024)}, visitor.WithClock(clk.Now))
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg := prometheus.NewRegistry()
	h, err := New(Options{Service: svc, Logger: logger, Registry: reg, TrackTimeout: 2 * time.Second, Ready: store.Ping})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	targets := map[string]webhook.Target{}
	for _, s := range sites.All() {
		if s.Webhook.URL != "" {
			targets[s.ID] = webhook.Target{URL: s.Webhook.URL, Secret: s.Webhook.Secret}
		}
	}
	if len(targets) != 1 {
		t.Fatalf("webhook targets = %v", targets)
	}
	metrics := prometheus.NewRegistry()
	d := webhook.NewDispatcher(redisstore.NewWebhookQueue(store, sealer), targets, logger, metrics,
		webhook.WithClock(clk.Now), webhook.WithClient(rc.srv.Client()))

	e := &env{t: t, srv: srv, redis: rs, rdb: rdb, clock: clk, logs: logs, sites: sites, hasher: hasher,
		signer: signer, reg: reg, client: srv.Client()}
	t.Cleanup(func() {
		if !t.Failed() {
			e.assertTTLs()
		}
	})
	return &whStack{env: e, dispatcher: d, metrics: metrics, store: store, targets: targets, logger: logger}, rc
}

// deliveries reads the dispatcher's delivery counter of chat.started by result.
func (s *whStack) deliveries(result string) float64 {
	s.t.Helper()
	return s.deliveriesOf("chat.started", result)
}

const (
	whName  = "Grace Hopper"
	whEmail = "grace@navy.example"
	whPhone = "+1 555 0100"
)

func (s *whStack) chat(token string) string {
	s.t.Helper()
	h := map[string]string{"Origin": shopOrigin}
	if token != "" {
		h[tokenHeader] = token
	}
	r := cmPost(s.env, map[string]any{"site": "shop", "url": shopOrigin + "/pricing?utm_source=mail&x=1", "marketing_opt_in": true,
		"contact": map[string]any{"name": whName, "email": whEmail, "phone": whPhone}}, h)
	if r.status != http.StatusCreated {
		s.t.Fatalf("chat: %d %s", r.status, r.body)
	}
	return r.json(s.t)["chat_id"].(string)
}

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
	// The chat start only queues its event: the receiver waits for a Tick,
	// and the queue holds the contact sealed.
	if got := rc.requests(); len(got) != 0 {
		t.Fatalf("the receiver was called during the chat start: %d requests", len(got))
	}
	for key, value := range redistest.DumpValues(t, s.rdb) {
		for _, plain := range []string{whName, whEmail, whPhone, "grace@"} {
			if strings.Contains(value, plain) || strings.Contains(key, plain) {
				t.Errorf("%s holds %q in clear", key, plain)
			}
		}
	}

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
		case visitor.EventChatStarted:
			if body["chat_id"] != chatID || body["name"] != whName || body["email"] != whEmail || body["phone"] != whPhone ||
				body["marketing_opt_in"] != true || body["url"] != shopOrigin+"/pricing?utm_source=mail" {
				t.Errorf("chat.started body = %s, want the chat, its contact, opt-in and minimised url", req.body)
			}
			for _, id := range []string{vid, token} {
				if strings.Contains(string(req.body), id) {
					t.Errorf("chat.started carries the visitor's identity %q", id)
				}
			}
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

	// A delivery that cannot be opened (here: a dispatcher whose data key is
	// not the one it was sealed with) is logged and counted, then removed.
	s.chat("")
	wrong, err := visitor.NewSealer([]visitor.DataKey{{ID: "k1", Key: []byte("another-data-key-0123456789abcde")}})
	if err != nil {
		t.Fatal(err)
	}
	wrongMetrics := prometheus.NewRegistry()
	blind := webhook.NewDispatcher(redisstore.NewWebhookQueue(s.store, wrong), s.targets, s.logger, wrongMetrics,
		webhook.WithClock(s.clock.Now), webhook.WithClient(rc.srv.Client()))
	before := len(rc.requests())
	blind.Tick(ctx)
	if len(rc.requests()) != before {
		t.Error("an unreadable delivery was sent")
	}
	if got := (&whStack{env: s.env, metrics: wrongMetrics}).deliveriesOf(visitor.EventChatStarted, "unreadable"); got != 1 {
		t.Errorf("unreadable counter = %v, want 1", got)
	}
	if !strings.Contains(s.logs.String(), `"result":"unreadable"`) {
		t.Errorf("the unreadable delivery was not logged:\n%s", s.logs.String())
	}
	s.clock.Advance(time.Hour)
	if n := s.dispatcher.Tick(ctx); n != 0 || len(rc.requests()) != before {
		t.Errorf("the unreadable delivery stays queued: a Tick attempted %d", n)
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

package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
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
	return &whStack{env: e, dispatcher: d, metrics: metrics}, rc
}

// deliveries reads the dispatcher's delivery counter of chat.started by result.
func (s *whStack) deliveries(result string) float64 {
	s.t.Helper()
	return s.deliveriesOf("chat.started", result)
}

// queued returns the delivery key of a chat and its score on the queue; ok is
// false when the queue does not hold it.
func (s *whStack) queued(chatID string) (key string, due time.Time, ok bool) {
	s.t.Helper()
	ctx := context.Background()
	key = s.rdb.HGet(ctx, "ch:{shop:"+chatID+"}", "wd").Val()
	if key == "" {
		s.t.Fatalf("chat %s names no queued delivery", chatID)
	}
	score, err := s.rdb.ZScore(ctx, "wq:{shop}", key).Result()
	if err != nil {
		return key, time.Time{}, false
	}
	return key, time.UnixMilli(int64(score)).UTC(), true
}

// cmSealed is a contact detail as the sealer stores it: kid:base64.
var cmSealed = regexp.MustCompile(`^k1:[A-Za-z0-9+/]+$`)

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

// A chat start queues an encrypted chat.started delivery and answers without
// waiting for the receiver; a tick delivers it signed, and it leaves the queue.
func TestWebhookChatStartedDelivered(t *testing.T) {
	t.Parallel()
	s, rc := newWHStack(t, http.StatusOK)
	ctx := context.Background()
	token := s.mustTrack("shop", shopOrigin+"/pricing", "")
	chatID := s.chat(token)

	if got := rc.requests(); len(got) != 0 {
		t.Fatalf("the receiver was called during the chat start: %d requests", len(got))
	}
	dkey, due, ok := s.queued(chatID)
	if !ok || !due.Equal(s.clock.Now()) {
		t.Fatalf("delivery %s queued = %v at %v, want due now", dkey, ok, due)
	}
	d := s.rdb.HGetAll(ctx, dkey).Val()
	if !cmSealed.MatchString(d["p"]) || d["e"] != "chat.started" || d["n"] != "0" {
		t.Errorf("delivery = %v, want a sealed chat.started body, no attempts", d)
	}
	if ttl := s.rdb.PTTL(ctx, dkey).Val(); ttl <= 0 || ttl > 3*24*time.Hour {
		t.Errorf("delivery TTL = %v, want at most 3 days", ttl)
	}
	for key, value := range redistest.DumpValues(t, s.rdb) {
		for _, plain := range []string{whName, whEmail, whPhone, "Grace", "grace@"} {
			if strings.Contains(value, plain) || strings.Contains(key, plain) {
				t.Errorf("%s holds %q in clear", key, plain)
			}
		}
	}
	redistest.AssertAllKeysHaveTTL(t, s.rdb, func(k string) bool { return strings.HasPrefix(k, "cfg:") })

	if n := s.dispatcher.Tick(ctx); n != 1 {
		t.Fatalf("Tick attempted %d deliveries, want 1", n)
	}
	got := rc.requests()
	if len(got) != 1 {
		t.Fatalf("receiver got %d requests, want 1", len(got))
	}
	r := got[0]
	if r.method != http.MethodPost || r.path != "/hooks/visitord" || r.header.Get("Content-Type") != "application/json" {
		t.Errorf("request = %s %s (%s)", r.method, r.path, r.header.Get("Content-Type"))
	}
	if r.verifyErr != nil {
		t.Errorf("Visitord-Signature %q does not verify: %v", r.header.Get("Visitord-Signature"), r.verifyErr)
	}
	if err := webhook.Verify([]byte("another-secret-0123456789abcdef-0123"), r.header.Get("Visitord-Signature"), r.header.Get("Visitord-Delivery"), r.body, s.clock.Now(), webhook.DefaultTolerance); err == nil {
		t.Error("the signature verifies under another secret")
	}
	if r.header.Get("Visitord-Event") != "chat.started" || !strings.HasSuffix(dkey, ":w:"+r.header.Get("Visitord-Delivery")) {
		t.Errorf("Visitord-Event %q, Visitord-Delivery %q; want chat.started and the id of %s",
			r.header.Get("Visitord-Event"), r.header.Get("Visitord-Delivery"), dkey)
	}
	var body struct {
		Event          string    `json:"event"`
		Site           string    `json:"site"`
		ChatID         string    `json:"chat_id"`
		Time           time.Time `json:"time"`
		Name           string    `json:"name"`
		Email          string    `json:"email"`
		Phone          string    `json:"phone"`
		MarketingOptIn bool      `json:"marketing_opt_in"`
		URL            string    `json:"url"`
	}
	if err := json.Unmarshal(r.body, &body); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	if body.Event != "chat.started" || body.Site != "shop" || body.ChatID != chatID || !body.Time.Equal(s.clock.Now()) ||
		body.Name != whName || body.Email != whEmail || body.Phone != whPhone || !body.MarketingOptIn ||
		body.URL != shopOrigin+"/pricing?utm_source=mail" {
		t.Errorf("body = %+v", body)
	}
	for _, leak := range []string{s.visitorID("shop", token), token} {
		if strings.Contains(string(r.body), leak) {
			t.Errorf("body contains the visitor's identity %q", leak)
		}
	}

	if n := s.rdb.Exists(ctx, dkey).Val(); n != 0 {
		t.Errorf("delivery %s kept after success", dkey)
	}
	if _, _, ok := s.queued(chatID); ok {
		t.Errorf("queue still holds %s", dkey)
	}
	if n := s.dispatcher.Tick(ctx); n != 0 || len(rc.requests()) != 1 {
		t.Errorf("a second Tick attempted %d, receiver has %d requests; want nothing more", n, len(rc.requests()))
	}
	if got := s.deliveries("delivered"); got != 1 {
		t.Errorf("delivered counter = %v, want 1", got)
	}
	s.assertLogsClean(whName, whEmail, whPhone, token)
}

// A receiver that fails twice then answers 200 gets three attempts, each after
// the back-off, each signed anew; the delivery is deleted after the success.
func TestWebhookRetriesUntilDelivered(t *testing.T) {
	t.Parallel()
	s, rc := newWHStack(t, http.StatusInternalServerError, http.StatusInternalServerError, http.StatusOK)
	ctx := context.Background()
	chatID := s.chat("")
	dkey, _, _ := s.queued(chatID)

	for i, step := range []struct {
		advance time.Duration
		minWait time.Duration // next attempt after at least this (back-off -20%)
		maxWait time.Duration // and at most this (+20%)
	}{
		{advance: 0, minWait: 4 * time.Second, maxWait: 6 * time.Second},
		{advance: 7 * time.Second, minWait: 8 * time.Second, maxWait: 12 * time.Second},
	} {
		s.clock.Advance(step.advance)
		if n := s.dispatcher.Tick(ctx); n != 1 {
			t.Fatalf("attempt %d: Tick attempted %d", i+1, n)
		}
		if got := s.rdb.HGet(ctx, dkey, "n").Val(); got != fmt.Sprint(i+1) {
			t.Errorf("attempts recorded after failure %d = %q", i+1, got)
		}
		_, due, ok := s.queued(chatID)
		if wait := due.Sub(s.clock.Now()); !ok || wait < step.minWait || wait > step.maxWait {
			t.Errorf("after failure %d the next attempt is in %v (queued %v), want %v..%v", i+1, wait, ok, step.minWait, step.maxWait)
		}
		if n := s.dispatcher.Tick(ctx); n != 0 {
			t.Errorf("a Tick before the back-off attempted %d", n)
		}
		redistest.AssertAllKeysHaveTTL(t, s.rdb, func(k string) bool { return strings.HasPrefix(k, "cfg:") })
	}
	s.clock.Advance(13 * time.Second)
	if n := s.dispatcher.Tick(ctx); n != 1 {
		t.Fatalf("attempt 3: Tick attempted %d", n)
	}

	got := rc.requests()
	if len(got) != 3 {
		t.Fatalf("receiver got %d requests, want 3", len(got))
	}
	var stamps []string
	for i, r := range got {
		if r.verifyErr != nil {
			t.Errorf("attempt %d: signature does not verify: %v", i+1, r.verifyErr)
		}
		if r.header.Get("Visitord-Delivery") != got[0].header.Get("Visitord-Delivery") || string(r.body) != string(got[0].body) {
			t.Errorf("attempt %d is not the same delivery", i+1)
		}
		stamps = append(stamps, strings.SplitN(r.header.Get("Visitord-Signature"), ",", 2)[0])
	}
	if stamps[0] == stamps[1] || stamps[1] == stamps[2] {
		t.Errorf("signature timestamps %v, want each attempt signed at its time", stamps)
	}
	if n := s.rdb.Exists(ctx, dkey).Val(); n != 0 {
		t.Errorf("delivery %s kept after success", dkey)
	}
	if _, _, ok := s.queued(chatID); ok {
		t.Errorf("queue still holds %s", dkey)
	}
	s.clock.Advance(time.Hour)
	if n := s.dispatcher.Tick(ctx); n != 0 {
		t.Errorf("Tick after success attempted %d", n)
	}
	if f, d := s.deliveries("failed"), s.deliveries("delivered"); f != 2 || d != 1 {
		t.Errorf("counters failed=%v delivered=%v, want 2 and 1", f, d)
	}
	s.assertLogsClean(whName, whEmail, whPhone)
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

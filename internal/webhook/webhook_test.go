package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/visitord/visitord/internal/visitor"
)

var (
	t0     = time.Date(2026, 11, 3, 10, 0, 0, 0, time.UTC)
	secret = []byte("0123456789abcdef0123456789abcdef")
	body   = []byte(`{"chat_id":"c1","contact":{"email":"ada@mail.example"}}`)
)

// fakeQueue is an in-memory Queue with Due's lease semantics; the Redis queue is
// tested in redisstore.
type fakeQueue struct {
	mu      sync.Mutex
	items   map[string]*queued
	order   []string
	retries []retried
	done    []string
	dueErr  map[string]error
	anySite bool // Due ignores the site, as a buggy queue would
}

type queued struct {
	d           Delivery
	next        time.Time
	leasedUntil time.Time
}

type retried struct {
	id       string
	attempts int
	next     time.Time
}

func newFakeQueue(ds ...Delivery) *fakeQueue {
	q := &fakeQueue{items: map[string]*queued{}, dueErr: map[string]error{}}
	for _, d := range ds {
		q.items[d.ID] = &queued{d: d}
		q.order = append(q.order, d.ID)
	}
	return q
}

func (q *fakeQueue) Due(_ context.Context, site string, now time.Time, n int, lease time.Duration) ([]Delivery, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if err := q.dueErr[site]; err != nil {
		return nil, err
	}
	var out []Delivery
	for _, id := range q.order {
		it, ok := q.items[id]
		if !ok || (it.d.Site != site && !q.anySite) || it.next.After(now) || it.leasedUntil.After(now) {
			continue
		}
		if len(out) == n {
			break
		}
		it.leasedUntil = now.Add(lease)
		out = append(out, it.d)
	}
	return out, nil
}

func (q *fakeQueue) Done(_ context.Context, d Delivery) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	delete(q.items, d.ID)
	q.done = append(q.done, d.ID)
	return nil
}

func (q *fakeQueue) Retry(_ context.Context, d Delivery, next time.Time) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	it, ok := q.items[d.ID]
	if !ok {
		return fmt.Errorf("retry %s: not queued", d.ID)
	}
	it.d.Attempts = d.Attempts
	it.next = next
	it.leasedUntil = time.Time{}
	q.retries = append(q.retries, retried{id: d.ID, attempts: d.Attempts, next: next})
	return nil
}

func (q *fakeQueue) len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.items)
}

func (q *fakeQueue) retryLog() []retried {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]retried(nil), q.retries...)
}

// clock is a pinned clock that tests move by hand.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = t
}

// receiver is a webhook endpoint that answers the scripted statuses in turn (the
// last one from then on) and records what it received.
type receiver struct {
	srv      *httptest.Server
	mu       sync.Mutex
	statuses []int
	reqs     []received
}

type received struct {
	header http.Header
	body   []byte
	query  url.Values
}

func newReceiver(tb testing.TB, statuses ...int) *receiver {
	tb.Helper()
	r := &receiver{statuses: statuses}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		status := r.statuses[min(len(r.reqs), len(r.statuses)-1)]
		r.reqs = append(r.reqs, received{header: req.Header.Clone(), body: b, query: req.URL.Query()})
		r.mu.Unlock()
		w.WriteHeader(status)
	}))
	tb.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) received() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.reqs...)
}

func delivery(id string) Delivery {
	return Delivery{ID: id, Site: "shop", Event: visitor.EventChatStarted, Body: body}
}

// count is the deliveries counter of event and result. It reads the counter as
// prometheus/testutil.ToFloat64 does: testutil needs github.com/kylelemons/godebug,
// which go.mod does not require yet.
func count(d *Dispatcher, event, result string) float64 {
	var m dto.Metric
	if err := d.deliveries.WithLabelValues(event, result).Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// observations is the number of samples in the duration histogram of reg.
func observations(tb testing.TB, reg *prometheus.Registry) uint64 {
	tb.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		tb.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "visitord_webhook_delivery_duration_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	tb.Fatal("no duration histogram registered")
	return 0
}

func TestSignVerify(t *testing.T) {
	t.Parallel()
	const id = "d1"
	header := Sign(secret, t0, id, body)
	if prefix := fmt.Sprintf("t=%d,v1=", t0.Unix()); !strings.HasPrefix(header, prefix) || len(header) != len(prefix)+64 {
		t.Fatalf("Sign = %q, want %s<64 hex digits>", header, prefix)
	}
	other := []byte("another secret of thirty-two bytes!")
	tests := []struct {
		name    string
		secret  []byte
		header  string
		id      string // "" for the signed one, unless the body is changed too
		body    []byte
		now     time.Time
		wantErr bool
	}{
		{name: "valid", secret: secret, header: header, body: body, now: t0},
		{name: "valid within tolerance", secret: secret, header: header, body: body, now: t0.Add(DefaultTolerance)},
		{name: "spaces after commas", secret: secret, header: strings.ReplaceAll(header, ",", ", "), body: body, now: t0},
		{name: "second of two signatures (rotation)", secret: secret, header: Sign(other, t0, id, body) + "," + header[strings.Index(header, "v1="):], body: body, now: t0},
		{name: "unknown scheme ignored", secret: secret, header: header + ",v0=abc", body: body, now: t0},
		{name: "another delivery id", secret: secret, header: header, id: "d2", body: body, now: t0, wantErr: true},
		{name: "delivery id moved into the body", secret: secret, header: header, id: "", body: append([]byte(id+"."), body...), now: t0, wantErr: true},
		{name: "tampered body", secret: secret, header: header, body: bytes.Replace(body, []byte("ada"), []byte("eve"), 1), now: t0, wantErr: true},
		{name: "old timestamp", secret: secret, header: header, body: body, now: t0.Add(DefaultTolerance + time.Second), wantErr: true},
		{name: "future timestamp", secret: secret, header: header, body: body, now: t0.Add(-DefaultTolerance - time.Second), wantErr: true},
		{name: "wrong secret", secret: other, header: header, body: body, now: t0, wantErr: true},
		{name: "timestamp swapped", secret: secret, header: strings.Replace(header, fmt.Sprint(t0.Unix()), fmt.Sprint(t0.Unix()+1), 1), body: body, now: t0, wantErr: true},
		{name: "empty header", secret: secret, header: "", body: body, now: t0, wantErr: true},
		{name: "no signature", secret: secret, header: fmt.Sprintf("t=%d", t0.Unix()), body: body, now: t0, wantErr: true},
		{name: "no timestamp", secret: secret, header: header[strings.Index(header, "v1="):], body: body, now: t0, wantErr: true},
		{name: "short signature", secret: secret, header: header[:len(header)-2], body: body, now: t0, wantErr: true},
		{name: "two timestamps", secret: secret, header: "t=1," + header, body: body, now: t0, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			did := tt.id
			if did == "" && bytes.Equal(tt.body, body) {
				did = id
			}
			err := Verify(tt.secret, tt.header, did, tt.body, tt.now, DefaultTolerance)
			if got := err != nil; got != tt.wantErr {
				t.Fatalf("Verify = %v, want error %v", err, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrSignature) {
				t.Fatalf("Verify = %v, want it to wrap ErrSignature", err)
			}
		})
	}
}

func TestDeliverSigned(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, http.StatusNoContent)
	q := newFakeQueue(delivery("d1"))
	clk := &clock{t: t0}
	reg := prometheus.NewRegistry()
	d := NewDispatcher(q, map[string]Target{"shop": {URL: rcv.srv.URL + "/hook", Secret: secret}}, nil, reg,
		WithClient(rcv.srv.Client()), WithClock(clk.Now))

	if got, want := d.Tick(context.Background()), 1; got != want {
		t.Fatalf("Tick = %d, want %d", got, want)
	}
	reqs := rcv.received()
	if got, want := len(reqs), 1; got != want {
		t.Fatalf("receiver got %d requests, want %d", got, want)
	}
	h := reqs[0].header
	for k, want := range map[string]string{
		"Content-Type":      "application/json",
		"User-Agent":        "visitord-webhook/1",
		"Visitord-Event":    visitor.EventChatStarted,
		"Visitord-Delivery": "d1",
	} {
		if got := h.Get(k); got != want {
			t.Errorf("header %s = %q, want %q", k, got, want)
		}
	}
	if !bytes.Equal(reqs[0].body, body) {
		t.Errorf("body = %s, want %s", reqs[0].body, body)
	}
	if err := Verify(secret, h.Get("Visitord-Signature"), "d1", reqs[0].body, t0, DefaultTolerance); err != nil {
		t.Errorf("receiver's Verify: %v", err)
	}
	if err := Verify(secret, h.Get("Visitord-Signature"), "d1", reqs[0].body, t0.Add(time.Hour), DefaultTolerance); err == nil {
		t.Error("receiver's Verify an hour later: nil, want an error")
	}
	if got, want := q.len(), 0; got != want {
		t.Errorf("queue holds %d deliveries, want %d", got, want)
	}
	if got, want := count(d, visitor.EventChatStarted, resultDelivered), 1.0; got != want {
		t.Errorf("delivered = %v, want %v", got, want)
	}
	if got, want := observations(t, reg), uint64(1); got != want {
		t.Errorf("duration observations = %d, want %d", got, want)
	}
	if got, want := d.Tick(context.Background()), 0; got != want {
		t.Errorf("second Tick = %d, want %d", got, want)
	}
}

func TestRetryWithGrowingBackoffThenDelivered(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 500, 500, 200)
	q := newFakeQueue(delivery("d1"))
	clk := &clock{t: t0}
	reg := prometheus.NewRegistry()
	d := NewDispatcher(q, map[string]Target{"shop": {URL: rcv.srv.URL, Secret: secret}}, nil, reg,
		WithClient(rcv.srv.Client()), WithClock(clk.Now))
	ctx := context.Background()

	var delays []time.Duration
	for i := range 2 {
		if got, want := d.Tick(ctx), 1; got != want {
			t.Fatalf("tick %d = %d, want %d", i, got, want)
		}
		retries := q.retryLog()
		if got, want := len(retries), i+1; got != want {
			t.Fatalf("after tick %d: %d retries, want %d", i, got, want)
		}
		r := retries[i]
		if got, want := r.attempts, i+1; got != want {
			t.Errorf("retry %d recorded %d attempts, want %d", i, got, want)
		}
		delays = append(delays, r.next.Sub(clk.Now()))
		// Not due yet: nothing is sent a moment before the next attempt.
		clk.Set(r.next.Add(-time.Millisecond))
		if got, want := d.Tick(ctx), 0; got != want {
			t.Fatalf("tick before due = %d, want %d", got, want)
		}
		clk.Set(r.next)
	}
	if got, want := d.Tick(ctx), 1; got != want {
		t.Fatalf("third tick = %d, want %d", got, want)
	}

	// 5s then 10s, each ±20%: the ranges do not overlap, so the delay grows.
	if lo, hi := 4*time.Second, 6*time.Second; delays[0] < lo || delays[0] > hi {
		t.Errorf("first delay = %s, want within [%s, %s]", delays[0], lo, hi)
	}
	if lo, hi := 8*time.Second, 12*time.Second; delays[1] < lo || delays[1] > hi {
		t.Errorf("second delay = %s, want within [%s, %s]", delays[1], lo, hi)
	}
	reqs := rcv.received()
	if got, want := len(reqs), 3; got != want {
		t.Fatalf("receiver got %d requests, want %d", got, want)
	}
	for i, r := range reqs {
		// Each attempt is signed afresh at its own time, with the same delivery id.
		if got, want := r.header.Get("Visitord-Delivery"), "d1"; got != want {
			t.Errorf("request %d: delivery id = %q, want %q", i, got, want)
		}
		if err := Verify(secret, r.header.Get("Visitord-Signature"), r.header.Get("Visitord-Delivery"), r.body, clk.Now(), DefaultTolerance); err != nil {
			t.Errorf("request %d: Verify: %v", i, err)
		}
	}
	if got, want := q.len(), 0; got != want {
		t.Errorf("queue holds %d deliveries, want %d", got, want)
	}
	if got, want := count(d, visitor.EventChatStarted, resultFailed), 2.0; got != want {
		t.Errorf("failed = %v, want %v", got, want)
	}
	if got, want := count(d, visitor.EventChatStarted, resultDelivered), 1.0; got != want {
		t.Errorf("delivered = %v, want %v", got, want)
	}
	if got, want := count(d, visitor.EventChatStarted, resultAbandoned), 0.0; got != want {
		t.Errorf("abandoned = %v, want %v", got, want)
	}
	if got, want := observations(t, reg), uint64(3); got != want {
		t.Errorf("duration observations = %d, want %d", got, want)
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	elsewhere := newReceiver(t, 200)
	mux := http.NewServeMux()
	mux.HandleFunc("/hook", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.srv.URL+"/stolen", http.StatusFound)
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	q := newFakeQueue(delivery("d1"))
	clk := &clock{t: t0}
	// The test client would follow redirects; the Dispatcher must not let it.
	d := NewDispatcher(q, map[string]Target{"shop": {URL: srv.URL + "/hook", Secret: secret}}, nil, prometheus.NewRegistry(),
		WithClient(&http.Client{}), WithClock(clk.Now))

	if got, want := d.Tick(context.Background()), 1; got != want {
		t.Fatalf("Tick = %d, want %d", got, want)
	}
	if got := len(elsewhere.received()); got != 0 {
		t.Fatalf("redirect target got %d requests, want 0", got)
	}
	retries := q.retryLog()
	if got, want := len(retries), 1; got != want {
		t.Fatalf("%d retries, want %d", got, want)
	}
	if got, want := count(d, visitor.EventChatStarted, resultFailed), 1.0; got != want {
		t.Errorf("failed = %v, want %v", got, want)
	}
	if got, want := count(d, visitor.EventChatStarted, resultDelivered), 0.0; got != want {
		t.Errorf("delivered = %v, want %v", got, want)
	}
}

func TestDefaultClientFollowsNoRedirect(t *testing.T) {
	t.Parallel()
	d := NewDispatcher(newFakeQueue(), nil, nil, nil)
	if d.client.CheckRedirect == nil {
		t.Fatal("default client follows redirects")
	}
	if err := d.client.CheckRedirect(nil, nil); !errors.Is(err, http.ErrUseLastResponse) {
		t.Fatalf("CheckRedirect = %v, want http.ErrUseLastResponse", err)
	}
	if got, want := d.client.Timeout, RequestTimeout; got != want {
		t.Fatalf("default client timeout = %s, want %s", got, want)
	}
}

// failTransport fails the test on any request.
type failTransport struct{ tb testing.TB }

func (f failTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	f.tb.Errorf("unexpected request to %s", r.URL.Host)
	return nil, errors.New("no request expected")
}

func TestRefusedTargetAbandonedWithoutRequest(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		target Target
	}{
		{name: "http to a public host", target: Target{URL: "http://crm.shop.example/hook", Secret: secret}},
		{name: "http to a private address", target: Target{URL: "http://10.0.0.7/hook", Secret: secret}},
		{name: "http to a lookalike of localhost", target: Target{URL: "http://localhost.evil.example/hook", Secret: secret}},
		{name: "another scheme", target: Target{URL: "ftp://crm.shop.example/hook", Secret: secret}},
		{name: "relative url", target: Target{URL: "/hook", Secret: secret}},
		{name: "no url", target: Target{Secret: secret}},
		{name: "no secret", target: Target{URL: "https://crm.shop.example/hook"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q := newFakeQueue(delivery("d1"), delivery("d2"))
			d := NewDispatcher(q, map[string]Target{"shop": tt.target}, nil, prometheus.NewRegistry(),
				WithClient(&http.Client{Transport: failTransport{t}}), WithClock((&clock{t: t0}).Now))
			if got, want := d.Tick(context.Background()), 0; got != want {
				t.Fatalf("Tick = %d, want %d", got, want)
			}
			if got, want := q.len(), 0; got != want {
				t.Errorf("queue holds %d deliveries, want %d (abandoned)", got, want)
			}
			if got := len(q.retryLog()); got != 0 {
				t.Errorf("%d retries, want 0", got)
			}
			if got, want := count(d, visitor.EventChatStarted, resultAbandoned), 2.0; got != want {
				t.Errorf("abandoned = %v, want %v", got, want)
			}
		})
	}
}

func TestCheckURL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		url string
		ok  bool
	}{
		{"https://crm.shop.example/hooks/visitord?key=x", true},
		{"https://10.0.0.7:8443/hook", true},
		{"http://127.0.0.1:8080/hook", true},
		{"http://127.42.0.1/hook", true},
		{"http://[::1]:9000/hook", true},
		{"http://localhost:9000/hook", true},
		{"http://LOCALHOST/hook", true},
		{"http://crm.shop.example/hook", false},
		{"http://128.0.0.1/hook", false},
		{"http://[::2]/hook", false},
		{"http://0.0.0.0/hook", false},
		{"http://localhost.evil.example/hook", false},
		{"ftp://crm.shop.example/hook", false},
		{"HTTPS://crm.shop.example/hook", true},
		{"https:crm.shop.example", false},
		{"//crm.shop.example/hook", false},
		{"", false},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			u, err := url.Parse(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			err = checkURL(u)
			if got := err == nil; got != tt.ok {
				t.Fatalf("checkURL = %v, want ok %v", err, tt.ok)
			}
			if err != nil && strings.Contains(err.Error(), u.Host) && u.Host != "" {
				t.Fatalf("checkURL error %q repeats the host", err)
			}
		})
	}
}

func TestMaxAttemptsAbandoned(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, http.StatusServiceUnavailable)
	q := newFakeQueue(Delivery{ID: "d1", Site: "shop", Event: visitor.EventSubjectErased, Body: body})
	clk := &clock{t: t0}
	d := NewDispatcher(q, map[string]Target{"shop": {URL: rcv.srv.URL, Secret: secret}}, nil, prometheus.NewRegistry(),
		WithClient(rcv.srv.Client()), WithClock(clk.Now), WithMaxAttempts(3), WithBackoff(time.Second, 2*time.Second))
	ctx := context.Background()

	for i := range 3 {
		if got, want := d.Tick(ctx), 1; got != want {
			t.Fatalf("tick %d = %d, want %d", i, got, want)
		}
		clk.Set(clk.Now().Add(time.Hour))
	}
	if got, want := d.Tick(ctx), 0; got != want {
		t.Fatalf("tick after abandon = %d, want %d", got, want)
	}
	if got, want := len(rcv.received()), 3; got != want {
		t.Errorf("receiver got %d requests, want %d", got, want)
	}
	if got, want := q.len(), 0; got != want {
		t.Errorf("queue holds %d deliveries, want %d", got, want)
	}
	if got, want := len(q.retryLog()), 2; got != want {
		t.Errorf("%d retries, want %d", got, want)
	}
	if got, want := count(d, visitor.EventSubjectErased, resultFailed), 2.0; got != want {
		t.Errorf("failed = %v, want %v", got, want)
	}
	if got, want := count(d, visitor.EventSubjectErased, resultAbandoned), 1.0; got != want {
		t.Errorf("abandoned = %v, want %v", got, want)
	}
}

func TestNetworkErrorRetriedAndNotLogged(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	hookURL := srv.URL + "/hook?token=sekrit-query-value"
	srv.Close() // nothing listens any more

	var logs bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	q := newFakeQueue(delivery("d1"))
	d := NewDispatcher(q, map[string]Target{"shop": {URL: hookURL, Secret: secret}}, log, prometheus.NewRegistry(),
		WithClock((&clock{t: t0}).Now))

	if got, want := d.Tick(context.Background()), 1; got != want {
		t.Fatalf("Tick = %d, want %d", got, want)
	}
	if got, want := len(q.retryLog()), 1; got != want {
		t.Fatalf("%d retries, want %d", got, want)
	}
	if got, want := count(d, visitor.EventChatStarted, resultFailed), 1.0; got != want {
		t.Errorf("failed = %v, want %v", got, want)
	}
	out := logs.String()
	for _, leak := range []string{"sekrit", "ada@mail.example", "/hook", string(secret)} {
		if strings.Contains(out, leak) {
			t.Errorf("log holds %q:\n%s", leak, out)
		}
	}
	for _, want := range []string{`"site":"shop"`, `"event":"chat.started"`, `"delivery_id":"d1"`, `"attempt":1`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s:\n%s", want, out)
		}
	}
}

func TestDeliveryOfAnotherSiteNeverSent(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 200)
	q := newFakeQueue(Delivery{ID: "d1", Site: "other", Event: visitor.EventChatStarted, Body: body})
	q.anySite = true
	d := NewDispatcher(q, map[string]Target{"shop": {URL: rcv.srv.URL, Secret: secret}}, nil, prometheus.NewRegistry(),
		WithClient(rcv.srv.Client()), WithClock((&clock{t: t0}).Now))
	if got, want := d.Tick(context.Background()), 0; got != want {
		t.Fatalf("Tick = %d, want %d", got, want)
	}
	if got := len(rcv.received()); got != 0 {
		t.Fatalf("receiver got %d requests, want 0", got)
	}
}

func TestQueueErrorSkipsOnlyThatSite(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 200)
	q := newFakeQueue(delivery("d1"), Delivery{ID: "d2", Site: "blog", Event: visitor.EventSubjectRectified, Body: body})
	q.dueErr["blog"] = errors.New("store unavailable")
	d := NewDispatcher(q, map[string]Target{
		"blog": {URL: rcv.srv.URL, Secret: secret},
		"shop": {URL: rcv.srv.URL, Secret: secret},
	}, nil, prometheus.NewRegistry(), WithClient(rcv.srv.Client()), WithClock((&clock{t: t0}).Now))
	if got, want := d.Tick(context.Background()), 1; got != want {
		t.Fatalf("Tick = %d, want %d", got, want)
	}
	if got, want := q.len(), 1; got != want {
		t.Fatalf("queue holds %d deliveries, want %d", got, want)
	}
}

func TestTickBounded(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 200)
	var ds []Delivery
	for i := range batchSize + 5 {
		ds = append(ds, delivery(fmt.Sprintf("d%d", i)))
	}
	q := newFakeQueue(ds...)
	d := NewDispatcher(q, map[string]Target{"shop": {URL: rcv.srv.URL, Secret: secret}}, nil, prometheus.NewRegistry(),
		WithClient(rcv.srv.Client()), WithClock((&clock{t: t0}).Now))
	if got, want := d.Tick(context.Background()), batchSize; got != want {
		t.Fatalf("first Tick = %d, want %d", got, want)
	}
	if got, want := d.Tick(context.Background()), 5; got != want {
		t.Fatalf("second Tick = %d, want %d", got, want)
	}
}

func TestCancelledRequestIsNotAnAttempt(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) })

	q := newFakeQueue(delivery("d1"))
	d := NewDispatcher(q, map[string]Target{"shop": {URL: srv.URL, Secret: secret}}, nil, prometheus.NewRegistry(),
		WithClient(srv.Client()), WithClock((&clock{t: t0}).Now))
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		<-started
		cancel()
	}()
	d.Tick(ctx)
	if got := len(q.retryLog()); got != 0 {
		t.Errorf("%d retries, want 0", got)
	}
	if got, want := q.len(), 1; got != want {
		t.Errorf("queue holds %d deliveries, want %d (still leased)", got, want)
	}
	if got := count(d, visitor.EventChatStarted, resultFailed) + count(d, visitor.EventChatStarted, resultAbandoned); got != 0 {
		t.Errorf("failed + abandoned = %v, want 0", got)
	}
}

func TestBackoff(t *testing.T) {
	t.Parallel()
	d := NewDispatcher(newFakeQueue(), nil, nil, nil)
	for attempt, nominal := range map[int]time.Duration{
		1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second, 8: 640 * time.Second,
		11: time.Hour, 12: time.Hour, 1000: time.Hour,
	} {
		for range 100 {
			got := d.backoff(attempt)
			lo, hi := time.Duration(0.8*float64(nominal)), min(time.Duration(1.2*float64(nominal)), time.Hour)
			if got < lo || got > hi {
				t.Fatalf("backoff(%d) = %s, want within [%s, %s]", attempt, got, lo, hi)
			}
		}
	}
}

func TestRunDeliversUntilCancelled(t *testing.T) {
	t.Parallel()
	rcv := newReceiver(t, 200)
	q := newFakeQueue(delivery("d1"))
	d := NewDispatcher(q, map[string]Target{"shop": {URL: rcv.srv.URL, Secret: secret}}, nil, prometheus.NewRegistry(),
		WithClient(rcv.srv.Client()), WithInterval(5*time.Millisecond))
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		d.Run(ctx)
		close(stopped)
	}()
	deadline := time.Now().Add(5 * time.Second)
	for q.len() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if got, want := q.len(), 0; got != want {
		t.Fatalf("queue holds %d deliveries, want %d", got, want)
	}
	if got, want := len(rcv.received()), 1; got != want {
		t.Fatalf("receiver got %d requests, want %d", got, want)
	}
}

func TestMetricsShareRegistry(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	a := NewDispatcher(newFakeQueue(), nil, nil, reg)
	b := NewDispatcher(newFakeQueue(), nil, nil, reg)
	a.deliveries.WithLabelValues(visitor.EventChatStarted, resultDelivered).Inc()
	if got, want := count(b, visitor.EventChatStarted, resultDelivered), 1.0; got != want {
		t.Fatalf("second dispatcher's counter = %v, want %v", got, want)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	series := 0
	for _, mf := range mfs {
		if mf.GetName() == "visitord_webhook_deliveries_total" {
			series = len(mf.GetMetric())
		}
	}
	if got, want := series, 25; got != want {
		t.Fatalf("%d delivery series, want %d (4 events and other × 5 results)", got, want)
	}
}

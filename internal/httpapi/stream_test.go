package httpapi

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/visitord/visitord/internal/device"
	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/visitor"
)

// streamWait bounds how long a test waits for an event: the route promises a
// page view within 2 s.
const streamWait = 2 * time.Second

// sseEvent is one event of a stream; a comment has name ":".
type sseEvent struct {
	name string
	data string
}

// pod is a second service process on the same Redis as an env: its own
// Service and HTTP API, with its own live streams.
type pod struct {
	srv     *httptest.Server
	streams *Streams
	reg     *prometheus.Registry
}

func newPod(t testing.TB, e *env, o StreamOptions) *pod {
	t.Helper()
	signer, hasher, sealer := testKeys(t, [][]byte{testSecret})
	svc := visitor.NewService(visitor.Deps{Sites: e.sites, Store: redisstore.New(e.rdb), Signer: signer, Hasher: hasher, Sealer: sealer,
		Devices: device.NewParser(64)}, visitor.WithClock(e.clock.Now))
	p := &pod{streams: NewStreams(o), reg: prometheus.NewRegistry()}
	h, err := New(Options{Service: svc, Logger: slog.New(slog.NewJSONHandler(e.logs, nil)), Registry: p.reg,
		TrackTimeout: time.Second, StoreTimeout: 200 * time.Millisecond, Streams: p.streams})
	if err != nil {
		t.Fatal(err)
	}
	p.srv = httptest.NewServer(h)
	t.Cleanup(p.srv.Close)
	t.Cleanup(p.streams.Close)
	return p
}

// newFakePod is the HTTP API with streams of options o over a fake domain:
// the streams' own rules (a key's places on this pod, heartbeats, Close)
// without a store.
func newFakePod(t testing.TB, o StreamOptions) *pod {
	t.Helper()
	p := &pod{streams: NewStreams(o)}
	e := newFakeEnv(t, func(eo *envOptions) { eo.streams = p.streams })
	p.srv, p.reg = e.srv, e.reg
	return p
}

// metricValue is the value of an unlabelled counter or gauge in reg.
func metricValue(t testing.TB, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) != 1 {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue()
		}
		return m.GetGauge().GetValue()
	}
	t.Fatalf("no metric %s", name)
	return 0
}

// stream is an open live stream read by a goroutine.
type stream struct {
	res    *http.Response
	events chan sseEvent
}

// openStream opens the live stream of site with key; the response is closed at the
// test's end. A refused stream has a nil events channel and its body read whole.
func openStream(t testing.TB, base, site, key string) (*stream, resp) {
	t.Helper()
	rq, err := http.NewRequest(http.MethodGet, base+"/v1/sites/"+site+"/visitors/live/stream", nil)
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		rq.Header.Set("Authorization", "Bearer "+key)
	}
	res, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode != http.StatusOK {
		defer res.Body.Close()
		var b strings.Builder
		_, _ = bufio.NewReader(res.Body).WriteTo(&b)
		return nil, resp{status: res.StatusCode, header: res.Header, body: []byte(b.String())}
	}
	t.Cleanup(func() { res.Body.Close() })
	s := &stream{res: res, events: make(chan sseEvent, 64)}
	go func() {
		defer close(s.events)
		br := bufio.NewReader(res.Body)
		var ev sseEvent
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			line = strings.TrimSuffix(line, "\n")
			switch {
			case line == "":
				if ev.name != "" {
					s.events <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
				ev.name, ev.data = ":", strings.TrimSpace(line[1:])
			case strings.HasPrefix(line, "event: "):
				ev.name = line[len("event: "):]
			case strings.HasPrefix(line, "data: "):
				ev.data = line[len("data: "):]
			}
		}
	}()
	return s, resp{status: res.StatusCode, header: res.Header}
}

// next returns the next event other than a comment, failing after streamWait.
func (s *stream) next(t testing.TB) sseEvent {
	t.Helper()
	deadline := time.After(streamWait)
	for {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatal("the stream ended")
			}
			if ev.name != ":" {
				return ev
			}
		case <-deadline:
			t.Fatalf("no event within %s", streamWait)
		}
	}
}

// A page view on one pod appears within 2 s on a stream served by another pod,
// as the same row GET visitors/live answers; a later view updates the row, a
// session gone quiet is removed, and no stream writes to the audit trail.
func TestLiveStreamAcrossPods(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	other := newPod(t, e, StreamOptions{Heartbeat: time.Hour, Poll: 20 * time.Millisecond})
	auditBefore := len(e.operatorGet("/v1/sites/shop/audit?limit=200", shopPrivacyKey).json(t)["entries"].([]any))

	s, r := openStream(t, other.srv.URL, "shop", shopOperatorKey)
	if s == nil {
		t.Fatalf("stream: %d %s", r.status, r.body)
	}
	if got := r.header.Get("Content-Type"); got != "text/event-stream" {
		t.Errorf("Content-Type %q, want text/event-stream", got)
	}
	if got := r.header.Get("Cache-Control"); got != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", got)
	}
	ev := s.next(t)
	if ev.name != "snapshot" || ev.data != `{"visitors":[]}` {
		t.Fatalf("first event %+v, want an empty snapshot", ev)
	}

	token := opTrack(e, "shop", shopOrigin+"/products/<b>mug</b>", "", "", nil)
	ev = s.next(t)
	var ch liveChange
	if err := json.Unmarshal([]byte(ev.data), &ch); err != nil || ev.name != "change" {
		t.Fatalf("after a page view: %+v (%v)", ev, err)
	}
	var live liveResponse
	if err := json.Unmarshal(e.operatorGet("/v1/sites/shop/visitors/live", shopOperatorKey).body, &live); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(liveChange{Upsert: live.Visitors, Remove: []string{}}, ch); diff != "" {
		t.Errorf("change after a page view is not GET visitors/live's row (-live +stream):\n%s", diff)
	}

	opTrack(e, "shop", shopOrigin+"/cart", "", token, nil)
	if err := json.Unmarshal([]byte(s.next(t).data), &ch); err != nil {
		t.Fatal(err)
	}
	if len(ch.Upsert) != 1 || ch.Upsert[0].Pseudonym != live.Visitors[0].Pseudonym || ch.Upsert[0].Pages != 2 ||
		ch.Upsert[0].CurrentPage.URL != shopOrigin+"/cart" {
		t.Errorf("change after the second page: %+v, want %s with 2 pages on /cart", ch, live.Visitors[0].Pseudonym)
	}

	// The session goes quiet past the live window: its row is removed.
	e.clock.Advance(visitor.DefaultLiveWithin + time.Second)
	if err := json.Unmarshal([]byte(s.next(t).data), &ch); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(liveChange{Upsert: []liveVisitorJSON{}, Remove: []string{live.Visitors[0].Pseudonym}}, ch); diff != "" {
		t.Errorf("change after the session went quiet (-want +got):\n%s", diff)
	}

	if got := len(e.operatorGet("/v1/sites/shop/audit?limit=200", shopPrivacyKey).json(t)["entries"].([]any)); got != auditBefore {
		t.Errorf("audit entries %d, want %d: a stream writes none", got, auditBefore)
	}
}

// Each key holds at most PerKey streams on a site; one more is 429 with
// Retry-After, counted; a closed stream frees its place; auth is the
// operator routes' own.
func TestLiveStreamLimitAndAuth(t *testing.T) {
	t.Parallel()
	p := newFakePod(t, StreamOptions{PerKey: 2, Heartbeat: time.Hour})
	first, _ := openStream(t, p.srv.URL, "shop", shopOperatorKey)
	second, _ := openStream(t, p.srv.URL, "shop", shopOperatorKey)
	if first == nil || second == nil {
		t.Fatal("the first two streams of a key were refused")
	}
	first.next(t)
	second.next(t)
	_, r := openStream(t, p.srv.URL, "shop", shopOperatorKey)
	if r.status != http.StatusTooManyRequests || r.errorCode(t) != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Errorf("third stream of a key: %d %s (Retry-After %q), want 429 rate_limited", r.status, r.body, r.header.Get("Retry-After"))
	}
	if got := metricValue(t, p.reg, "visitord_live_streams_refused_total"); got != 1 {
		t.Errorf("refused streams counted %v, want 1", got)
	}
	// Another key of the site has its own streams.
	if s, r := openStream(t, p.srv.URL, "shop", shopPrivacyKey); s == nil {
		t.Errorf("privacy key's stream: %d %s", r.status, r.body)
	}
	first.res.Body.Close()
	var s *stream
	for end := time.Now().Add(streamWait); time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		if s, r = openStream(t, p.srv.URL, "shop", shopOperatorKey); s != nil {
			break
		}
	}
	if s == nil {
		t.Errorf("after closing a stream, a new one: %d %s", r.status, r.body)
	}

	for _, tc := range []struct {
		name, site, key string
		status          int
		code            string
	}{
		{"no key", "shop", "", http.StatusUnauthorized, "unauthorized"},
		{"unknown key", "shop", "nope-0123456789abcdef0123", http.StatusUnauthorized, "unauthorized"},
		{"another site's key", "shop", blogOperatorKey, http.StatusForbidden, "forbidden"},
		{"unknown site", "nosuch", shopOperatorKey, http.StatusNotFound, "unknown_site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, r := openStream(t, p.srv.URL, tc.site, tc.key)
			if r.status != tc.status || r.errorCode(t) != tc.code {
				t.Errorf("%d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
		})
	}
}

// A stream with nothing to say sends a heartbeat comment every Heartbeat.
func TestLiveStreamHeartbeat(t *testing.T) {
	t.Parallel()
	p := newFakePod(t, StreamOptions{Heartbeat: 50 * time.Millisecond})
	s, r := openStream(t, p.srv.URL, "shop", shopOperatorKey)
	if s == nil {
		t.Fatalf("stream: %d %s", r.status, r.body)
	}
	beats := 0
	deadline := time.After(streamWait)
	for beats < 2 {
		select {
		case ev, ok := <-s.events:
			if !ok {
				t.Fatal("the stream ended")
			}
			if ev.name == ":" && ev.data == "heartbeat" {
				beats++
			}
		case <-deadline:
			t.Fatalf("%d heartbeats within %s, want 2", beats, streamWait)
		}
	}
}

// Close (the server's shutdown) ends open streams at once and refuses new
// ones with 503; what a stream sent matches api/openapi.yaml.
func TestLiveStreamClose(t *testing.T) {
	t.Parallel()
	p := newFakePod(t, StreamOptions{Heartbeat: time.Hour})
	rq := req{method: http.MethodGet, path: "/v1/sites/shop/visitors/live/stream", headers: map[string]string{"Authorization": "Bearer " + shopOperatorKey}}
	done := make(chan resp, 1)
	snapshot := make(chan struct{})
	go func() {
		hr, _ := http.NewRequest(rq.method, p.srv.URL+rq.path, nil)
		hr.Header.Set("Authorization", "Bearer "+shopOperatorKey)
		res, err := http.DefaultClient.Do(hr)
		if err != nil {
			done <- resp{}
			return
		}
		defer res.Body.Close()
		var b strings.Builder
		br := bufio.NewReader(res.Body)
		seen := false
		for {
			line, err := br.ReadString('\n')
			b.WriteString(line)
			if !seen && strings.HasPrefix(line, "data: ") {
				seen = true
				close(snapshot)
			}
			if err != nil {
				break
			}
		}
		done <- resp{status: res.StatusCode, header: res.Header, body: []byte(b.String())}
	}()
	select {
	case <-snapshot:
	case r := <-done:
		t.Fatalf("the stream ended before its snapshot: %d %s", r.status, r.body)
	case <-time.After(streamWait):
		t.Fatal("no snapshot")
	}
	p.streams.Close()
	var r resp
	select {
	case r = <-done:
	case <-time.After(streamWait):
		t.Fatal("the stream did not end on Close")
	}
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "event: snapshot\ndata: {\"visitors\":[]}\n\n") {
		t.Errorf("stream before Close: %d %q", r.status, r.body)
	}
	checkContract(t, &env{t: t, srv: p.srv}, rq, r)

	_, r = openStream(t, p.srv.URL, "shop", shopOperatorKey)
	if r.status != http.StatusServiceUnavailable || r.errorCode(t) != "store_unavailable" {
		t.Errorf("a stream after Close: %d %s, want 503", r.status, r.body)
	}
}

// A failed read of the live list is logged without personal data and counted;
// the stream stays open with its last list and goes on when Redis is back.
func TestLiveStreamReadErrorsCounted(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	p := newPod(t, e, StreamOptions{Heartbeat: time.Hour, Poll: 50 * time.Millisecond})
	s, r := openStream(t, p.srv.URL, "shop", shopOperatorKey)
	if s == nil {
		t.Fatalf("stream: %d %s", r.status, r.body)
	}
	s.next(t)
	e.redis.Kill()
	for end := time.Now().Add(10 * time.Second); metricValue(t, p.reg, "visitord_live_stream_errors_total") < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("a failed read of the live list was not counted")
		}
	}
	if !strings.Contains(e.logs.String(), `"msg":"live stream read"`) {
		t.Errorf("the failed read was not logged:\n%s", e.logs.String())
	}
	e.redis.Restart(t)
	if err := redisstore.New(e.rdb).LoadScripts(t.Context()); err != nil {
		t.Fatal(err)
	}
	opTrack(e, "shop", shopOrigin+"/back", "", "", nil)
	if ev := s.next(t); ev.name != "change" || !strings.Contains(ev.data, shopOrigin+"/back") {
		t.Errorf("after Redis came back: %+v", ev)
	}
	e.assertLogsClean(shopOperatorKey, shopOrigin+"/back")
}

// The bound per key holds across pods, and the place of a stream whose pod
// died lapses with its lease.
func TestLiveStreamLimitAcrossPods(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	o := StreamOptions{PerKey: 2, Heartbeat: time.Minute}
	a, b := newPod(t, e, o), newPod(t, e, o)
	sa, _ := openStream(t, a.srv.URL, "shop", shopOperatorKey)
	sb, _ := openStream(t, b.srv.URL, "shop", shopOperatorKey)
	if sa == nil || sb == nil {
		t.Fatal("one stream on each pod was refused")
	}
	sa.next(t)
	sb.next(t)
	if _, r := openStream(t, a.srv.URL, "shop", shopOperatorKey); r.status != http.StatusTooManyRequests || r.errorCode(t) != "rate_limited" {
		t.Fatalf("a third stream of the key on another pod: %d %s, want 429", r.status, r.body)
	}
	if got := metricValue(t, a.reg, "visitord_live_streams_refused_total"); got != 1 {
		t.Errorf("refused streams counted %v, want 1", got)
	}
	// Pod b shuts down: its stream gives its place back.
	b.streams.Close()
	var s2 *stream
	var r resp
	for end := time.Now().Add(streamWait); s2 == nil && time.Now().Before(end); time.Sleep(20 * time.Millisecond) {
		s2, r = openStream(t, a.srv.URL, "shop", shopOperatorKey)
	}
	if s2 == nil {
		t.Fatalf("after pod b shut down, a stream on pod a: %d %s", r.status, r.body)
	}
	// A pod that died holds a place it never gives back: it lapses with its lease.
	site, _ := e.sites.Get("shop")
	if ok, err := redisstore.New(e.rdb).HoldStream(t.Context(), site, "agent-1", "dead-pod", e.clock.Now(), e.clock.Now().Add(3*o.Heartbeat), 3); !ok || err != nil {
		t.Fatalf("the dead pod's place: %v %v", ok, err)
	}
	sa.res.Body.Close()
	s2.res.Body.Close()
	for end := time.Now().Add(streamWait); metricValue(t, a.reg, "visitord_live_streams") > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("pod a's streams did not end")
		}
	}
	// The dead pod's place is still held: one stream opens, a second is refused.
	held, _ := openStream(t, a.srv.URL, "shop", shopOperatorKey)
	if _, r := openStream(t, a.srv.URL, "shop", shopOperatorKey); held == nil || r.status != http.StatusTooManyRequests {
		t.Fatalf("with the dead pod's place held: a stream %v, a second %d %s; want one open and one refused", held != nil, r.status, r.body)
	}
	held.res.Body.Close()
	for end := time.Now().Add(streamWait); metricValue(t, a.reg, "visitord_live_streams") > 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(end) {
			t.Fatal("pod a's stream did not end")
		}
	}
	e.clock.Advance(3*o.Heartbeat + time.Second)
	s3, _ := openStream(t, a.srv.URL, "shop", shopOperatorKey)
	s4, r := openStream(t, a.srv.URL, "shop", shopOperatorKey)
	if s3 == nil || s4 == nil {
		t.Errorf("after the dead pod's lease, two streams: %d %s", r.status, r.body)
	}
}

// Each heartbeat renews the stream's place, so it outlives its first lease
// while the stream is open, page views or not.
func TestLiveStreamRenewsItsPlace(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hb := 100 * time.Millisecond
	p := newPod(t, e, StreamOptions{PerKey: 1, Heartbeat: hb, Poll: 20 * time.Millisecond})
	s, r := openStream(t, p.srv.URL, "shop", shopOperatorKey)
	if s == nil {
		t.Fatalf("stream: %d %s", r.status, r.body)
	}
	s.next(t)
	beats := func(n int) {
		t.Helper()
		deadline := time.After(streamWait)
		for n > 0 {
			select {
			case ev, ok := <-s.events:
				if !ok {
					t.Fatal("the stream ended")
				}
				if ev.name == ":" {
					n--
				}
			case <-deadline:
				t.Fatal("no heartbeat")
			}
		}
	}
	// The first lease ends 3 heartbeats after the start; two pass, a page view
	// changes the list, and a heartbeat renews the place from there.
	e.clock.Advance(2 * hb)
	opTrack(e, "shop", shopOrigin+"/busy", "", "", nil)
	beats(2)
	e.clock.Advance(2 * hb)
	// Asked on another pod, so that only the place in Redis can refuse it.
	other := newPod(t, e, StreamOptions{PerKey: 1, Heartbeat: time.Hour})
	if _, r := openStream(t, other.srv.URL, "shop", shopOperatorKey); r.status != http.StatusTooManyRequests {
		t.Errorf("past the first lease, a second stream of a key: %d %s, want 429", r.status, r.body)
	}
}

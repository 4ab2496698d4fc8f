package main

// Fault tests of the whole service as main runs it (serve, a real redis-server):
// a Redis restart under load, Redis down or hung, writes that wait for
// replicas, and draining in-flight requests on SIGTERM.

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

const (
	faultOrigin   = "https://shop.example"
	faultPolicy   = "2026-11"
	faultAgentKey = "agent-key"
	// recoverTimeout bounds how long the service may take to work again once
	// Redis is back.
	recoverTimeout = 10 * time.Second
)

// faultEnv is a production environment on srv with an opt-in site "shop"
// whose Redis-backed rate limits never bind, 127.0.0.1 as a trusted proxy (so
// each request can come from its own X-Forwarded-For block and the per-pod
// page-view limit never binds either) and a 150 ms track budget.
func faultEnv(tb testing.TB, srv *redistest.Server) map[string]string {
	tb.Helper()
	sum := sha256.Sum256([]byte(faultAgentKey))
	sites := writeSites(tb, `
sites:
  - id: shop
    origins: ["`+faultOrigin+`"]
    legal_text: "We record the pages you visit to help our chat team."
    controller: {name: "Shop Ltd", contact: "privacy@shop.example"}
    consent: opt-in
    policy_version: "`+faultPolicy+`"
    rate_limit: {chats_per_minute: 1000000, consent_per_minute: 1000000}
    keys:
      - {id: agent-1, role: operator, sha256: "`+hex.EncodeToString(sum[:])+`"}
`)
	env := prodEnv(srv, sites)
	env["VISITORD_TRUSTED_PROXIES"] = "127.0.0.1/32"
	env["VISITORD_TRACK_TIMEOUT"] = "150ms"
	return env
}

// apiClient calls one running service as a widget or an operator would.
type apiClient struct {
	base   string
	c      *http.Client
	blocks atomic.Uint32 // the last X-Forwarded-For /24 handed out
}

func newAPIClient(addr string) *apiClient {
	tr := &http.Transport{MaxIdleConns: 128, MaxIdleConnsPerHost: 128, IdleConnTimeout: time.Minute}
	return &apiClient{base: "http://" + addr, c: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
}

// answer is one HTTP exchange: a transport error, or a status and a body.
type answer struct {
	status  int
	header  http.Header
	body    []byte
	err     error
	elapsed time.Duration
}

// code is the error code of an error body, "" for none.
func (a answer) code() string {
	var e struct {
		Error struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	_ = json.Unmarshal(a.body, &e)
	return e.Error.Code
}

func (a answer) String() string {
	if a.err != nil {
		return fmt.Sprintf("error %v after %s", a.err, a.elapsed)
	}
	return fmt.Sprintf("%d %s after %s", a.status, a.body, a.elapsed)
}

// do sends one request from a fresh client /24, so that no per-IP limit binds.
func (a *apiClient) do(method, path, body string, header map[string]string) answer {
	req, err := http.NewRequest(method, a.base+path, strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	n := a.blocks.Add(1)
	req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.7", byte(n>>8), byte(n)))
	req.Header.Set("User-Agent", chromeUA)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := a.c.Do(req)
	if err != nil {
		return answer{err: err, elapsed: time.Since(start)}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: b, err: err, elapsed: time.Since(start)}
}

// grantConsent grants analytics consent as a new visitor; 200 carries the token.
func (a *apiClient) grantConsent() (answer, string) {
	r := a.do(http.MethodPut, "/v1/consent",
		`{"site":"shop","analytics":true,"marketing":false,"policy_version":"`+faultPolicy+`"}`,
		map[string]string{"Origin": faultOrigin})
	var ans struct {
		Token string `json:"token"`
	}
	if r.err == nil && r.status == http.StatusOK {
		_ = json.Unmarshal(r.body, &ans)
	}
	return r, ans.Token
}

// startChat starts a chat as the visitor of token; 201 carries the chat id.
func (a *apiClient) startChat(token string, n int) (answer, string) {
	r := a.do(http.MethodPost, "/v1/chats",
		fmt.Sprintf(`{"site":"shop","url":"%s/help","contact":{"name":"Visitor %d","email":"v%d@mail.example"}}`, faultOrigin, n, n),
		map[string]string{"Origin": faultOrigin, "X-Visitor-Token": token})
	var ans struct {
		ChatID string `json:"chat_id"`
	}
	if r.err == nil && r.status == http.StatusCreated {
		_ = json.Unmarshal(r.body, &ans)
	}
	return r, ans.ChatID
}

// pageview records a page view of the visitor of token.
func (a *apiClient) pageview(token string) answer {
	return a.do(http.MethodPost, "/v1/track", `{"site":"shop","type":"pageview","url":"`+faultOrigin+`/products/1"}`,
		map[string]string{"Origin": faultOrigin, "X-Visitor-Token": token})
}

// tracked reports whether a is a 200 that recorded the page view.
func (a answer) tracked() bool {
	var t trackAnswer
	return a.err == nil && a.status == http.StatusOK && json.Unmarshal(a.body, &t) == nil && t.Tracked
}

// mustGrant grants consent and returns the token, or fails tb.
func mustGrant(tb testing.TB, api *apiClient) string {
	tb.Helper()
	r, token := api.grantConsent()
	if token == "" {
		tb.Fatalf("PUT /v1/consent: %v, want 200 with a token", r)
	}
	return token
}

// consentKeys returns the store keys of the consent choice and the consent
// records of the visitor of token, as env's secrets make them.
func consentKeys(tb testing.TB, env map[string]string, token string) (choice, records string) {
	tb.Helper()
	var secrets [][]byte
	for s := range strings.SplitSeq(env["VISITORD_COOKIE_SECRET"], ",") {
		secrets = append(secrets, []byte(s))
	}
	signer, err := visitor.NewSigner(secrets)
	if err != nil {
		tb.Fatal(err)
	}
	tok, ok := signer.Verify(token, "shop", time.Now())
	if !ok || tok.VisitorID == "" {
		tb.Fatalf("token %q does not verify as an identity of shop", token)
	}
	prefix := "v:{shop:" + mustVisitorKey(tb, env, tok.VisitorID) + "}"
	return prefix + ":c", prefix + ":r"
}

// chatKey is the store key of a chat of shop.
func chatKey(id string) string { return "ch:{shop:" + id + "}" }

// An acknowledged consent or chat survives a graceful Redis restart under load
// (appendonly yes: SHUTDOWN flushes the AOF); during the outage writes answer
// 503 store_unavailable, never 500; the service recovers by itself.
func TestRedisRestartUnderLoadKeepsAcknowledgedWrites(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t, "--appendonly", "yes") // appendfsync everysec, as shipped
	env := faultEnv(t, srv)
	in := start(t, env)
	api := newAPIClient(in.addr)
	viewer := mustGrant(t, api) // a consented visitor whose page views are recorded

	const (
		workers = 8
		// ackedBefore consents acknowledged before Redis stops, and one after
		// it is back, end the load: no fixed run time to wait out.
		ackedBefore = 50
		// Longer than go-redis's dial retries (5 × 100 ms) and command retries,
		// so that requests meet the outage rather than wait it out.
		outage = 2500 * time.Millisecond
	)
	type ack struct {
		id string // consent token or chat id
		at time.Time
	}
	var (
		mu             sync.Mutex
		consents, chat []ack
		statuses       = map[int]int{}
		bad            []string
		n              atomic.Int64
	)
	record := func(what string, r answer, ok int) bool {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case r.err != nil:
			bad = append(bad, what+": "+r.String())
			return false
		case r.status == ok:
		case r.status == http.StatusServiceUnavailable && r.code() == "store_unavailable" && r.header.Get("Retry-After") != "":
		default:
			bad = append(bad, what+": "+r.String())
		}
		statuses[r.status]++
		return r.status == ok
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }() // before serve and Redis stop, also on Fatal
	for range workers {
		wg.Go(func() {
			for ctx.Err() == nil {
				r, token := api.grantConsent()
				if !record("PUT /v1/consent", r, http.StatusOK) {
					continue
				}
				if token == "" {
					record("PUT /v1/consent without a token", answer{status: r.status, body: r.body}, -1)
					continue
				}
				mu.Lock()
				consents = append(consents, ack{token, time.Now()})
				mu.Unlock()
				r, id := api.startChat(token, int(n.Add(1)))
				if record("POST /v1/chats", r, http.StatusCreated) && id != "" {
					mu.Lock()
					chat = append(chat, ack{id, time.Now()})
					mu.Unlock()
				}
			}
		})
	}

	// acked waits until n consents were acknowledged after since.
	acked := func(n int, since time.Time) {
		t.Helper()
		for deadline := time.Now().Add(recoverTimeout); ; time.Sleep(5 * time.Millisecond) {
			mu.Lock()
			got := 0
			for _, a := range consents {
				if a.at.After(since) {
					got++
				}
			}
			mu.Unlock()
			if got >= n {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d consents acknowledged within %s, want %d", got, recoverTimeout, n)
			}
		}
	}
	acked(ackedBefore, time.Time{})
	srv.Stop() // graceful: SIGTERM, Redis writes the AOF and exits
	stopped := time.Now()
	time.Sleep(outage)
	srv.Restart(t)
	restarted := time.Now()
	var first answer
	for {
		if first = api.pageview(viewer); first.tracked() {
			break
		}
		if time.Since(restarted) > recoverTimeout {
			t.Fatalf("no page view recorded within %s of the restart; the last: %v", recoverTimeout, first)
		}
		time.Sleep(5 * time.Millisecond)
	}
	recovery := time.Since(restarted)
	t.Logf("recovery after a graceful Redis restart: first recorded page view %s after Restart returned (Redis down %s)",
		recovery.Round(time.Millisecond), restarted.Sub(stopped).Round(time.Millisecond))
	acked(1, restarted)
	cancel()
	wg.Wait()

	for _, b := range bad {
		t.Errorf("want 200/201 or 503 store_unavailable with Retry-After: %s", b)
	}
	var after int
	for _, a := range consents {
		if a.at.After(restarted) {
			after++
		}
	}
	t.Logf("under load: %d consents and %d chats acknowledged (%d consents after the restart), answers by status %v",
		len(consents), len(chat), after, statuses)
	if statuses[http.StatusServiceUnavailable] == 0 {
		t.Error("no 503 during the outage: the load did not meet it")
	}
	if after == 0 {
		t.Error("no consent acknowledged after the restart")
	}

	// Every acknowledged consent left its choice and its record in Redis.
	rdb := srv.Client(t)
	c := context.Background()
	pipe := rdb.Pipeline()
	type check struct {
		token   string
		choice  *redis.IntCmd
		records *redis.StringSliceCmd
	}
	checks := make([]check, 0, len(consents))
	for _, a := range consents {
		choiceKey, recordsKey := consentKeys(t, env, a.id)
		checks = append(checks, check{a.id, pipe.Exists(c, choiceKey), pipe.ZRange(c, recordsKey, 0, -1)})
	}
	if _, err := pipe.Exec(c); err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	lost := 0
	for _, ch := range checks {
		found := false
		for _, rec := range ch.records.Val() {
			var r struct {
				Analytics     bool   `json:"analytics"`
				PolicyVersion string `json:"policy_version"`
			}
			if json.Unmarshal([]byte(rec), &r) == nil && r.Analytics && r.PolicyVersion == faultPolicy {
				found = true
			}
		}
		if ch.choice.Val() != 1 || !found {
			if lost++; lost <= 5 {
				t.Errorf("acknowledged consent lost: choice %d, records %q", ch.choice.Val(), ch.records.Val())
			}
		}
	}

	// Every acknowledged chat is stored, and the first ones are readable
	// through the operator route (all of them would pass the API key's 600
	// requests a minute).
	stored := rdb.Pipeline()
	exists := make([]*redis.IntCmd, len(chat))
	for i, a := range chat {
		exists[i] = stored.Exists(c, "ch:{shop:"+a.id+"}")
	}
	if _, err := stored.Exec(c); err != nil {
		t.Fatal(err)
	}
	var lostChats atomic.Int64
	for i, e := range exists {
		if e.Val() != 1 {
			if lostChats.Add(1) <= 5 {
				t.Errorf("acknowledged chat %s: not stored", chat[i].id)
			}
		}
	}
	ids := make(chan string)
	var rg sync.WaitGroup
	for range workers {
		rg.Go(func() {
			for id := range ids {
				r := api.do(http.MethodGet, "/v1/sites/shop/chats/"+id, "", map[string]string{"Authorization": "Bearer " + faultAgentKey})
				if r.err != nil || r.status != http.StatusOK {
					if lostChats.Add(1) <= 5 {
						t.Errorf("acknowledged chat %s: %v, want 200", id, r)
					}
				}
			}
		})
	}
	for _, a := range chat[:min(len(chat), 300)] {
		ids <- a.id
	}
	close(ids)
	rg.Wait()
	if lost > 0 || lostChats.Load() > 0 {
		t.Errorf("lost %d of %d acknowledged consents and %d of %d acknowledged chats", lost, len(consents), lostChats.Load(), len(chat))
	}
}

// With Redis gone or hung, a page view answers 503 store_unavailable within
// VISITORD_TRACK_TIMEOUT and /readyz 503 while /healthz stays 200; both
// recover by themselves once Redis is back.
func TestTrackWithRedisDownOrHung(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		fail    func(t *testing.T, srv *redistest.Server)
		recover func(t *testing.T, srv *redistest.Server)
	}{
		{name: "stopped", fail: func(_ *testing.T, srv *redistest.Server) { srv.Stop() }, recover: func(t *testing.T, srv *redistest.Server) { srv.Restart(t) }},
		// A Redis that accepts and never answers (a stalled node, a network
		// partition without a reset) is what the budget is for: a stopped one
		// refuses at once.
		{name: "hung",
			fail: func(t *testing.T, srv *redistest.Server) {
				admin := redis.NewClient(&redis.Options{Addr: srv.Addr(), MaxRetries: -1})
				defer admin.Close()
				if err := admin.Do(context.Background(), "CLIENT", "PAUSE", 3000, "ALL").Err(); err != nil {
					t.Fatal(err)
				}
			},
			recover: func(*testing.T, *redistest.Server) {
				// CLIENT UNPAUSE would itself wait behind the pause: let it lapse.
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := redistest.Start(t, "--appendonly", "yes")
			in := start(t, faultEnv(t, srv))
			api := newAPIClient(in.addr)
			viewer := mustGrant(t, api)
			if r := api.pageview(viewer); !r.tracked() {
				t.Fatalf("page view before the fault: %v", r)
			}
			tt.fail(t, srv)
			r := api.pageview(viewer)
			if r.err != nil || r.status != http.StatusServiceUnavailable || r.code() != "store_unavailable" || r.header.Get("Retry-After") == "" {
				t.Errorf("page view with Redis %s: %v, want 503 store_unavailable with Retry-After", tt.name, r)
			}
			// Generous: the budget is 150 ms; a page view that waits for a
			// socket timeout takes seconds.
			if r.elapsed > time.Second {
				t.Errorf("page view with Redis %s answered after %s; VISITORD_TRACK_TIMEOUT is 150ms", tt.name, r.elapsed)
			}
			if r := api.do(http.MethodGet, "/readyz", "", nil); r.err != nil || r.status != http.StatusServiceUnavailable {
				t.Errorf("/readyz with Redis %s: %v, want 503", tt.name, r)
			}
			if r := api.do(http.MethodGet, "/healthz", "", nil); r.err != nil || r.status != http.StatusOK {
				t.Errorf("/healthz with Redis %s: %v, want 200", tt.name, r)
			}

			tt.recover(t, srv)
			deadline := time.Now().Add(recoverTimeout)
			for r = api.pageview(viewer); !r.tracked(); r = api.pageview(viewer) {
				if time.Now().After(deadline) {
					t.Fatalf("after Redis came back: %v, want 200 tracked", r)
				}
				time.Sleep(10 * time.Millisecond)
			}
			if r := api.do(http.MethodGet, "/readyz", "", nil); r.err != nil || r.status != http.StatusOK {
				t.Errorf("/readyz after Redis came back: %v, want 200", r)
			}
		})
	}
}

// waitReplicas polls until primary counts n online replicas and, if n > 0,
// replica's link to it is up.
func waitReplicas(tb testing.TB, primary, replica *redis.Client, n int) {
	tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(recoverTimeout)
	for {
		p, perr := primary.Info(ctx, "replication").Result()
		ok := perr == nil && strings.Count(p, "state=online") == n && strings.Contains(p, fmt.Sprintf("connected_slaves:%d", n))
		if ok && n > 0 {
			r, rerr := replica.Info(ctx, "replication").Result()
			ok = rerr == nil && strings.Contains(r, "master_link_status:up")
		}
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("primary does not count %d online replicas within %s: %v\n%s", n, recoverTimeout, perr, p)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// With VISITORD_REDIS_MIN_REPLICAS=1 a consent or chat is acknowledged only
// once the replica holds it; without a replica the write answers 503
// store_unavailable after WAIT's timeout.
func TestMinReplicasAcknowledgesOnlyReplicatedWrites(t *testing.T) {
	t.Parallel()
	primary := redistest.Start(t, "--repl-diskless-sync-delay", "0")
	host, port, err := net.SplitHostPort(primary.Addr())
	if err != nil {
		t.Fatal(err)
	}
	replica := redistest.Start(t, "--replicaof", host, port)
	pc, rc := primary.Client(t), replica.Client(t)
	waitReplicas(t, pc, rc, 1)
	env := faultEnv(t, primary)
	env["VISITORD_REDIS_MIN_REPLICAS"] = "1"
	in := start(t, env)
	api := newAPIClient(in.addr)
	ctx := context.Background()

	// Concurrent writers share the service's Redis connections; each answer
	// is checked against the replica at once.
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failures []string
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		failures = append(failures, fmt.Sprintf(format, args...))
	}
	for w := range 8 {
		wg.Go(func() {
			for i := range 10 {
				r, token := api.grantConsent()
				if token == "" {
					fail("PUT /v1/consent: %v, want 200 with a token", r)
					continue
				}
				choice, records := consentKeys(t, env, token)
				if n, err := rc.Exists(ctx, choice, records).Result(); err != nil || n != 2 {
					fail("consent acknowledged, but the replica holds %d of its 2 keys right after the 200 (%v)", n, err)
				}
				r, id := api.startChat(token, w*100+i)
				if id == "" {
					fail("POST /v1/chats: %v, want 201", r)
					continue
				}
				if n, err := rc.Exists(ctx, chatKey(id)).Result(); err != nil || n != 1 {
					fail("chat %s acknowledged, but not on the replica right after the 201 (%v)", id, err)
				}
			}
		})
	}
	wg.Wait()
	for _, f := range failures {
		t.Error(f)
	}

	// No replica: WAIT times out (1 s) and the write is refused.
	token := mustGrant(t, api)
	replica.Stop()
	waitReplicas(t, pc, rc, 0)
	before := countKeys(t, pc, "v:{shop:*}:c")
	r, _ := api.grantConsent()
	if r.err != nil || r.status != http.StatusServiceUnavailable || r.code() != "store_unavailable" {
		t.Errorf("consent without a replica: %v, want 503 store_unavailable", r)
	}
	if r.elapsed > 5*time.Second { // generous: WAIT's timeout is 1 s
		t.Errorf("consent without a replica answered after %s", r.elapsed)
	}
	// Acknowledgement semantics: 503 means "not acknowledged", not "not
	// written". WAIT runs after the write, so the refused consent may already
	// be on the primary (and on a replica that comes back); the widget asks
	// again and a new grant supersedes it. Nothing is rolled back.
	t.Logf("the refused consent answered %d after %s; the primary holds %d consent choices, %d before it (a refused write may stay)",
		r.status, r.elapsed.Round(time.Millisecond), countKeys(t, pc, "v:{shop:*}:c"), before)
	if r, _ := api.startChat(token, 999); r.err != nil || r.status != http.StatusServiceUnavailable || r.code() != "store_unavailable" {
		t.Errorf("chat without a replica: %v, want 503 store_unavailable", r)
	}

	// The replica back: writes are acknowledged again.
	replica.Restart(t)
	waitReplicas(t, pc, rc, 1)
	token = mustGrant(t, api)
	choice, _ := consentKeys(t, env, token)
	if n, err := rc.Exists(ctx, choice).Result(); err != nil || n != 1 {
		t.Errorf("consent after the replica came back is not on it (%v)", err)
	}
}

// countKeys counts the keys that match pattern.
func countKeys(tb testing.TB, c *redis.Client, pattern string) int {
	tb.Helper()
	n := 0
	it := c.Scan(context.Background(), 0, pattern, 1000).Iterator()
	for it.Next(context.Background()) {
		n++
	}
	if err := it.Err(); err != nil {
		tb.Fatal(err)
	}
	return n
}

// traced is one request of the drain test and what the client saw of it.
type traced struct {
	reused    bool // sent on a kept-alive connection
	firstByte bool // the server began to answer
	status    int
	closed    bool // the answer said Connection: close
	err       error
}

// getTraced sends GET path and reads the whole answer.
func getTraced(c *http.Client, url string, header map[string]string) traced {
	var tr traced
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return traced{err: err}
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn:              func(i httptrace.GotConnInfo) { tr.reused = i.Reused },
		GotFirstResponseByte: func() { tr.firstByte = true },
	}))
	resp, err := c.Do(req)
	if err != nil {
		tr.err = err
		return tr
	}
	defer resp.Body.Close()
	tr.status, tr.closed = resp.StatusCode, resp.Close
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		tr.err = fmt.Errorf("reading the body: %w", err)
	}
	return tr
}

// Cancelling serve's context (what SIGTERM does through signal.NotifyContext)
// stops accepting connections at once, lets every accepted request finish with
// a complete answer, and returns nil within the shutdown bound.
func TestShutdownDrainsInFlightRequests(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	in := start(t, faultEnv(t, srv))
	api := newAPIClient(in.addr)
	base := "http://" + in.addr
	operator := map[string]string{"Authorization": "Bearer " + faultAgentKey}

	// A request in flight when the signal comes: its headers are read, its body
	// is still on the way.
	body := `{"site":"shop","analytics":true,"marketing":false,"policy_version":"` + faultPolicy + `"}`
	slow, err := net.Dial("tcp", in.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Close()
	if _, err := fmt.Fprintf(slow, "PUT /v1/consent HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nOrigin: %s\r\nUser-Agent: %s\r\nContent-Length: %d\r\n\r\n%s",
		in.addr, faultOrigin, chromeUA, len(body), body[:10]); err != nil {
		t.Fatal(err)
	}

	// Keep-alive clients in a loop, until their connection is refused.
	var (
		mu        sync.Mutex
		results   []traced
		cancelled atomic.Bool
		wg        sync.WaitGroup
		ok        atomic.Int64
	)
	stopClients := make(chan struct{})
	defer func() {
		close(stopClients)
		wg.Wait()
	}()
	for w := range 16 {
		wg.Go(func() {
			path, header := "/readyz", map[string]string(nil)
			if w%2 == 1 {
				path, header = "/v1/sites/shop/stats", operator
			}
			for {
				select {
				case <-stopClients:
					return
				default:
				}
				r := getTraced(api.c, base+path, header)
				if r.err == nil {
					ok.Add(1)
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
				if r.err != nil && cancelled.Load() {
					return
				}
			}
		})
	}
	for deadline := time.Now().Add(5 * time.Second); ok.Load() < 200; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("only %d requests answered before the signal", ok.Load())
		}
	}

	cancelled.Store(true)
	signalled := time.Now()
	in.cancel()
	// The listener closes at once: new connections are refused while the
	// accepted ones drain.
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", in.addr, time.Second)
		if errors.Is(err, syscall.ECONNREFUSED) {
			break
		}
		if err == nil {
			c.Close()
		} else if !errors.Is(err, syscall.ECONNRESET) { // reset: queued as the listener closed
			t.Fatalf("dial after the signal: %v, want connection refused", err)
		}
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections 5 s after the signal")
		}
	}
	time.Sleep(200 * time.Millisecond) // the slow request outlives the listener
	if _, err := io.WriteString(slow, body[10:]); err != nil {
		t.Fatalf("finishing the in-flight request's body: %v", err)
	}
	if err := slow.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	if err != nil {
		t.Fatalf("the in-flight request got no answer: %v", err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	var consent struct {
		Token string `json:"token"`
	}
	if err != nil || resp.StatusCode != http.StatusOK || json.Unmarshal(got, &consent) != nil || consent.Token == "" {
		t.Errorf("the in-flight consent: %d %s (%v), want a complete 200 with a token", resp.StatusCode, got, err)
	}
	if !resp.Close {
		t.Error("an answer sent while draining does not say Connection: close")
	}

	if err := in.stop(t); err != nil {
		t.Fatalf("serve after the signal = %v, want nil", err)
	}
	if took := time.Since(signalled); took > shutdownTimeout {
		t.Errorf("serve returned %s after the signal, beyond the %s bound", took, shutdownTimeout)
	}
	if c, err := net.DialTimeout("tcp", in.addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s accepts connections after serve returned", in.addr)
	}
	close(stopClients)
	wg.Wait()
	stopClients = make(chan struct{}) // for the deferred close

	// Every request the server began to answer was answered whole with 200.
	// A request that failed before any byte came back was never accepted: a
	// dial refused once the listener closed, or a connection that sat in the
	// kernel's accept queue when it did (reset, never seen by the server). A
	// GET sent on a kept-alive connection that the server closed as idle is
	// retried by the transport, so it ends as a refused dial too.
	var drained, refused, unaccepted int
	for _, r := range results {
		switch {
		case r.err == nil && r.status == http.StatusOK:
			if r.closed {
				drained++
			}
		case r.err == nil:
			t.Errorf("answer %d, want 200", r.status)
		case r.firstByte:
			t.Errorf("an accepted request's answer broke off: %v", r.err)
		case errors.Is(r.err, syscall.ECONNREFUSED):
			refused++
		case !r.reused && (errors.Is(r.err, syscall.ECONNRESET) || errors.Is(r.err, io.EOF)):
			unaccepted++
		default:
			t.Errorf("a request failed on a kept-alive connection (reused %v): %v", r.reused, r.err)
		}
	}
	t.Logf("%d requests: %d answered with Connection: close while draining, %d refused, %d reset in the accept queue",
		len(results), drained, refused, unaccepted)
}

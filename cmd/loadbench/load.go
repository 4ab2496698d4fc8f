package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// corpus is DESIGN.md's load corpus: 10k visitors, 30% of page views by
// returning visitors (who send their token), URLs of 40–120 bytes, titles of
// 20–80, 2k distinct User-Agents (3% bots), 5% DNT.
type corpus struct {
	bodies   [][]byte
	uas      []string
	ips      []string
	visitors int
	tokens   []atomic.Pointer[string]
	// returning is the percentage of page views by returning visitors (30).
	returning int
}

func newCorpus(visitors, distinctUAs int) *corpus {
	rng := rand.New(rand.NewPCG(7, 11))
	word := func(min, max int) string {
		n := min + rng.IntN(max-min+1)
		b := make([]byte, n)
		for i := range b {
			b[i] = "abcdefghijklmnopqrstuvwxyz-/"[rng.IntN(28)]
		}
		return string(b)
	}
	c := &corpus{visitors: visitors, tokens: make([]atomic.Pointer[string], visitors), returning: 30}
	for i := range distinctUAs {
		if i%33 == 0 {
			c.uas = append(c.uas, fmt.Sprintf("Mozilla/5.0 (compatible; Crawler%d/2.1; +http://crawler.example/bot.html)", i))
			continue
		}
		c.uas = append(c.uas, fmt.Sprintf("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%d.0.%d.0 Safari/537.36", 90+i%40, i))
	}
	// Each visitor has an address of its own, sent in X-Forwarded-For from the
	// trusted loopback peer, so the per-IP page-view limit sees many visitors.
	for v := range visitors {
		c.ips = append(c.ips, fmt.Sprintf("100.%d.%d.1", 64+v>>8&63, v&255))
	}
	for range 8192 {
		// "https://bench.example/" is 22 bytes; the path makes the URL 40–120 bytes.
		url := "https://bench.example/" + word(18, 98)
		b, _ := json.Marshal(map[string]string{"site": "bench", "type": "pageview", "url": url, "title": word(20, 80),
			"referrer": "https://www.search.example/"})
		c.bodies = append(c.bodies, b)
	}
	return c
}

// requester builds the requests of a load: the corpus or new visitors. The
// int is the corpus visitor whose token the response carries, or -1.
type requester interface {
	request(target string, rng *rand.Rand) (*http.Request, int)
	// keep stores the token a response gave visitor v.
	keep(v int, token string)
	// forget drops the tokens kept: the bench wiped the data they name.
	forget()
}

func (c *corpus) keep(v int, token string) { c.tokens[v].Store(&token) }

func (c *corpus) forget() {
	for i := range c.tokens {
		c.tokens[i].Store(nil)
	}
}

func (n newVisitors) keep(int, string) {}

func (n newVisitors) forget() {}

// request builds the i-th request of the corpus for target.
func (c *corpus) request(target string, rng *rand.Rand) (*http.Request, int) {
	body := c.bodies[rng.IntN(len(c.bodies))]
	r, _ := http.NewRequest(http.MethodPost, target+"/v1/track", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	v := rng.IntN(c.visitors)
	r.Header.Set("User-Agent", c.uas[v%len(c.uas)])
	r.Header.Set("X-Forwarded-For", c.ips[v])
	if rng.IntN(100) < 5 {
		r.Header.Set("DNT", "1")
	}
	t := c.tokens[v].Load()
	if rng.IntN(100) < c.returning && t != nil {
		r.Header.Set("X-Visitor-Token", *t)
		return r, -1
	}
	// The first token a visitor is given is the one it returns with: the
	// generator reads no further answer of the visitor's, so that its own CPU
	// per request stays near the floor's, whose answers it never reads.
	if t != nil {
		return r, -1
	}
	return r, v
}

// newVisitors is the load of a new visitor on every request: no token, a
// random address (so the per-IP limit never binds), a browser User-Agent of
// the corpus, no DNT.
type newVisitors struct {
	c *corpus
}

func (n newVisitors) request(target string, rng *rand.Rand) (*http.Request, int) {
	body := n.c.bodies[rng.IntN(len(n.c.bodies))]
	r, _ := http.NewRequest(http.MethodPost, target+"/v1/track", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	ua := rng.IntN(len(n.c.uas))
	if ua%33 == 0 { // a bot of the corpus
		ua++
	}
	r.Header.Set("User-Agent", n.c.uas[ua%len(n.c.uas)])
	a := rng.Uint32()
	r.Header.Set("X-Forwarded-For", fmt.Sprintf("100.%d.%d.%d", 64+a>>16&63, a>>8&255, 1+a&127))
	return r, -1
}

// result is one run against one target.
type result struct {
	rps      float64
	p50, p99 time.Duration
	errors   int
	cost     costs
}

// load sends the requests of c to target from conns connections: warmup
// unmeasured, then duration measured. snap is read at each end of the measured
// window, given the count of responses so far; the window's cost per request
// comes from the two samples.
func load(ctx context.Context, target string, c requester, conns int, warmup, duration time.Duration, snap func(responses func() int64) (sample, error)) (result, error) {
	u, err := url.Parse(target)
	if err != nil {
		return result{}, err
	}
	var measuring atomic.Bool
	var responses atomic.Int64
	var wg sync.WaitGroup
	lat := make([][]time.Duration, conns)
	errs := make([]int, conns)
	stop := make(chan struct{})
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
			lat[w] = make([]time.Duration, 0, 1<<16)
			conn := newHTTPConn(u.Host, 10*time.Second)
			defer conn.close()
			for {
				select {
				case <-stop:
					return
				case <-ctx.Done():
					return
				default:
				}
				req, v := c.request(target, rng)
				start := time.Now()
				status, b, err := conn.do(req)
				if err != nil {
					if measuring.Load() {
						errs[w]++
					}
					continue
				}
				elapsed := time.Since(start)
				responses.Add(1)
				if status >= 300 {
					if measuring.Load() {
						errs[w]++
					}
					continue
				}
				if v >= 0 {
					if tok := tokenOf(b); tok != "" {
						c.keep(v, tok)
					}
				}
				if measuring.Load() {
					lat[w] = append(lat[w], elapsed)
				}
			}
		}()
	}
	time.Sleep(warmup)
	before, errBefore := snap(responses.Load)
	measuring.Store(true)
	start := time.Now()
	time.Sleep(duration)
	measuring.Store(false)
	elapsed := time.Since(start)
	after, errAfter := snap(responses.Load)
	close(stop)
	wg.Wait()
	if err := cmp.Or(errBefore, errAfter); err != nil {
		return result{}, err
	}
	var all []time.Duration
	r := result{cost: costsBetween(before, after)}
	for w := range conns {
		all = append(all, lat[w]...)
		r.errors += errs[w]
	}
	if len(all) == 0 {
		return r, nil
	}
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	r.rps = float64(len(all)) / elapsed.Seconds()
	r.p50 = all[len(all)/2]
	r.p99 = all[len(all)*99/100]
	return r, nil
}

// tokenOf is the identity a response carries: visitord's JSON token. The
// body visitord writes ({"tracked":true,"token":"…"}, a token of base64url and
// dots) is read by a scan, so that the generator's own CPU per request stays
// near the floor's, whose identity it never reads; any other body by
// encoding/json.
func tokenOf(body []byte) string {
	if _, rest, ok := bytes.Cut(body, []byte(`"token":"`)); ok {
		if tok, _, ok := bytes.Cut(rest, []byte(`"`)); ok && bytes.IndexByte(tok, '\\') < 0 {
			return string(tok)
		}
	}
	var m struct {
		Token string `json:"token"`
	}
	if len(body) > 0 && json.Unmarshal(body, &m) == nil && m.Token != "" {
		return m.Token
	}
	return ""
}

// profileUnderLoad records a 10 s CPU profile of visitord (from its metrics
// listener, metrics) while 64 connections load target.
func profileUnderLoad(ctx context.Context, target, metrics string, c requester, path string) error {
	done := make(chan result)
	noSample := func(func() int64) (sample, error) { return sample{}, nil }
	go func() { r, _ := load(ctx, target, c, 64, time.Second, 12*time.Second, noSample); done <- r }()
	time.Sleep(1500 * time.Millisecond)
	res, err := http.Get(metrics + "/debug/pprof/profile?seconds=10")
	if err != nil {
		<-done
		return fmt.Errorf("profile: %w", err)
	}
	defer res.Body.Close()
	f, err := os.Create(path)
	if err != nil {
		<-done
		return err
	}
	_, err = io.Copy(f, res.Body)
	f.Close()
	<-done
	return err
}

// measureMemory measures Redis memory (INFO used_memory, summed over the
// nodes of a Cluster) per visitor and per further page view (sendPhases).
func measureMemory(ctx context.Context, rs redisNodes, target string, n int) (memory, error) {
	if err := rs.flush(); err != nil {
		return memory{}, err
	}
	p, err := sendPhases(ctx, target, 10000, n, rs.usedMemory)
	if err != nil {
		return memory{}, fmt.Errorf("memory: %w", err)
	}
	return memory{perVisitor: p.perVisitor, perView: p.perView, refused: p.refused, measured: true}, nil
}

// phases is how much a reading grew per page view in each phase of
// sendPhases.
type phases struct {
	perVisitor, perView float64
	refused             int // page views answered 503 (or of visitors refused so), left out
}

// sendPhases sends two phases of page views to target and reads read before
// and after each: first visitors new visitors with one page view each, then n
// page views by those visitors with their tokens (their sessions stay open).
// The floor knows no returning visitor: each of its page views is a new record.
func sendPhases(ctx context.Context, target string, visitors, n int, read func() (int64, error)) (phases, error) {
	base, err := read()
	if err != nil {
		return phases{}, err
	}
	ua := "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36"
	c := newCorpus(visitors, 1)
	tokens := make([]string, visitors)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	// send stores one page view; a 503 (the store did not answer in time on a
	// busy machine) is a page view not stored, counted and left out.
	send := func(body []byte, token string) (string, bool, error) {
		r, _ := http.NewRequestWithContext(ctx, http.MethodPost, target+"/v1/track", bytes.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("User-Agent", ua)
		r.Header.Set("X-Forwarded-For", c.ips[rand.IntN(visitors)])
		if token != "" {
			r.Header.Set("X-Visitor-Token", token)
		}
		res, err := client.Do(r)
		if err != nil {
			return "", false, err
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode == http.StatusServiceUnavailable {
			return "", false, nil
		}
		if res.StatusCode < 200 || res.StatusCode >= 300 {
			return "", false, fmt.Errorf("status %d: %s", res.StatusCode, b)
		}
		return tokenOf(b), true, nil
	}
	// parallel runs f for 0..count-1 from 16 connections and returns how many
	// page views were stored.
	parallel := func(count int, f func(i int) (bool, error)) (int, error) {
		var wg sync.WaitGroup
		var first atomic.Value
		var stored, next atomic.Int64
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					i := int(next.Add(1)) - 1
					if i >= count || first.Load() != nil {
						return
					}
					ok, err := f(i)
					if err != nil {
						first.CompareAndSwap(nil, err)
					}
					if ok {
						stored.Add(1)
					}
				}
			}()
		}
		wg.Wait()
		if err, _ := first.Load().(error); err != nil {
			return 0, err
		}
		return int(stored.Load()), nil
	}
	newOnes, err := parallel(visitors, func(i int) (bool, error) {
		t, ok, err := send(c.bodies[i%len(c.bodies)], "")
		tokens[i] = t
		return ok, err
	})
	if err != nil {
		return phases{}, err
	}
	afterVisitors, err := read()
	if err != nil {
		return phases{}, err
	}
	// The floor gives no token: each of its page views is a new record.
	withTokens := slices.ContainsFunc(tokens, func(t string) bool { return t != "" })
	further, err := parallel(n, func(i int) (bool, error) {
		token := tokens[i%visitors]
		if withTokens && token == "" { // its first page view was refused: not a returning visitor
			return false, nil
		}
		_, ok, err := send(c.bodies[(i*7)%len(c.bodies)], token)
		return ok, err
	})
	if err != nil {
		return phases{}, err
	}
	after, err := read()
	if err != nil {
		return phases{}, err
	}
	if newOnes == 0 || further == 0 {
		return phases{}, fmt.Errorf("%d of %d new visitors and %d of %d further page views stored", newOnes, visitors, further, n)
	}
	return phases{
		perVisitor: float64(afterVisitors-base) / float64(newOnes),
		perView:    float64(after-afterVisitors) / float64(further),
		refused:    visitors - newOnes + n - further,
	}, nil
}

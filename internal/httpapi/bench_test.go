package httpapi

import (
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// corpus is a page-view load shaped as DESIGN.md's Performance section says:
// URLs of 40–120 bytes, titles of 20–80, many User-Agents, some DNT, some bots.
type corpus struct {
	bodies []string
	uas    []string
	dnt    []bool
}

func newCorpus(n, distinctUAs int) corpus {
	rng := rand.New(rand.NewPCG(1, 2))
	word := func(min, max int) string {
		l := min + rng.IntN(max-min+1)
		b := make([]byte, l)
		for i := range b {
			b[i] = "abcdefghijklmnopqrstuvwxyz-"[rng.IntN(27)]
		}
		return string(b)
	}
	c := corpus{}
	for i := range distinctUAs {
		if i%33 == 0 { // about 3% bots
			c.uas = append(c.uas, fmt.Sprintf("Mozilla/5.0 (compatible; Crawler%d/2.1; +http://crawler.example/bot.html)", i))
			continue
		}
		c.uas = append(c.uas, fmt.Sprintf("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/%d.0.%d.0 Safari/537.36", 90+i%40, i))
	}
	for range n {
		url := shopOrigin + "/" + word(20, 100)
		if rng.IntN(4) == 0 {
			url += "?utm_source=" + word(4, 10)
		}
		c.bodies = append(c.bodies, fmt.Sprintf(`{"site":"shop","type":"pageview","url":%q,"title":%q,"referrer":"https://www.search.example/q"}`, url, word(20, 80)))
		c.dnt = append(c.dnt, rng.IntN(20) == 0)
	}
	return c
}

// BenchmarkTrackPageview measures the page-view handler end to end against a
// real redis-server: a mix of first and returning visitors (30% returning),
// 5% DNT and about 3% bots.
func BenchmarkTrackPageview(b *testing.B) {
	e := newEnv(b)
	h := e.srv.Config.Handler
	c := newCorpus(4096, 2000)
	tokens := make([]string, 0, 10000)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		r := httptest.NewRequest(http.MethodPost, "/v1/track", strings.NewReader(c.bodies[i%len(c.bodies)]))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("Origin", shopOrigin)
		r.Header.Set("User-Agent", c.uas[i%len(c.uas)])
		if c.dnt[i%len(c.dnt)] {
			r.Header.Set("DNT", "1")
		}
		returning := len(tokens) > 0 && i%10 < 3
		if returning {
			r.Header.Set(tokenHeader, tokens[i%len(tokens)])
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
		if !returning && len(tokens) < cap(tokens) {
			if ck := w.Result().Cookies(); len(ck) > 0 {
				tokens = append(tokens, ck[0].Value)
			}
		}
	}
}

// BenchmarkTrackReturning measures a returning visitor's page view: it must
// cost no more than a first one.
func BenchmarkTrackReturning(b *testing.B) {
	e := newEnv(b)
	benchReturning(b, e.srv.Config.Handler, e.mustTrack("shop", shopOrigin+"/", ""), nil)
}

// benchReturning sends the page views of a returning visitor with token to h,
// calling each (when not nil) before every one.
func benchReturning(b *testing.B, h http.Handler, token string, each func()) {
	body := `{"site":"shop","type":"pageview","url":"https://shop.example/products/blue-mug-with-a-long-name?utm_source=mail","title":"Blue mug with a long name"}`
	b.ReportAllocs()
	for b.Loop() {
		if each != nil {
			each()
		}
		r := httptest.NewRequest(http.MethodPost, "/v1/track", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("User-Agent", chromeUA)
		r.Header.Set(tokenHeader, token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkTrackDNT measures a refused page view: one counter increment.
func BenchmarkTrackDNT(b *testing.B) {
	e := newEnv(b)
	h := e.srv.Config.Handler
	body := `{"site":"shop","type":"pageview","url":"https://shop.example/products/blue-mug"}`
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/track", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("User-Agent", chromeUA)
		r.Header.Set("DNT", "1")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
	}
}

// BenchmarkTrackFirst measures a first visit: a new identity and session.
func BenchmarkTrackFirst(b *testing.B) {
	e := newEnv(b)
	h := e.srv.Config.Handler
	body := `{"site":"shop","type":"pageview","url":"https://shop.example/products/blue-mug-with-a-long-name?utm_source=mail","title":"Blue mug with a long name"}`
	b.ReportAllocs()
	for b.Loop() {
		r := httptest.NewRequest(http.MethodPost, "/v1/track", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("User-Agent", chromeUA)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

// BenchmarkChatStart measures a chat start of a returning visitor: contacts
// sealed, blind index, chat index, all in one pipeline after one read.
func BenchmarkChatStart(b *testing.B) {
	e := newEnv(b)
	h := e.srv.Config.Handler
	var token string
	body := `{"site":"shop","contact":{"name":"Ada Lovelace","email":"ada@math.example","phone":"+44 20 7946 0000"},"marketing_opt_in":true,"url":"https://shop.example/contact"}`
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		// A visitor has a few chats, not thousands: a new one every fourth chat.
		if i%4 == 0 {
			b.StopTimer()
			token = e.mustTrack("shop", shopOrigin+"/", "")
			b.StartTimer()
		}
		r := httptest.NewRequest(http.MethodPost, "/v1/chats", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		r.Header.Set("User-Agent", chromeUA)
		r.Header.Set(tokenHeader, token)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusCreated {
			b.Fatalf("status %d: %s", w.Code, w.Body)
		}
	}
}

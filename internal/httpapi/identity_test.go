package httpapi

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// identityProfileFields is every field of a profile hash and its current
// session's hash as env.current merges them: those keys.go documents. A stored
// profile or session holds no other: no latitude or longitude.
var identityProfileFields = []string{
	"vid", "fs", "br", "bv", "os", "mob", "co", "rg", "ci", "tz", "ip",
	"sid", "ss", "sl", "ps", "pc", "np", "ns", "rf", "w", "ix", "cu", "ct",
}

// identityPayload decodes a token's payload into its |-separated fields:
// version, kind, site, key id, issued-at, expiry, visitor id, ...
func identityPayload(tb testing.TB, token string) []string {
	tb.Helper()
	payload, _, ok := strings.Cut(token, ".")
	if !ok {
		tb.Fatalf("token %q is not payload.signature", token)
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		tb.Fatalf("token payload is not base64url: %v", err)
	}
	f := strings.Split(string(b), "|")
	if len(f) < 7 {
		tb.Fatalf("token payload %q has %d fields", b, len(f))
	}
	return f
}

// identityTamper changes one decoded byte of a token's payload (part 0) or
// signature (part 1) and re-encodes it, so the token stays well-formed.
func identityTamper(tb testing.TB, token string, part, index int) string {
	tb.Helper()
	parts := strings.Split(token, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[part])
	if err != nil {
		tb.Fatal(err)
	}
	if part == 0 {
		// A visitor id character swapped for another base64url one.
		if b[index] == 'A' {
			b[index] = 'B'
		} else {
			b[index] = 'A'
		}
	} else {
		b[index] ^= 0xff
	}
	parts[part] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

// identityVisitorIDOffset is where the visitor id starts in a decoded payload.
func identityVisitorIDOffset(tb testing.TB, token string) int {
	tb.Helper()
	return len(strings.Join(identityPayload(tb, token)[:6], "|")) + 1
}

// identityTrack sends a page view of site carrying token in the cookie (when
// viaCookie) or in X-Visitor-Token.
func identityTrack(e *env, site, pageURL, token string, viaCookie bool, headers map[string]string) resp {
	e.t.Helper()
	if !viaCookie {
		return e.pageview(site, pageURL, token, headers)
	}
	b, _ := json.Marshal(map[string]string{"site": site, "type": "pageview", "url": pageURL, "title": "A page"})
	return e.do(req{method: http.MethodPost, path: "/v1/track", body: string(b), headers: headers,
		cookies: []*http.Cookie{{Name: cookieName(site), Value: token}}})
}

// identityConsent puts a consent choice of site, with token if not empty.
func identityConsent(e *env, site, policy string, analytics bool, token string, headers map[string]string) resp {
	e.t.Helper()
	b, _ := json.Marshal(map[string]any{"site": site, "analytics": analytics, "marketing": false, "policy_version": policy})
	h := map[string]string{}
	for k, v := range headers {
		h[k] = v
	}
	if token != "" {
		h[tokenHeader] = token
	}
	r := e.do(req{method: http.MethodPut, path: "/v1/consent", body: string(b), headers: h})
	if r.status != http.StatusOK {
		e.t.Fatalf("PUT /v1/consent: status %d: %s", r.status, r.body)
	}
	return r
}

// identityKeysOf lists the keys whose name starts with s.
func identityKeysOf(e *env, s string) []string {
	e.t.Helper()
	var out []string
	for _, k := range e.keys() {
		if strings.HasPrefix(k, s) {
			out = append(out, k)
		}
	}
	return out
}

// identitySetCookie is the raw Set-Cookie line of the named cookie, "" if none.
func identitySetCookie(r resp, name string) string {
	for _, v := range r.header.Values("Set-Cookie") {
		if strings.HasPrefix(v, name+"=") {
			return v
		}
	}
	return ""
}

func TestIdentityIssuedOnFirstPageView(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	r := e.pageview("shop", shopOrigin+"/", "", map[string]string{"Origin": shopOrigin})
	m := r.json(t)
	token, _ := m["token"].(string)
	if r.status != http.StatusOK || m["tracked"] != true || token == "" {
		t.Fatalf("status %d, body %s", r.status, r.body)
	}
	if ck := r.cookie("vt_shop"); ck == nil || ck.Value != token {
		t.Fatalf("vt_shop cookie %+v, want the token of the body", ck)
	}

	f := identityPayload(t, token)
	now := e.clock.Now()
	if got, want := f[1], "id"; got != want {
		t.Errorf("kind = %q, want %q", got, want)
	}
	if got, want := f[2], "shop"; got != want {
		t.Errorf("site = %q, want %q", got, want)
	}
	if f[3] == "" {
		t.Error("key id is empty")
	}
	if got, want := f[4], strconv.FormatInt(now.Unix(), 10); got != want {
		t.Errorf("issued at = %s, want %s", got, want)
	}
	if got, want := f[5], strconv.FormatInt(now.Add(visitor.MaxCookieLifetime).Unix(), 10); got != want {
		t.Errorf("expiry = %s, want %s (issue + 395 days)", got, want)
	}
	id := f[6]
	raw, err := base64.RawURLEncoding.DecodeString(id)
	if err != nil || len(raw)*8 < 128 {
		t.Errorf("visitor id %q: %d bits (%v), want at least 128 random bits", id, len(raw)*8, err)
	}
	if got := e.current("shop", id)["vid"]; got != id {
		t.Errorf("profile vid = %q, want %q", got, id)
	}

	seen := map[string]bool{id: true}
	for range 20 {
		other := e.visitorID("shop", e.mustTrack("shop", shopOrigin+"/", ""))
		if seen[other] {
			t.Fatalf("visitor id %q issued twice", other)
		}
		seen[other] = true
	}
}

func TestIdentityKeptByReturningVisitor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		viaCookie bool
	}{
		{name: "x-visitor-token header", viaCookie: false},
		{name: "vt_shop cookie", viaCookie: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			first := e.pageview("shop", shopOrigin+"/", "", nil)
			token := first.json(t)["token"].(string)
			issued := first.cookie("vt_shop")
			if issued == nil {
				t.Fatal("first visit set no cookie")
			}
			id := e.visitorID("shop", token)

			for i, gap := range []time.Duration{time.Minute, 2 * time.Hour, 30 * 24 * time.Hour} {
				e.clock.Advance(gap)
				r := identityTrack(e, "shop", shopOrigin+"/again", token, tt.viaCookie, nil)
				m := r.json(t)
				if r.status != http.StatusOK || m["tracked"] != true {
					t.Fatalf("visit %d: status %d, body %s", i+2, r.status, r.body)
				}
				if got := m["token"]; got != token {
					t.Errorf("visit %d: token %q, want the one issued first (its expiry is fixed)", i+2, got)
				}
				if got := e.visitorID("shop", m["token"].(string)); got != id {
					t.Errorf("visit %d: visitor id %q, want %q", i+2, got, id)
				}
				if sc := identitySetCookie(r, "vt_shop"); sc != "" {
					t.Errorf("visit %d: Set-Cookie %q; the cookie's lifetime is fixed at issue", i+2, sc)
				}
			}
			if got, want := e.current("shop", id)["ns"], "3"; got != want {
				t.Errorf("sessions of the visitor = %s, want %s", got, want)
			}
			if got := len(identityKeysOf(e, "v:{shop:")); got != 2+3*2 {
				t.Errorf("%d visitor keys on shop, want one visitor's profile, session index and 3 sessions (list and hash): %q",
					got, identityKeysOf(e, "v:{shop:"))
			}
		})
	}
}

func TestIdentitySurvivesSecretRotation(t *testing.T) {
	t.Parallel()
	oldSecret := bytes.Repeat([]byte("o"), 32)
	newSecret := bytes.Repeat([]byte("n"), 32)
	before := newEnv(t, func(o *envOptions) { o.secrets = [][]byte{oldSecret} })
	token := before.mustTrack("shop", shopOrigin+"/", "")
	id := before.visitorID("shop", token)
	oldKeyID := identityPayload(t, token)[3]

	// A new deployment on the same Redis signs with the new secret and still
	// verifies with the old one.
	after := newEnvOn(t, before.redis, envOptions{
		sites: testSites, secrets: [][]byte{newSecret, oldSecret}, trackTimeout: 2 * time.Second,
	})
	r := after.pageview("shop", shopOrigin+"/cart", token, nil)
	m := r.json(t)
	if r.status != http.StatusOK || m["tracked"] != true || m["token"] != token {
		t.Fatalf("returning visit after rotation: status %d, body %s", r.status, r.body)
	}
	if r.cookie("vt_shop") != nil {
		t.Error("a returning visitor got a new cookie after rotation")
	}
	if got := after.current("shop", id)["np"]; got != "2" {
		t.Errorf("pages of the visitor = %s, want 2", got)
	}

	fresh := after.mustTrack("shop", shopOrigin+"/", "")
	if got := identityPayload(t, fresh)[3]; got == oldKeyID {
		t.Errorf("new token signed under the old key id %q", got)
	}
	if _, ok := after.signer.Verify(fresh, "shop", after.clock.Now()); !ok {
		t.Error("token of the rotated deployment does not verify")
	}
	if _, ok := before.signer.Verify(fresh, "shop", after.clock.Now()); ok {
		t.Error("the new token verifies without the new secret: it was not signed with it")
	}
}

func TestIdentityForeignTokenMakesANewVisitor(t *testing.T) {
	t.Parallel()
	unknown, err := visitor.NewSigner([][]byte{bytes.Repeat([]byte("u"), 32)})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		site      string // where the token is presented
		viaCookie bool
		// token returns the token presented and the id of the visitor it was
		// made from ("" when none).
		token func(t *testing.T, e *env) (string, string)
	}{
		{
			name: "payload byte flipped", site: "shop",
			token: func(t *testing.T, e *env) (string, string) {
				tok := e.mustTrack("shop", shopOrigin+"/", "")
				return identityTamper(t, tok, 0, identityVisitorIDOffset(t, tok)), e.visitorID("shop", tok)
			},
		},
		{
			name: "signature byte flipped", site: "shop",
			token: func(t *testing.T, e *env) (string, string) {
				tok := e.mustTrack("shop", shopOrigin+"/", "")
				return identityTamper(t, tok, 1, 5), e.visitorID("shop", tok)
			},
		},
		{
			name: "signature byte flipped in the cookie", site: "shop", viaCookie: true,
			token: func(t *testing.T, e *env) (string, string) {
				tok := e.mustTrack("shop", shopOrigin+"/", "")
				return identityTamper(t, tok, 1, 0), e.visitorID("shop", tok)
			},
		},
		{
			name: "expired", site: "shop",
			token: func(t *testing.T, e *env) (string, string) {
				tok := e.mustTrack("shop", shopOrigin+"/", "")
				id := e.visitorID("shop", tok)
				e.clock.Advance(visitor.MaxCookieLifetime + time.Second)
				return tok, id
			},
		},
		{
			name: "expired in the cookie", site: "shop", viaCookie: true,
			token: func(t *testing.T, e *env) (string, string) {
				tok := e.mustTrack("shop", shopOrigin+"/", "")
				id := e.visitorID("shop", tok)
				e.clock.Advance(visitor.MaxCookieLifetime)
				return tok, id
			},
		},
		{
			name: "token of another site", site: "blog",
			token: func(t *testing.T, e *env) (string, string) {
				tok := e.mustTrack("shop", shopOrigin+"/", "")
				return tok, e.visitorID("shop", tok)
			},
		},
		{
			name: "real visitor id signed with an unknown secret", site: "shop",
			token: func(t *testing.T, e *env) (string, string) {
				id := e.visitorID("shop", e.mustTrack("shop", shopOrigin+"/", ""))
				now := e.clock.Now()
				return unknown.Sign(visitor.Token{Kind: visitor.KindID, Site: "shop", IssuedAt: now,
					Expires: now.Add(time.Hour), VisitorID: id}), id
			},
		},
		{
			name: "garbage", site: "shop",
			token: func(t *testing.T, e *env) (string, string) { return "not-a-token", "" },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			presented, oldID := tt.token(t, e)
			origin := shopOrigin
			if tt.site == "blog" {
				origin = blogOrigin
			}
			var oldProfile map[string]string
			if oldID != "" {
				oldProfile = e.current("shop", oldID)
			}

			r := identityTrack(e, tt.site, origin+"/next", presented, tt.viaCookie, map[string]string{"Origin": origin})
			m := r.json(t)
			if r.status != http.StatusOK || m["tracked"] != true {
				t.Fatalf("status %d, body %s; a foreign token is a new visitor, never an error", r.status, r.body)
			}
			token, _ := m["token"].(string)
			if token == "" || token == presented {
				t.Fatalf("token %q; want a new one", token)
			}
			if ck := r.cookie(cookieName(tt.site)); ck == nil || ck.Value != token {
				t.Errorf("%s cookie %+v, want the new token", cookieName(tt.site), ck)
			}
			id := e.visitorID(tt.site, token)
			if id == oldID {
				t.Fatalf("the foreign token's visitor %s was kept", id)
			}
			p := e.current(tt.site, id)
			if p["np"] != "1" || p["ns"] != "1" {
				t.Errorf("new visitor's profile %v, want its first page of its first session", p)
			}
			if oldID != "" {
				if got := e.current("shop", oldID); !maps.Equal(got, oldProfile) {
					t.Errorf("profile of the token's visitor changed:\n\tbefore %v\n\tafter  %v", oldProfile, got)
				}
			}
		})
	}
}

// TestIdentityTwoSitesAreTwoVisitors pins invariant 7: a browser that keeps its
// cookies visits two sites and is two unrelated visitors, whose keys each carry
// their own site's hash tag.
func TestIdentityTwoSitesAreTwoVisitors(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	e.client = &http.Client{Jar: jar}

	ids := map[string]string{}
	for _, v := range []struct{ site, origin string }{
		{"shop", shopOrigin}, {"blog", blogOrigin}, {"shop", shopOrigin}, {"blog", blogOrigin},
	} {
		r := e.pageview(v.site, v.origin+"/", "", map[string]string{"Origin": v.origin})
		m := r.json(t)
		if r.status != http.StatusOK || m["tracked"] != true {
			t.Fatalf("%s: status %d, body %s", v.site, r.status, r.body)
		}
		id := e.visitorID(v.site, m["token"].(string))
		if prev, ok := ids[v.site]; ok && prev != id {
			t.Errorf("%s: visitor %s on the second visit, want %s (the browser kept its cookie)", v.site, id, prev)
		}
		ids[v.site] = id
	}
	shopID, blogID := ids["shop"], ids["blog"]
	if shopID == blogID {
		t.Fatalf("the same visitor id %s on two sites", shopID)
	}
	u, _ := url.Parse(e.srv.URL)
	if n := len(jar.Cookies(u)); n != 2 {
		t.Errorf("the browser holds %d cookies, want vt_shop and vt_blog", n)
	}

	shopKey, blogKey := e.hasher.VisitorKey("shop", shopID), e.hasher.VisitorKey("blog", blogID)
	values := redistest.DumpValues(t, e.rdb)
	for k, v := range values {
		switch {
		case strings.Contains(k, shopKey) && !strings.HasPrefix(k, "v:{shop:"+shopKey+"}"):
			t.Errorf("key %q of the shop visitor does not carry the tag {shop:%s}", k, shopKey)
		case strings.Contains(k, blogKey) && !strings.HasPrefix(k, "v:{blog:"+blogKey+"}"):
			t.Errorf("key %q of the blog visitor does not carry the tag {blog:%s}", k, blogKey)
		}
		if strings.Contains(k, "{blog") {
			for _, s := range []string{shopID, shopKey} {
				if strings.Contains(v, s) {
					t.Errorf("blog key %q holds %q of the shop visitor", k, s)
				}
			}
		}
		if strings.Contains(k, "{shop") {
			for _, s := range []string{blogID, blogKey} {
				if strings.Contains(v, s) {
					t.Errorf("shop key %q holds %q of the blog visitor", k, s)
				}
			}
		}
	}
	if len(identityKeysOf(e, "v:{shop:"+shopKey+"}")) == 0 || len(identityKeysOf(e, "v:{blog:"+blogKey+"}")) == 0 {
		t.Errorf("keys %q: want each visitor's keys under its own site", e.keys())
	}
}

func TestIdentityRefusalTokenTracksNothing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		site     string
		origin   string
		policy   string
		lifetime time.Duration
	}{
		{name: "opt-out site: 12 months", site: "shop", origin: shopOrigin, policy: "2026-11", lifetime: visitor.RefusalLifetimeOptOut},
		{name: "opt-in site: consent_valid_days", site: "optin", origin: "https://optin.example", policy: "v2", lifetime: 30 * 24 * time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t)
			r := identityConsent(e, tt.site, tt.policy, false, "", map[string]string{"Origin": tt.origin})
			token, _ := r.json(t)["token"].(string)
			if token == "" {
				t.Fatalf("a refusal answered no token: %s", r.body)
			}
			f := identityPayload(t, token)
			// Field 6 of a refusal is a random nonce, never a visitor id.
			if tok, ok := e.signer.Verify(token, tt.site, e.clock.Now()); f[1] != "refusal" || f[2] != tt.site || !ok || tok.VisitorID != "" || tok.Nonce != f[6] {
				t.Errorf("refusal payload %q: want kind refusal, site %s and a nonce, no visitor id", f, tt.site)
			}
			iat, _ := strconv.ParseInt(f[4], 10, 64)
			exp, _ := strconv.ParseInt(f[5], 10, 64)
			if got := time.Duration(exp-iat) * time.Second; got != tt.lifetime {
				t.Errorf("refusal token lives %s, want %s", got, tt.lifetime)
			}

			for _, viaCookie := range []bool{false, true} {
				e.clock.Advance(time.Minute)
				r := identityTrack(e, tt.site, tt.origin+"/page", token, viaCookie, map[string]string{"Origin": tt.origin})
				m := r.json(t)
				if r.status != http.StatusOK || m["tracked"] != false || m["reason"] != "no_consent" {
					t.Errorf("cookie %t: status %d, body %s; want no_consent", viaCookie, r.status, r.body)
				}
				if _, ok := m["token"]; ok {
					t.Errorf("cookie %t: a refused page view answered a token", viaCookie)
				}
				if sc := identitySetCookie(r, cookieName(tt.site)); sc != "" && !strings.Contains(sc, "Max-Age=0") {
					t.Errorf("cookie %t: Set-Cookie %q under a refusal", viaCookie, sc)
				}
			}
			if got := identityKeysOf(e, "v:"); len(got) != 0 {
				t.Errorf("keys %q after page views under a refusal token; want none", got)
			}
			if got := e.stats(tt.site)["no_consent"]; got != "2" {
				t.Errorf("no_consent counter = %q, want 2", got)
			}
		})
	}
}

func TestIdentityWithdrawalReplacesIdentityWithRefusal(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := e.mustTrack("shop", shopOrigin+"/", "")
	id := e.visitorID("shop", token)
	r := identityConsent(e, "shop", "2026-11", false, token, nil)
	refusal, _ := r.json(t)["token"].(string)
	if f := identityPayload(t, refusal); f[1] != "refusal" || f[6] == id {
		t.Fatalf("withdrawal answered %q, want a refusal token without the visitor id", f)
	}
	if p := e.current("shop", id); len(p) != 0 {
		t.Errorf("profile %v after the withdrawal, want none", p)
	}
	m := e.pageview("shop", shopOrigin+"/again", refusal, nil).json(t)
	if m["tracked"] != false || m["reason"] != "no_consent" {
		t.Errorf("page view under the refusal token: %v", m)
	}
	if p := e.current("shop", id); len(p) != 0 {
		t.Errorf("profile %v came back under the refusal token", p)
	}
}

func TestIdentityClientIPAndLocation(t *testing.T) {
	t.Parallel()
	trusted := []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	tests := []struct {
		name     string
		proxies  []netip.Prefix
		site     string
		origin   string
		xff      string
		consent  string // policy to grant analytics under first, "" for none
		wantGeo  []string
		wantIP   string
		notFound []string // strings no stored value may hold
	}{
		{
			name: "trusted proxy: location and truncated ip", proxies: trusted,
			site: "shop", origin: shopOrigin, xff: londonIP,
			wantGeo: []string{"GB", "ENG", "London", "Europe/London"}, wantIP: "81.2.69.0/24",
			notFound: []string{londonIP, "51.51", "-0.09"},
		},
		{
			name: "trusted proxy: a spoofed first entry is not believed", proxies: trusted,
			site: "shop", origin: shopOrigin, xff: "2a02:8000:1234::1, " + londonIP,
			wantGeo: []string{"GB", "ENG", "London", "Europe/London"}, wantIP: "81.2.69.0/24",
		},
		{
			name: "trusted proxy: ipv6 truncated to /48", proxies: trusted,
			site: "shop", origin: shopOrigin, xff: "2a02:8000:1234:5678::1",
			wantGeo: []string{"DE", "BE", "Berlin", "Europe/Berlin"}, wantIP: "2a02:8000:1234::/48",
			notFound: []string{"2a02:8000:1234:5678", "52.52", "13.41"},
		},
		{
			name: "untrusted peer: header ignored", proxies: nil,
			site: "shop", origin: shopOrigin, xff: londonIP,
			wantGeo: []string{"", "", "", ""}, wantIP: "127.0.0.0/24",
			notFound: []string{londonIP, "81.2.69", "London"},
		},
		{
			name: "ip full keeps the address", proxies: trusted,
			site: "optin", origin: "https://optin.example", xff: londonIP, consent: "v2",
			wantGeo: []string{"GB", "ENG", "London", "Europe/London"}, wantIP: londonIP,
		},
		{
			name: "ip drop keeps none", proxies: trusted,
			site: "blog", origin: blogOrigin, xff: londonIP,
			wantIP:   "",
			notFound: []string{londonIP, "81.2.69"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, func(o *envOptions) { o.trustedProxies = tt.proxies })
			headers := map[string]string{"Origin": tt.origin, "X-Forwarded-For": tt.xff}
			token := ""
			if tt.consent != "" {
				token = identityConsent(e, tt.site, tt.consent, true, "", headers).json(t)["token"].(string)
			}
			r := e.pageview(tt.site, tt.origin+"/products/42", token, headers)
			m := r.json(t)
			if r.status != http.StatusOK || m["tracked"] != true {
				t.Fatalf("status %d, body %s", r.status, r.body)
			}
			p := e.current(tt.site, e.visitorID(tt.site, m["token"].(string)))
			if tt.wantGeo != nil {
				got := []string{p["co"], p["rg"], p["ci"], p["tz"]}
				if !slices.Equal(got, tt.wantGeo) {
					t.Errorf("location co/rg/ci/tz = %q, want %q", got, tt.wantGeo)
				}
			}
			if got := p["ip"]; got != tt.wantIP {
				t.Errorf("stored ip = %q, want %q", got, tt.wantIP)
			}
			for f := range p {
				if !slices.Contains(identityProfileFields, f) {
					t.Errorf("profile holds field %q beyond keys.go's schema (geolocation is country, region, city, time zone only)", f)
				}
			}
			for k, v := range redistest.DumpValues(t, e.rdb) {
				for _, s := range tt.notFound {
					if strings.Contains(v, s) {
						t.Errorf("key %q holds %q:\n%s", k, s, v)
					}
				}
			}
		})
	}
}

// TestIdentityLogsCarryNoPII pins invariant 8 for logs: after page views with a
// forwarded IP, a token and a URL with a path and query, and the heartbeat,
// leave and error answers around them, no log line holds any of those, and
// access log lines name the route template.
func TestIdentityLogsCarryNoPII(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *envOptions) {
		o.trustedProxies = []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}
	})
	headers := map[string]string{"Origin": shopOrigin, "X-Forwarded-For": londonIP}
	pageURL := shopOrigin + "/products/42?utm_source=newsletter&email=jane%40mail.example"
	first := e.pageview("shop", pageURL, "", headers)
	token, _ := first.json(t)["token"].(string)
	if first.status != http.StatusOK || token == "" {
		t.Fatalf("status %d, body %s", first.status, first.body)
	}
	id := e.visitorID("shop", token)
	e.clock.Advance(10 * time.Second)
	if r := e.pageview("shop", pageURL, token, headers); r.status != http.StatusOK {
		t.Fatalf("returning page view: status %d", r.status)
	}
	if r := e.hit("shop", "heartbeat", token); r.status != http.StatusOK {
		t.Fatalf("heartbeat: status %d", r.status)
	}
	if r := e.hit("shop", "leave", token); r.status != http.StatusOK {
		t.Fatalf("leave: status %d", r.status)
	}
	if r := e.pageview("shop", "https://evil.example/products/42?utm_source=x", token, headers); r.status != http.StatusUnprocessableEntity {
		t.Fatalf("page view of another origin: status %d", r.status)
	}
	if r := e.pageview("shop", pageURL, "", map[string]string{"X-Forwarded-For": londonIP, "DNT": "1"}); r.status != http.StatusOK {
		t.Fatalf("DNT page view: status %d", r.status)
	}

	e.assertLogsClean(londonIP, token, "/products/42", "utm_source", "jane", id, e.hasher.VisitorKey("shop", id))

	var access int
	sc := bufio.NewScanner(strings.NewReader(e.logs.String()))
	for sc.Scan() {
		var line map[string]any
		if err := json.Unmarshal(sc.Bytes(), &line); err != nil {
			t.Fatalf("log line is not JSON: %v: %s", err, sc.Text())
		}
		if line["msg"] != "request" {
			continue
		}
		access++
		if got := line["route"]; got != "/v1/track" {
			t.Errorf("access log route = %v, want the template /v1/track: %s", got, sc.Text())
		}
		if got := line["site"]; got != "shop" {
			t.Errorf("access log site = %v, want shop: %s", got, sc.Text())
		}
		if _, ok := line["status"]; !ok {
			t.Errorf("access log line without status: %s", sc.Text())
		}
		for _, k := range []string{"path", "url", "query", "ip", "client_ip", "remote_addr", "token", "user_agent"} {
			if _, ok := line[k]; ok {
				t.Errorf("access log line has %q: %s", k, sc.Text())
			}
		}
	}
	if access != 6 {
		t.Errorf("%d access log lines, want one per request (6):\n%s", access, e.logs.String())
	}
}

// The identity cookie as the transport sets it, over a fake domain: its
// attributes in production (Secure; SameSite=None; Partitioned) and in plain-HTTP
// development (SameSite=Lax), its lifetime the token's own expiry, set only when
// the domain issued a token, and expired only when the domain asks and the
// request carried one.
func TestIdentityCookieTransport(t *testing.T) {
	t.Parallel()
	pv := `{"site":"shop","type":"pageview","url":"https://shop.example/"}`
	for _, tc := range []struct {
		name    string
		secure  bool
		headers map[string]string
		cookie  bool // the request carries a vt_shop cookie the fake issued
		// set: the response sets the cookie with these attributes; expire: it
		// expires it; neither: it sets no cookie.
		set    []string
		absent []string
		expire bool
	}{
		{name: "issued in production", secure: true, set: []string{"Path=/", "HttpOnly", "Secure", "SameSite=None", "Partitioned"}},
		{name: "issued in development", set: []string{"Path=/", "HttpOnly", "SameSite=Lax"}, absent: []string{"Secure", "SameSite=None", "Partitioned"}},
		{name: "kept by a returning visitor", cookie: true},
		{name: "dnt forgets a carried identity", secure: true, cookie: true, headers: map[string]string{"DNT": "1"}, expire: true},
		{name: "gpc forgets a carried identity", cookie: true, headers: map[string]string{"Sec-GPC": "1"}, expire: true},
		{name: "dnt without a cookie sets none", headers: map[string]string{"DNT": "1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t, func(o *envOptions) { o.cookieSecure = tc.secure })
			rq := req{method: http.MethodPost, path: "/v1/track", body: pv, headers: tc.headers}
			if tc.cookie {
				rq.cookies = []*http.Cookie{{Name: "vt_shop", Value: e.fake.issue()}}
			}
			r := e.do(rq)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			checkContract(t, e, rq, r)
			raw := identitySetCookie(r, "vt_shop")
			switch {
			case tc.set == nil && !tc.expire:
				if raw != "" {
					t.Fatalf("Set-Cookie %q, want none", raw)
				}
				return
			case raw == "":
				t.Fatalf("no vt_shop cookie set: %q", r.header.Values("Set-Cookie"))
			}
			ck := r.cookie("vt_shop")
			if tc.expire {
				if ck.MaxAge >= 0 || ck.Value != "" || !ck.HttpOnly {
					t.Errorf("Set-Cookie %q, want an expired, empty HttpOnly cookie", raw)
				}
				if tc.secure && (!ck.Secure || !ck.Partitioned) {
					t.Errorf("Set-Cookie %q, want the attributes of the cookie it expires", raw)
				}
				return
			}
			attrs := map[string]bool{}
			for _, a := range strings.Split(raw, ";")[1:] {
				attrs[strings.ToLower(strings.TrimSpace(a))] = true
			}
			for _, a := range tc.set {
				if !attrs[strings.ToLower(a)] {
					t.Errorf("Set-Cookie %q lacks %s", raw, a)
				}
			}
			for _, a := range tc.absent {
				if attrs[strings.ToLower(a)] {
					t.Errorf("Set-Cookie %q has %s", raw, a)
				}
			}
			// The fake issues tokens valid 395 days from its clock.
			want := e.clock.Now().Add(395 * 24 * time.Hour)
			if !ck.Expires.Equal(want) || ck.MaxAge != int(395*24*time.Hour/time.Second) {
				t.Errorf("Expires %s, Max-Age %d, want the token's expiry %s", ck.Expires, ck.MaxAge, want)
			}
			if got := r.json(t)["token"]; got != ck.Value {
				t.Errorf("body token %v, cookie %q: want the same", got, ck.Value)
			}
		})
	}
}

// What the transport hands the domain of a page view: the token from
// X-Visitor-Token, else the cookie, never the URL; DNT and Sec-GPC; the
// User-Agent; and the client's address, from X-Forwarded-For only when the
// peer is a trusted proxy.
func TestIdentityHitFromRequest(t *testing.T) {
	t.Parallel()
	loopback := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}
	pv := `{"site":"shop","type":"pageview","url":"https://shop.example/a","title":"A","referrer":"https://search.example/"}`
	for _, tc := range []struct {
		name     string
		proxies  []netip.Prefix
		path     string
		headers  map[string]string
		cookie   string
		wantTok  string
		wantIP   string
		dnt, gpc bool
	}{
		{name: "token header", headers: map[string]string{tokenHeader: "h.1"}, wantTok: "h.1", wantIP: "127.0.0.1"},
		{name: "cookie", cookie: "c.1", wantTok: "c.1", wantIP: "127.0.0.1"},
		{name: "header over cookie", headers: map[string]string{tokenHeader: "h.1"}, cookie: "c.1", wantTok: "h.1", wantIP: "127.0.0.1"},
		{name: "never the query", path: "?token=q.1&vt_shop=q.1&" + tokenHeader + "=q.1", wantIP: "127.0.0.1"},
		{name: "signals", headers: map[string]string{"DNT": "1", "Sec-GPC": "1"}, dnt: true, gpc: true, wantIP: "127.0.0.1"},
		{name: "signals only as 1", headers: map[string]string{"DNT": "0", "Sec-GPC": "yes"}, wantIP: "127.0.0.1"},
		{name: "forwarded by a trusted proxy", proxies: loopback, headers: map[string]string{"X-Forwarded-For": "2a02:8000:1234::1, " + londonIP}, wantIP: londonIP},
		{name: "forwarded by an untrusted peer", headers: map[string]string{"X-Forwarded-For": londonIP}, wantIP: "127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t, func(o *envOptions) { o.trustedProxies = tc.proxies })
			rq := req{method: http.MethodPost, path: "/v1/track" + tc.path, body: pv, headers: tc.headers}
			if tc.cookie != "" {
				rq.cookies = []*http.Cookie{{Name: "vt_shop", Value: tc.cookie}}
			}
			if r := e.do(rq); r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			h := e.fake.lastHit(t)
			got := h
			got.Site, got.Caller = nil, visitor.Caller{}
			want := visitor.Hit{Type: visitor.HitPageview, URL: "https://shop.example/a", Title: "A", Referrer: "https://search.example/",
				Token: tc.wantTok, UserAgent: chromeUA, IP: netip.MustParseAddr(tc.wantIP), DNT: tc.dnt, GPC: tc.gpc}
			if got != want {
				t.Errorf("hit %+v, want %+v", got, want)
			}
			if h.Site.ID != "shop" || h.Caller.Raw != tc.wantTok {
				t.Errorf("hit of site %s with caller %q, want shop and the token %q verified once", h.Site.ID, h.Caller.Raw, tc.wantTok)
			}
		})
	}
}

// Invariant 8's "the identity token never travels in a URL" on every widget
// route: the token is taken from X-Visitor-Token or the cookie only, never from
// the query, over a fake domain that records what it was given.
func TestIdentityTokenNeverReadFromURL(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	token := e.fake.issue()
	q := url.Values{"site": {"shop"}}
	for _, name := range []string{"token", "vt", "vt_shop", tokenHeader, "visitor_token"} {
		q.Set(name, token)
	}
	r := e.do(req{method: http.MethodPost, path: "/v1/track?" + q.Encode(), body: `{"site":"shop","type":"pageview","url":"https://shop.example/next"}`})
	if r.status != http.StatusOK || e.fake.lastHit(t).Token != "" {
		t.Errorf("track with the token in the query: %d %s, the domain got token %q; want none", r.status, r.body, e.fake.lastHit(t).Token)
	}
	if r := e.do(req{method: http.MethodGet, path: "/v1/consent?" + q.Encode()}); r.status != http.StatusOK {
		t.Errorf("GET /v1/consent: %d %s", r.status, r.body)
	}
	if r := e.do(req{method: http.MethodGet, path: "/v1/consent?site=shop", headers: map[string]string{tokenHeader: token}}); r.status != http.StatusOK {
		t.Errorf("GET /v1/consent: %d %s", r.status, r.body)
	}
	if got := e.fake.asked; len(got) != 2 || got[0] != "" || got[1] != token {
		t.Errorf("Consent asked about %q, want no token from the query, then the header's", got)
	}
	r = e.do(req{method: http.MethodGet, path: "/v1/me?" + q.Encode()})
	wantStatus(t, r, http.StatusUnauthorized, "unauthorized")
	r = e.do(req{method: http.MethodDelete, path: "/v1/me?" + q.Encode()})
	wantStatus(t, r, http.StatusUnauthorized, "unauthorized")
	b, _ := json.Marshal(map[string]any{"site": "shop", "analytics": true, "policy_version": "2026-11"})
	if r := e.do(req{method: http.MethodPut, path: "/v1/consent?" + q.Encode(), body: string(b)}); r.status != http.StatusOK || e.fake.consents[0].Token != "" {
		t.Errorf("PUT /v1/consent with the token in the query: %d, the domain got %q", r.status, e.fake.consents[0].Token)
	}
	if b, _ := json.Marshal(map[string]any{"site": "shop", "contact": map[string]string{"name": "Ann"}}); e.do(req{method: http.MethodPost, path: "/v1/chats?" + q.Encode(), body: string(b)}).status != http.StatusCreated || e.fake.chats[0].Token != "" {
		t.Errorf("chat start with the token in the query: the domain got %q", e.fake.chats[0].Token)
	}
}

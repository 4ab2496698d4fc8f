package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/redistest"
)

// The widget routes' cross-origin and forgery rules (DESIGN, "Widget-facing routes"),
// tried as an attacker would: foreign and null origins, form media types that
// need no preflight, oversized and malformed bodies, on /v1/track, /v1/consent,
// /v1/chats and /v1/me. Every refused request leaves Redis exactly as it was, even
// when it carries a real visitor's token.

const (
	evilOrigin  = "https://evil.example"
	optinOrigin = "https://optin.example"
)

// attack is one request of a forgery test. Unlike req it sends exactly the
// Content-Type given (none when empty), any number of Origin headers, and can
// hide the body's length (chunked transfer encoding).
type attack struct {
	name    string
	method  string
	path    string
	body    string
	ctype   string
	origins []string
	headers map[string]string
	chunked bool
	// site names the site whose visitor sends the request in the populated store.
	site string
	// status and code are the expected answer.
	status int
	code   string
}

// send sends a with the given identity token ("" for none).
func (e *env) send(t testing.TB, a attack, token string) resp {
	t.Helper()
	var body io.Reader
	if a.body != "" {
		body = strings.NewReader(a.body)
		if a.chunked {
			// A reader of unknown length: the client sends it chunked, without Content-Length.
			body = io.MultiReader(body)
		}
	}
	hr, err := http.NewRequest(a.method, e.srv.URL+a.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if a.chunked && hr.ContentLength != 0 {
		t.Fatalf("%s: request is not chunked", a.name)
	}
	if a.ctype != "" {
		hr.Header.Set("Content-Type", a.ctype)
	}
	hr.Header.Set("User-Agent", chromeUA)
	for _, o := range a.origins {
		hr.Header.Add("Origin", o)
	}
	for k, v := range a.headers {
		hr.Header.Set(k, v)
	}
	if token != "" {
		hr.Header.Set(tokenHeader, token)
	}
	res, err := e.client.Do(hr)
	if err != nil {
		t.Fatalf("%s: %v", a.name, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b, cookies: res.Cookies()}
}

// asReq is a as the harness's req, for checkContract (one Origin at most).
func (a attack) asReq() req {
	h := map[string]string{}
	for k, v := range a.headers {
		h[k] = v
	}
	if len(a.origins) > 0 {
		h["Origin"] = a.origins[0]
	}
	return req{method: a.method, path: a.path, body: a.body, ctype: a.ctype, headers: h}
}

// storeState is every key with its value and absolute expiry: a refused request
// must change neither (nothing written, no TTL refreshed).
func (e *env) storeState(t testing.TB) map[string]string {
	t.Helper()
	state := redistest.DumpValues(t, e.rdb)
	for k, v := range state {
		exp, err := e.rdb.PExpireTime(context.Background(), k).Result()
		if err != nil {
			t.Fatalf("PEXPIRETIME %s: %v", k, err)
		}
		state[k] = v + "\n@expires " + strconv.FormatInt(int64(exp), 10)
	}
	return state
}

// assertErrorShape checks the body is exactly {"error":{"code","message"}} with code.
func assertErrorShape(t testing.TB, r resp, code string) {
	t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("error Content-Type %q", ct)
	}
	var body struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil || body.Error == nil {
		t.Fatalf("error body %s is not {\"error\":{\"code\",\"message\"}}: %v", r.body, err)
	}
	if body.Error.Code != code {
		t.Errorf("code %q, want %q (body %s)", body.Error.Code, code, r.body)
	}
	if body.Error.Message == "" {
		t.Errorf("error without message: %s", r.body)
	}
}

// assertCORS checks a widget route's cross-origin headers: Vary names Origin,
// Access-Control-Allow-Origin is never "*", and when present it echoes exactly
// an origin the request sent, which must be a configured one, with credentials.
func assertCORS(t testing.TB, e *env, origins []string, r resp) {
	t.Helper()
	if !varyHasOrigin(r.header) {
		t.Errorf("Vary %q lacks Origin", r.header.Values("Vary"))
	}
	acao := r.header.Values("Access-Control-Allow-Origin")
	for _, v := range acao {
		if strings.TrimSpace(v) == "*" {
			t.Errorf("Access-Control-Allow-Origin: *")
		}
	}
	if len(acao) == 0 {
		return
	}
	// One echoed origin, one the request sent. (With two Origin headers, which no
	// browser sends, the first is echoed though the request is refused.)
	if len(acao) != 1 || !slices.Contains(origins, acao[0]) {
		t.Errorf("Access-Control-Allow-Origin %q for request origins %q", acao, origins)
	}
	if !e.sites.AnyAllowsOrigin(acao[0]) {
		t.Errorf("Access-Control-Allow-Origin %q is no configured origin", acao[0])
	}
	if got := r.header.Get("Access-Control-Allow-Credentials"); got != "true" {
		t.Errorf("Access-Control-Allow-Credentials %q with Access-Control-Allow-Origin %q", got, acao[0])
	}
}

func varyHasOrigin(h http.Header) bool {
	for _, v := range h.Values("Vary") {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), "Origin") {
				return true
			}
		}
	}
	return false
}

func multipartBody(t testing.TB, fields map[string]string) (string, string) {
	t.Helper()
	var b bytes.Buffer
	w := multipart.NewWriter(&b)
	for k, v := range fields {
		if err := w.WriteField(k, v); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String(), w.FormDataContentType()
}

// refusedAttacks are requests the widget routes must refuse without writing anything.
func refusedAttacks(t testing.TB) []attack {
	t.Helper()
	shopPV := `{"site":"shop","type":"pageview","url":"https://shop.example/","title":"x"}`
	// What <form enctype="text/plain"> can send: a name ending in '"' and a value
	// starting with it make the whole body JSON.
	formJSON := `{"site":"shop","type":"pageview","url":"https://shop.example/","x":"="}` + "\r\n"
	grantShop := `{"site":"shop","analytics":true,"marketing":true,"policy_version":"2026-11"}`
	refuseShop := `{"site":"shop","analytics":false,"marketing":false,"policy_version":"2026-11"}`
	mpTrack, mpTrackCT := multipartBody(t, map[string]string{"site": "shop", "type": "pageview", "url": "https://shop.example/"})
	mpConsent, mpConsentCT := multipartBody(t, map[string]string{"site": "shop", "analytics": "false", "marketing": "false", "policy_version": "2026-11"})
	over := MaxBodyBytes + 1
	bigTrack := padJSON(`{"site":"shop","type":"pageview","url":"https://shop.example/"}`, over)
	bigConsent := padJSON(grantShop, over)
	chatShop := `{"site":"shop","contact":{"name":"Eve","email":"eve@mail.example"},"marketing_opt_in":true,"url":"https://shop.example/"}`
	mpChat, mpChatCT := multipartBody(t, map[string]string{"site": "shop", "contact": "Eve"})
	track, consent, chats := "/v1/track", "/v1/consent", "/v1/chats"
	post, put, get := http.MethodPost, http.MethodPut, http.MethodGet
	const js, plain = "application/json", "text/plain;charset=UTF-8"
	return []attack{
		// Cross-site forms: no preflight is needed for text/plain, urlencoded or multipart.
		{name: "cross-site text/plain form to track", method: post, path: track, body: formJSON, ctype: "text/plain", origins: []string{evilOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "cross-site sendBeacon to track", method: post, path: track, body: shopPV, ctype: plain, origins: []string{evilOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "cross-site json to track", method: post, path: track, body: shopPV, ctype: js, origins: []string{evilOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "cross-site urlencoded form to track", method: post, path: track, body: "site=shop&type=pageview&url=https%3A%2F%2Fshop.example%2F", ctype: "application/x-www-form-urlencoded", origins: []string{evilOrigin}, status: 415, code: "unsupported_media_type"},
		{name: "cross-site multipart form to track", method: post, path: track, body: mpTrack, ctype: mpTrackCT, origins: []string{evilOrigin}, status: 415, code: "unsupported_media_type"},
		{name: "urlencoded to track from own origin", method: post, path: track, body: "site=shop&type=pageview", ctype: "application/x-www-form-urlencoded", origins: []string{shopOrigin}, status: 415, code: "unsupported_media_type"},
		{name: "multipart to track from own origin", method: post, path: track, body: mpTrack, ctype: mpTrackCT, origins: []string{shopOrigin}, status: 415, code: "unsupported_media_type"},
		{name: "track without Content-Type", method: post, path: track, body: shopPV, origins: []string{shopOrigin}, status: 415, code: "unsupported_media_type"},
		{name: "text/plain consent refusal from own origin", method: put, path: consent, body: refuseShop, ctype: plain, origins: []string{shopOrigin}, status: 415, code: "unsupported_media_type"},
		{name: "cross-site text/plain consent grant", method: put, path: consent, body: grantShop, ctype: "text/plain", origins: []string{evilOrigin}, status: 415, code: "unsupported_media_type"},
		{name: "urlencoded consent", method: put, path: consent, body: "site=shop&analytics=false&marketing=false&policy_version=2026-11", ctype: "application/x-www-form-urlencoded", origins: []string{shopOrigin}, status: 415, code: "unsupported_media_type"},
		{name: "multipart consent", method: put, path: consent, body: mpConsent, ctype: mpConsentCT, origins: []string{shopOrigin}, status: 415, code: "unsupported_media_type"},
		{name: "consent without Content-Type", method: put, path: consent, body: refuseShop, status: 415, code: "unsupported_media_type"},
		{name: "cross-site text/plain form to chats", method: post, path: chats, body: chatShop, ctype: "text/plain", origins: []string{evilOrigin}, status: 415, code: "unsupported_media_type"},
		{name: "sendBeacon to chats from own origin", method: post, path: chats, body: chatShop, ctype: plain, origins: []string{shopOrigin}, status: 415, code: "unsupported_media_type"},
		{name: "multipart chat", method: post, path: chats, body: mpChat, ctype: mpChatCT, origins: []string{shopOrigin}, status: 415, code: "unsupported_media_type"},
		// Origins.
		{name: "foreign origin chat", method: post, path: chats, body: chatShop, ctype: js, origins: []string{evilOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "null origin chat", method: post, path: chats, body: chatShop, ctype: js, origins: []string{"null"}, status: 403, code: "origin_not_allowed"},
		{name: "other site's origin chat", method: post, path: chats, body: chatShop, ctype: js, origins: []string{blogOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "foreign origin erases me", method: http.MethodDelete, path: "/v1/me?site=shop", origins: []string{evilOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "null origin erases me", method: http.MethodDelete, path: "/v1/me?site=shop", origins: []string{"null"}, status: 403, code: "origin_not_allowed"},
		{name: "other site's origin erases me", method: http.MethodDelete, path: "/v1/me?site=shop", origins: []string{blogOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "foreign origin exports me", method: get, path: "/v1/me?site=shop", origins: []string{evilOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "foreign origin consent put", method: put, path: consent, body: refuseShop, ctype: js, origins: []string{evilOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "foreign origin consent get", method: get, path: consent + "?site=shop", origins: []string{evilOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "null origin pageview", method: post, path: track, body: shopPV, ctype: plain, origins: []string{"null"}, status: 403, code: "origin_not_allowed"},
		{name: "null origin pageview by default type", method: post, path: track, body: `{"site":"shop","url":"https://shop.example/"}`, ctype: plain, origins: []string{"null"}, status: 403, code: "origin_not_allowed"},
		{name: "null origin consent put", method: put, path: consent, body: refuseShop, ctype: js, origins: []string{"null"}, status: 403, code: "origin_not_allowed"},
		{name: "null origin consent get", method: get, path: consent + "?site=shop", origins: []string{"null"}, status: 403, code: "origin_not_allowed"},
		{name: "other site's origin to track", method: post, path: track, body: shopPV, ctype: js, origins: []string{blogOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "other site's origin heartbeat", method: post, path: track, body: `{"site":"shop","type":"heartbeat"}`, ctype: plain, origins: []string{blogOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "other site's origin consent put", method: put, path: consent, body: refuseShop, ctype: js, origins: []string{blogOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "other site's origin consent get", method: get, path: consent + "?site=shop", origins: []string{blogOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "two Origin headers", method: post, path: track, body: shopPV, ctype: js, origins: []string{shopOrigin, evilOrigin}, status: 403, code: "origin_not_allowed"},
		{name: "origin differing in case", method: post, path: track, body: shopPV, ctype: js, origins: []string{"HTTPS://SHOP.EXAMPLE"}, status: 403, code: "origin_not_allowed"},
		{name: "origin with suffix", method: post, path: track, body: shopPV, ctype: js, origins: []string{"https://shop.example.evil.example"}, status: 403, code: "origin_not_allowed"},
		{name: "origin over http", method: post, path: track, body: shopPV, ctype: js, origins: []string{"http://shop.example"}, status: 403, code: "origin_not_allowed"},
		// Bodies.
		{name: "track body over 16 KiB", method: post, path: track, body: bigTrack, ctype: js, origins: []string{shopOrigin}, status: 413, code: "body_too_large"},
		{name: "track body over 16 KiB chunked", method: post, path: track, body: bigTrack, ctype: plain, origins: []string{shopOrigin}, chunked: true, status: 413, code: "body_too_large"},
		{name: "consent body over 16 KiB", method: put, path: consent, body: bigConsent, ctype: js, origins: []string{shopOrigin}, status: 413, code: "body_too_large"},
		{name: "consent body over 16 KiB chunked", method: put, path: consent, body: bigConsent, ctype: js, origins: []string{shopOrigin}, chunked: true, status: 413, code: "body_too_large"},
		{name: "chat body over 16 KiB", method: post, path: chats, body: padJSON(chatShop, over), ctype: js, origins: []string{shopOrigin}, status: 413, code: "body_too_large"},
		{name: "chat body over 16 KiB chunked", method: post, path: chats, body: padJSON(chatShop, over), ctype: js, origins: []string{shopOrigin}, chunked: true, status: 413, code: "body_too_large"},
		{name: "chat invalid json", method: post, path: chats, body: `{"site":"shop","contact":`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_json"},
		{name: "chat contact of wrong type", method: post, path: chats, body: `{"site":"shop","contact":"Eve"}`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_request"},
		{name: "chat url of another site", method: post, path: chats, body: `{"site":"shop","contact":{"name":"Eve"},"url":"https://evil.example/"}`, ctype: js, origins: []string{shopOrigin}, status: 422, code: "url_not_in_site"},
		{name: "track invalid json", method: post, path: track, body: `{"site":"shop","type":"pageview",`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_json"},
		{name: "track trailing garbage", method: post, path: track, body: shopPV + `x`, ctype: plain, origins: []string{shopOrigin}, status: 400, code: "invalid_json"},
		{name: "consent invalid json", method: put, path: consent, body: `{"site":"shop",`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_json"},
		{name: "track url of wrong type", method: post, path: track, body: `{"site":"shop","type":"pageview","url":42}`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_request"},
		{name: "track site of wrong type", method: post, path: track, body: `{"site":["shop"],"url":"https://shop.example/"}`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_request"},
		{name: "track title of wrong type", method: post, path: track, body: `{"site":"shop","url":"https://shop.example/","title":{"a":1}}`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_request"},
		{name: "track body not an object", method: post, path: track, body: `["shop"]`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_request"},
		{name: "consent analytics of wrong type", method: put, path: consent, body: `{"site":"shop","analytics":"yes","marketing":false,"policy_version":"2026-11"}`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_request"},
		{name: "consent missing choice", method: put, path: consent, body: `{"site":"shop","marketing":false,"policy_version":"2026-11"}`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_request"},
		{name: "track unknown site", method: post, path: track, body: `{"site":"nope","type":"pageview","url":"https://shop.example/"}`, ctype: js, origins: []string{shopOrigin}, status: 404, code: "unknown_site"},
		{name: "track without site", method: post, path: track, body: `{"type":"pageview","url":"https://shop.example/"}`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_request"},
		{name: "consent unknown site", method: put, path: consent, body: `{"site":"nope","analytics":false,"marketing":false,"policy_version":"2026-11"}`, ctype: js, origins: []string{shopOrigin}, status: 404, code: "unknown_site"},
		{name: "consent get unknown site", method: get, path: consent + "?site=nope", origins: []string{shopOrigin}, status: 404, code: "unknown_site"},
		{name: "track unknown type", method: post, path: track, body: `{"site":"shop","type":"click","url":"https://shop.example/"}`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_request"},
		{name: "pageview without url", method: post, path: track, body: `{"site":"shop","type":"pageview"}`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_request"},
		{name: "pageview with javascript url", method: post, path: track, body: `{"site":"shop","url":"javascript:alert(1)"}`, ctype: js, origins: []string{shopOrigin}, status: 400, code: "invalid_request"},
		{name: "pageview of another site's url", method: post, path: track, body: `{"site":"shop","url":"https://blog.example/"}`, ctype: js, origins: []string{shopOrigin}, status: 422, code: "url_not_in_site"},
		{name: "consent for an outdated policy", method: put, path: consent, body: `{"site":"optin","analytics":false,"marketing":false,"policy_version":"v1"}`, ctype: js, origins: []string{optinOrigin}, site: "optin", status: 409, code: "policy_outdated"},
		{name: "consent grant for an outdated policy", method: put, path: consent, body: `{"site":"shop","analytics":true,"marketing":true,"policy_version":"2025-01"}`, ctype: js, origins: []string{shopOrigin}, status: 409, code: "policy_outdated"},
	}
}

// padJSON pads a JSON object with spaces before its closing brace to n bytes.
func padJSON(obj string, n int) string {
	return obj[:len(obj)-1] + strings.Repeat(" ", n-len(obj)) + "}"
}

// Every refused request answers the error shape with its status, keeps the CORS
// rules, and leaves Redis as it was: on an empty store no key appears; on a store
// holding visitors who send their own tokens, no value and no expiry changes.
func TestForgeryRefusedRequestsWriteNothing(t *testing.T) {
	t.Parallel()
	empty := newEnv(t)
	full := newEnv(t)
	tokens := map[string]string{"shop": full.mustTrack("shop", shopOrigin+"/", "")}
	grant := full.do(req{method: http.MethodPut, path: "/v1/consent", headers: map[string]string{"Origin": optinOrigin},
		body: `{"site":"optin","analytics":true,"marketing":true,"policy_version":"v2"}`})
	tokens["optin"], _ = grant.json(t)["token"].(string)
	if grant.status != http.StatusOK || tokens["optin"] == "" {
		t.Fatalf("consent grant: %d %s", grant.status, grant.body)
	}
	full.mustTrack("optin", optinOrigin+"/", tokens["optin"])
	before := full.storeState(t)

	for _, a := range refusedAttacks(t) {
		t.Run(a.name, func(t *testing.T) {
			site := a.site
			if site == "" {
				site = "shop"
			}
			for _, run := range []struct {
				name  string
				e     *env
				token string
				want  map[string]string
			}{
				{name: "empty store", e: empty, want: map[string]string{}},
				{name: "visitor's own token", e: full, token: tokens[site], want: before},
			} {
				r := run.e.send(t, a, run.token)
				if r.status != a.status {
					t.Fatalf("%s: status %d, want %d: %s", run.name, r.status, a.status, r.body)
				}
				assertErrorShape(t, r, a.code)
				assertCORS(t, run.e, a.origins, r)
				if c := r.cookie("vt_shop"); c != nil {
					t.Errorf("%s: refused request set cookie %v", run.name, c)
				}
				checkContract(t, run.e, a.asReq(), r)
				if diff := cmp.Diff(run.want, run.e.storeState(t)); diff != "" {
					t.Errorf("%s: a refused request changed Redis (-before +after):\n%s", run.name, diff)
				}
			}
		})
	}
	// Control: the snapshot sees what an accepted request writes.
	full.mustTrack("shop", shopOrigin+"/control", tokens["shop"])
	if cmp.Equal(before, full.storeState(t)) {
		t.Error("storeState did not see an accepted page view")
	}
	// Only st: counters could ever be allowed on the empty store; none appeared.
	for _, k := range empty.keys() {
		if !strings.HasPrefix(k, "st:") {
			t.Errorf("key %s after refused requests", k)
		}
	}
}

// Preflight is answered for any configured origin, whatever site the real request
// will name; an unknown origin gets 403 without Access-Control-Allow-Origin.
func TestForgeryPreflight(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	for _, tc := range []struct {
		name, path, origin, method string
		status                     int
	}{
		{name: "blog preflights track", path: "/v1/track", origin: blogOrigin, method: "POST", status: 204},
		{name: "shop preflights track", path: "/v1/track", origin: shopOrigin, method: "POST", status: 204},
		{name: "optin preflights consent put", path: "/v1/consent", origin: optinOrigin, method: "PUT", status: 204},
		{name: "chat preflights consent get", path: "/v1/consent", origin: "https://chat.example", method: "GET", status: 204},
		{name: "unknown origin track", path: "/v1/track", origin: evilOrigin, method: "POST", status: 403},
		{name: "unknown origin consent", path: "/v1/consent", origin: evilOrigin, method: "PUT", status: 403},
		{name: "near-miss origin", path: "/v1/track", origin: "https://blog.example.evil.example", method: "POST", status: 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rq := req{method: http.MethodOptions, path: tc.path, headers: map[string]string{
				"Origin": tc.origin, "Access-Control-Request-Method": tc.method,
				"Access-Control-Request-Headers": "content-type, x-visitor-token",
			}}
			r := e.do(rq)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			checkContract(t, e, rq, r)
			if !varyHasOrigin(r.header) {
				t.Errorf("Vary %q lacks Origin", r.header.Values("Vary"))
			}
			acao := r.header.Values("Access-Control-Allow-Origin")
			if tc.status != http.StatusNoContent {
				assertErrorShape(t, r, "origin_not_allowed")
				if len(acao) != 0 {
					t.Errorf("refused preflight has Access-Control-Allow-Origin %q", acao)
				}
				return
			}
			if len(acao) != 1 || acao[0] != tc.origin {
				t.Errorf("Access-Control-Allow-Origin %q, want exactly %q", acao, tc.origin)
			}
			if got := r.header.Get("Access-Control-Allow-Credentials"); got != "true" {
				t.Errorf("Access-Control-Allow-Credentials %q", got)
			}
			if !headerListHas(r.header.Get("Access-Control-Allow-Headers"), tokenHeader) {
				t.Errorf("Access-Control-Allow-Headers %q lacks %s", r.header.Get("Access-Control-Allow-Headers"), tokenHeader)
			}
			if !headerListHas(r.header.Get("Access-Control-Allow-Methods"), tc.method) {
				t.Errorf("Access-Control-Allow-Methods %q lacks %s", r.header.Get("Access-Control-Allow-Methods"), tc.method)
			}
		})
	}
	if len(e.fake.hits)+len(e.fake.consents)+len(e.fake.chats) != 0 {
		t.Errorf("preflights reached the domain: %d hits, %d consents, %d chats", len(e.fake.hits), len(e.fake.consents), len(e.fake.chats))
	}
}

func headerListHas(list, want string) bool {
	for _, f := range strings.Split(list, ",") {
		if strings.EqualFold(strings.TrimSpace(f), want) {
			return true
		}
	}
	return false
}

// What the rules let through: no Origin (a non-browser client), the site's own
// origin, and Origin null for heartbeat and leave only (sendBeacon under
// Referrer-Policy: no-referrer). Allowed answers carry the same CORS headers.
func TestForgeryAllowedOrigins(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	token := e.mustTrack("shop", shopOrigin+"/", "")
	pv := `{"site":"shop","type":"pageview","url":"https://shop.example/next"}`
	for _, tc := range []struct {
		a             attack
		token         string
		tracked       bool
		reason        string
		consentStatus bool
	}{
		{a: attack{name: "no origin pageview", method: http.MethodPost, path: "/v1/track", body: pv, ctype: "application/json"}, tracked: true},
		{a: attack{name: "no origin pageview with token", method: http.MethodPost, path: "/v1/track", body: pv, ctype: "text/plain"}, token: token, tracked: true},
		{a: attack{name: "own origin pageview", method: http.MethodPost, path: "/v1/track", body: pv, ctype: "application/json", origins: []string{shopOrigin}}, token: token, tracked: true},
		{a: attack{name: "null origin heartbeat", method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"heartbeat"}`, ctype: "text/plain;charset=UTF-8", origins: []string{"null"}}, token: token, tracked: true},
		{a: attack{name: "null origin leave", method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"leave"}`, ctype: "text/plain;charset=UTF-8", origins: []string{"null"}}, token: token, tracked: true},
		{a: attack{name: "null origin heartbeat without identity", method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"heartbeat"}`, ctype: "text/plain;charset=UTF-8", origins: []string{"null"}}, reason: "no_session"},
		{a: attack{name: "blog origin for blog", method: http.MethodPost, path: "/v1/track", body: `{"site":"blog","url":"https://blog.example/"}`, ctype: "application/json", origins: []string{blogOrigin}}, tracked: true},
		{a: attack{name: "no origin consent put", method: http.MethodPut, path: "/v1/consent", body: `{"site":"optin","analytics":true,"marketing":false,"policy_version":"v2"}`, ctype: "application/json"}, consentStatus: true},
		{a: attack{name: "own origin consent get", method: http.MethodGet, path: "/v1/consent?site=shop", origins: []string{shopOrigin}}, consentStatus: true},
		{a: attack{name: "no origin consent get", method: http.MethodGet, path: "/v1/consent?site=shop"}, consentStatus: true},
	} {
		t.Run(tc.a.name, func(t *testing.T) {
			r := e.send(t, tc.a, tc.token)
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			assertCORS(t, e, tc.a.origins, r)
			checkContract(t, e, tc.a.asReq(), r)
			if tc.consentStatus {
				return
			}
			m := r.json(t)
			if m["tracked"] != tc.tracked || (tc.reason != "" && m["reason"] != tc.reason) {
				t.Errorf("body %s, want tracked=%v reason=%q", r.body, tc.tracked, tc.reason)
			}
		})
	}
}

// The 16 KiB limit is exact: a body of MaxBodyBytes is read, one byte more is 413,
// with or without Content-Length.
func TestForgeryBodyLimitBoundary(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	pv := `{"site":"shop","type":"pageview","url":"https://shop.example/"}`
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
		status  int
	}{
		{name: "at the limit", size: MaxBodyBytes, status: 200},
		{name: "at the limit chunked", size: MaxBodyBytes, chunked: true, status: 200},
		{name: "one byte over", size: MaxBodyBytes + 1, status: 413},
		{name: "one byte over chunked", size: MaxBodyBytes + 1, chunked: true, status: 413},
		{name: "a megabyte chunked", size: 1 << 20, chunked: true, status: 413},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := attack{name: tc.name, method: http.MethodPost, path: "/v1/track", body: padJSON(pv, tc.size),
				ctype: "text/plain", origins: []string{shopOrigin}, chunked: tc.chunked}
			if len(a.body) != tc.size {
				t.Fatalf("body of %d bytes, want %d", len(a.body), tc.size)
			}
			r := e.send(t, a, "")
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			assertCORS(t, e, a.origins, r)
			if tc.status != http.StatusOK {
				assertErrorShape(t, r, "body_too_large")
			}
		})
	}
}

// The cross-origin headers of every widget route, over a fake domain: an
// origin some site allows is echoed with credentials and Vary: Origin, an
// unknown one gets no Access-Control-Allow-Origin, never "*"; operator and
// privacy routes send none at all. Every widget answer is no-store but the
// widget config's, which is the same for every visitor.
func TestWidgetCORSEveryRoute(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	token := e.fake.issue()
	widgetRoutes := []req{
		{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","url":"https://shop.example/"}`},
		{method: http.MethodGet, path: "/v1/consent?site=shop"},
		{method: http.MethodPut, path: "/v1/consent", body: `{"site":"shop","analytics":false,"policy_version":"2026-11"}`},
		{method: http.MethodPost, path: "/v1/chats", body: `{"site":"shop","contact":{"name":"Ann"}}`},
		{method: http.MethodGet, path: "/v1/me?site=shop"},
		{method: http.MethodGet, path: "/v1/sites/shop/widget-config"},
	}
	for _, rq := range widgetRoutes {
		for _, origin := range []string{shopOrigin, blogOrigin, evilOrigin, ""} {
			rq := rq
			rq.headers = map[string]string{tokenHeader: token}
			if origin != "" {
				rq.headers["Origin"] = origin
			}
			r := e.do(rq)
			name := rq.method + " " + rq.path + " from " + origin
			assertCORS(t, e, []string{origin}, r)
			allowed := origin == shopOrigin || origin == blogOrigin
			if got := r.header.Get("Access-Control-Allow-Origin"); (got != "") != allowed {
				t.Errorf("%s: Access-Control-Allow-Origin %q, want it %v", name, got, allowed)
			}
			// The site's own origin, or none, is served; another's is refused.
			if ok := origin == shopOrigin || origin == ""; ok != (r.status < 400) {
				t.Errorf("%s: status %d: %s", name, r.status, r.body)
			}
			wantCache := "no-store"
			if strings.HasSuffix(rq.path, "/widget-config") && r.status == http.StatusOK {
				wantCache = "public, max-age=60"
			}
			if got := r.header.Get("Cache-Control"); got != wantCache {
				t.Errorf("%s: Cache-Control %q, want %q", name, got, wantCache)
			}
			checkContract(t, e, rq, r)
		}
	}
	for _, rq := range []req{
		{method: http.MethodGet, path: "/v1/sites/shop/visitors/live"},
		{method: http.MethodGet, path: "/v1/sites/shop/retention"},
		{method: http.MethodGet, path: "/v1/sites/shop/audit"},
	} {
		rq.headers = map[string]string{"Origin": shopOrigin, "Authorization": "Bearer " + shopPrivacyKey}
		r := e.do(rq)
		if r.status != http.StatusOK || r.header.Get("Access-Control-Allow-Origin") != "" || r.header.Get("Access-Control-Allow-Credentials") != "" {
			t.Errorf("%s %s: %d with CORS headers %q: %s", rq.method, rq.path, r.status, r.header.Get("Access-Control-Allow-Origin"), r.body)
		}
	}
}

// Every route with a body takes application/json of at most 16 KiB (415, 413
// otherwise, in the error shape); POST /v1/track alone also takes text/plain
// (sendBeacon). Over a fake domain: nothing reaches it.
func TestWidgetBodyRulesEveryRoute(t *testing.T) {
	t.Parallel()
	priv := map[string]string{"Authorization": "Bearer " + shopPrivacyKey}
	for _, rt := range []struct {
		method, path string
		body         string
		headers      map[string]string
		plain        bool // text/plain accepted
	}{
		{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","url":"https://shop.example/"}`, plain: true},
		{method: http.MethodPut, path: "/v1/consent", body: `{"site":"shop","analytics":false,"policy_version":"2026-11"}`},
		{method: http.MethodPost, path: "/v1/chats", body: `{"site":"shop","contact":{"name":"Ann"}}`},
		{method: http.MethodPut, path: "/v1/sites/shop/retention", body: `{"sessions":30,"profiles":395,"chats":90,"consents":1095,"audit":365}`, headers: priv},
		{method: http.MethodPost, path: "/v1/sites/shop/subjects/search", body: `{"email":"ann@mail.example"}`, headers: priv},
		{method: http.MethodPatch, path: "/v1/sites/shop/visitors/AAAAAAAAAAAAAAAAAAAAAA", body: `{"contact":{"phone":"+44 20 7946 0001"}}`, headers: priv},
	} {
		t.Run(rt.method+" "+rt.path, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t)
			for _, tc := range []struct {
				name, ctype, body string
				status            int
				code              string
			}{
				{name: "json", ctype: "application/json", body: rt.body, status: http.StatusOK},
				{name: "json with charset", ctype: "application/json; charset=utf-8", body: rt.body, status: http.StatusOK},
				{name: "text/plain", ctype: "text/plain;charset=UTF-8", body: rt.body, status: http.StatusUnsupportedMediaType, code: "unsupported_media_type"},
				{name: "form", ctype: "application/x-www-form-urlencoded", body: "site=shop", status: http.StatusUnsupportedMediaType, code: "unsupported_media_type"},
				{name: "over 16 KiB", ctype: "application/json", body: padJSON(rt.body, MaxBodyBytes+1), status: http.StatusRequestEntityTooLarge, code: "body_too_large"},
				{name: "not JSON", ctype: "application/json", body: rt.body[:len(rt.body)-1], status: http.StatusBadRequest, code: "invalid_json"},
			} {
				if tc.name == "text/plain" && rt.plain {
					tc.status, tc.code = http.StatusOK, ""
				}
				rq := req{method: rt.method, path: rt.path, body: tc.body, ctype: tc.ctype, headers: rt.headers}
				r := e.do(rq)
				want := tc.status
				if want == http.StatusOK && rt.method == http.MethodPost && rt.path == "/v1/chats" {
					want = http.StatusCreated
				}
				if r.status != want {
					t.Errorf("%s: status %d, want %d: %s", tc.name, r.status, want, r.body)
					continue
				}
				if tc.code != "" {
					assertErrorShape(t, r, tc.code)
				}
				checkContract(t, e, rq, r)
			}
		})
	}
}

// TestIdentityLineIsCookieString pins the Set-Cookie line writeIdentity builds
// by hand to the one http.SetCookie writes for a.cookie(site) with the same
// value, Expires and Max-Age: for issued tokens (production and development),
// the refusal and expiry variants, and the values it leaves to http.SetCookie.
func TestIdentityLineIsCookieString(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 29, 13, 17, 7, 123456789, time.UTC)
	token := "eyJ2IjoxLCJpZCI6IkFCQ0RFRkdISUpLTE1OT1BRIn0.c2lnbmF0dXJlLW9mLXRoaXJ0eS10d28tYnl0ZXMtLS0tLS0tLS0"
	for _, tc := range []struct {
		name    string
		site    string
		value   string
		expires time.Time
		maxAge  int
		hand    bool // identityLine builds it (else http.SetCookie)
	}{
		{name: "issued, 13 months", site: "shop", value: token, expires: now.AddDate(0, 13, 0), maxAge: 34214400, hand: true},
		{name: "issued, one second", site: "shop", value: token, expires: now.Add(time.Second), maxAge: 1, hand: true},
		{name: "refusal token", site: "shop", value: "r." + token, expires: now.Add(180 * 24 * time.Hour), maxAge: 15552000, hand: true},
		{name: "expired at issue", site: "shop", value: token, expires: now.Add(-time.Second), maxAge: -1, hand: true},
		{name: "no max-age", site: "shop", value: token, expires: now, maxAge: 0, hand: true},
		{name: "forgotten identity", site: "shop", value: "", expires: time.Unix(0, 0), maxAge: -1, hand: true},
		{name: "not in UTC", site: "shop", value: token, expires: now.In(time.FixedZone("x", 5*3600+1800)), maxAge: 60, hand: true},
		{name: "site id with token bytes", site: "my-shop_2.eu", value: token, expires: now.Add(time.Hour), maxAge: 3600, hand: true},
		{name: "every plain byte", site: "shop", value: "azAZ09!#$%&'*+-.^_`|~", expires: now.Add(time.Hour), maxAge: 3600, hand: true},
		{name: "value with a space is quoted", site: "shop", value: "a b", expires: now.Add(time.Hour), maxAge: 3600},
		{name: "value with a comma is quoted", site: "shop", value: "a,b", expires: now.Add(time.Hour), maxAge: 3600},
		{name: "value with a quote is dropped", site: "shop", value: `a"b`, expires: now.Add(time.Hour), maxAge: 3600},
		{name: "value with a semicolon", site: "shop", value: "a;b", expires: now.Add(time.Hour), maxAge: 3600},
		{name: "value with a control byte", site: "shop", value: "a\x00b", expires: now.Add(time.Hour), maxAge: 3600},
		{name: "value with a non-ASCII byte", site: "shop", value: "é", expires: now.Add(time.Hour), maxAge: 3600},
		{name: "site id with '='", site: "a=b", value: token, expires: now.Add(time.Hour), maxAge: 3600},
		{name: "site id with a space", site: "a b", value: token, expires: now.Add(time.Hour), maxAge: 3600},
		{name: "no expiry", site: "shop", value: token, maxAge: -1},
		{name: "expiry before 1601", site: "shop", value: token, expires: time.Date(1600, 12, 31, 0, 0, 0, 0, time.UTC), maxAge: -1},
	} {
		for _, secure := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/secure=%t", tc.name, secure), func(t *testing.T) {
				a := &api{cookieSecure: secure}
				ck := a.cookie(tc.site)
				ck.Value, ck.Expires, ck.MaxAge = tc.value, tc.expires, tc.maxAge
				want := httptest.NewRecorder()
				http.SetCookie(want, ck)

				line, ok := a.identityLine(cookieName(tc.site), tc.value, tc.expires, tc.maxAge)
				if ok != tc.hand {
					t.Fatalf("identityLine ok = %t, want %t (line %q)", ok, tc.hand, line)
				}
				if ok && line != ck.String() {
					t.Fatalf("identityLine\n got %q\nwant %q", line, ck.String())
				}
				w := httptest.NewRecorder()
				c, _ := gin.CreateTestContext(w)
				c.Writer.Header().Add("Set-Cookie", "other=1")
				want.Header()["Set-Cookie"] = append([]string{"other=1"}, want.Header()["Set-Cookie"]...)
				a.writeIdentity(c, tc.site, tc.value, tc.expires, tc.maxAge)
				if diff := cmp.Diff(want.Header(), w.Header()); diff != "" {
					t.Fatalf("header (-http.SetCookie +writeIdentity):\n%s", diff)
				}
			})
		}
	}
}

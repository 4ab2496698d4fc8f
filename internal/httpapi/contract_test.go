package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

// specPath is api/openapi.yaml, relative to this package's directory.
var specPath = filepath.Join("..", "..", "api", "openapi.yaml")

var (
	specOnce   sync.Once
	specDoc    *openapi3.T
	specRouter routers.Router
	specErr    error
)

// loadSpec loads, validates and routes api/openapi.yaml once per test binary.
func loadSpec(tb testing.TB) (*openapi3.T, routers.Router) {
	tb.Helper()
	specOnce.Do(func() {
		// kin-openapi decodes no Markdown; it is text, like text/plain.
		openapi3filter.RegisterBodyDecoder("text/markdown", openapi3filter.PlainBodyDecoder)
		// The home page and the served description are documents, checked as text.
		openapi3filter.RegisterBodyDecoder("text/html", openapi3filter.PlainBodyDecoder)
		openapi3filter.RegisterBodyDecoder("application/yaml", openapi3filter.PlainBodyDecoder)
		// A live stream is checked as a file: its events are not one JSON document.
		openapi3filter.RegisterBodyDecoder("text/event-stream", openapi3filter.FileBodyDecoder)
		loader := openapi3.NewLoader()
		doc, err := loader.LoadFromFile(specPath)
		if err != nil {
			specErr = err
			return
		}
		if err := doc.Validate(loader.Context); err != nil {
			specErr = err
			return
		}
		r, err := gorillamux.NewRouter(doc)
		if err != nil {
			specErr = err
			return
		}
		specDoc, specRouter = doc, r
	})
	if specErr != nil {
		tb.Fatalf("api/openapi.yaml: %v", specErr)
	}
	return specDoc, specRouter
}

// specRoute is one (method, path) pair, the path in OpenAPI's {param} syntax.
type specRoute struct{ method, path string }

func (r specRoute) String() string { return r.method + " " + r.path }

// openAPIPath turns gin's :param and *param segments into OpenAPI's {param}.
func openAPIPath(p string) string {
	segs := strings.Split(p, "/")
	for i, s := range segs {
		if strings.HasPrefix(s, ":") || strings.HasPrefix(s, "*") {
			segs[i] = "{" + s[1:] + "}"
		}
	}
	return strings.Join(segs, "/")
}

// routerRoutes lists the routes of the handler under test.
func routerRoutes(tb testing.TB, h http.Handler) []specRoute {
	tb.Helper()
	eng, ok := h.(*gin.Engine)
	if !ok {
		tb.Fatalf("handler is %T, want *gin.Engine", h)
	}
	var out []specRoute
	for _, ri := range eng.Routes() {
		out = append(out, specRoute{ri.Method, openAPIPath(ri.Path)})
	}
	slices.SortFunc(out, compareRoutes)
	return slices.Compact(out)
}

// documentedRoutes lists every operation of the spec.
func documentedRoutes(doc *openapi3.T) []specRoute {
	var out []specRoute
	for path, item := range doc.Paths.Map() {
		for method := range item.Operations() {
			out = append(out, specRoute{strings.ToUpper(method), path})
		}
	}
	slices.SortFunc(out, compareRoutes)
	return out
}

func compareRoutes(a, b specRoute) int {
	if c := strings.Compare(a.path, b.path); c != 0 {
		return c
	}
	return strings.Compare(a.method, b.method)
}

// The routes in api/openapi.yaml are exactly the router's routes (STYLE: "A
// contract test checks that the routes in api/openapi.yaml equal the router's").
func TestContractRoutesMatchRouter(t *testing.T) {
	t.Parallel()
	doc, _ := loadSpec(t)
	e := newFakeEnv(t)
	got := routerRoutes(t, e.srv.Config.Handler)
	want := documentedRoutes(doc)
	for _, r := range got {
		if !slices.Contains(want, r) {
			t.Errorf("route %s is served but not in api/openapi.yaml", r)
		}
	}
	for _, r := range want {
		if !slices.Contains(got, r) {
			t.Errorf("operation %s is in api/openapi.yaml but not served", r)
		}
	}
	if len(got) == 0 {
		t.Fatal("the router lists no routes")
	}
}

func TestContractOpenAPIPath(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ name, in, want string }{
		{name: "static", in: "/v1/track", want: "/v1/track"},
		{name: "param", in: "/v1/sites/:site/chats/:chat", want: "/v1/sites/{site}/chats/{chat}"},
		{name: "catch-all", in: "/files/*path", want: "/files/{path}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := openAPIPath(tc.in); got != tc.want {
				t.Errorf("openAPIPath(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
}

// The document declares what the brief of the contract asks: a bearer scheme for
// the operator and privacy routes to come, and the full error code list.
func TestContractDocument(t *testing.T) {
	t.Parallel()
	doc, _ := loadSpec(t)
	bearer := false
	for _, s := range doc.Components.SecuritySchemes {
		if s.Value != nil && s.Value.Type == "http" && strings.EqualFold(s.Value.Scheme, "bearer") {
			bearer = true
		}
	}
	if !bearer {
		t.Error("components.securitySchemes has no http bearer scheme")
	}
	codes := doc.Components.Schemas["ErrorCode"]
	if codes == nil || codes.Value == nil {
		t.Fatal("components.schemas.ErrorCode is missing")
	}
	for _, want := range []string{
		"invalid_json", "invalid_request", "unauthorized", "forbidden", "origin_not_allowed",
		"unknown_site", "not_found", "method_not_allowed", "policy_outdated", "body_too_large",
		"unsupported_media_type", "url_not_in_site", "retention_out_of_bounds", "rate_limited",
		"store_unavailable", "internal",
	} {
		if !slices.Contains(codes.Value.Enum, any(want)) {
			t.Errorf("ErrorCode lacks %q", want)
		}
	}
	// Only track takes text/plain (sendBeacon), with the same schema as JSON.
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.RequestBody == nil || op.RequestBody.Value == nil {
				continue
			}
			content := op.RequestBody.Value.Content
			plain := content["text/plain"]
			switch {
			case path == "/v1/track" && method == http.MethodPost:
				js := content["application/json"]
				if plain == nil || js == nil || plain.Schema.Ref != js.Schema.Ref {
					t.Errorf("%s %s: want application/json and text/plain with the same schema", method, path)
				}
			case plain != nil:
				t.Errorf("%s %s accepts text/plain; only POST /v1/track may", method, path)
			}
		}
	}
}

// checkContract validates a request the service accepted, and its response, against
// api/openapi.yaml: the operation must exist, the status must be documented for
// it, and the headers and body must match the documented schemas. Requests that
// were refused (status ≥ 400) are not validated, as they are meant to break it.
func checkContract(t testing.TB, e *env, rq req, r resp) {
	t.Helper()
	_, router := loadSpec(t)
	hr := contractRequest(t, e, rq)
	route, params, err := router.FindRoute(hr)
	if err != nil {
		t.Errorf("%s %s: not in api/openapi.yaml: %v", rq.method, rq.path, err)
		return
	}
	ctx := context.Background()
	in := &openapi3filter.RequestValidationInput{
		Request: hr, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, MultiError: true},
	}
	if r.status < 400 {
		vr := hr
		// text/plain carries the track JSON (sendBeacon): validate it as the JSON it is,
		// where the operation declares text/plain with the JSON schema
		// (TestContractDocument holds that).
		if mt, _, _ := mime.ParseMediaType(hr.Header.Get("Content-Type")); mt == "text/plain" && route.Operation.RequestBody != nil {
			if content := route.Operation.RequestBody.Value.Content; content["text/plain"] != nil && content["application/json"] != nil &&
				content["text/plain"].Schema.Ref == content["application/json"].Schema.Ref {
				vr = hr.Clone(ctx)
				vr.Body = io.NopCloser(strings.NewReader(rq.body))
				vr.Header.Set("Content-Type", "application/json")
			}
		}
		in.Request = vr
		if err := openapi3filter.ValidateRequest(ctx, in); err != nil {
			t.Errorf("%s %s: request does not match api/openapi.yaml: %v", rq.method, rq.path, err)
		}
	}
	out := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: r.status, Header: r.header,
		Body:    io.NopCloser(bytes.NewReader(r.body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(ctx, out); err != nil {
		t.Errorf("%s %s: response %d does not match api/openapi.yaml: %v\nheaders %v\nbody %.2000s",
			rq.method, rq.path, r.status, err, r.header, r.body)
	}
}

// contractRequest rebuilds the request e.do sent, for validation.
func contractRequest(t testing.TB, e *env, rq req) *http.Request {
	t.Helper()
	var body io.Reader
	if rq.body != "" {
		body = strings.NewReader(rq.body)
	}
	hr, err := http.NewRequest(rq.method, e.srv.URL+rq.path, body)
	if err != nil {
		t.Fatal(err)
	}
	if rq.body != "" {
		ct := rq.ctype
		if ct == "" {
			ct = "application/json"
		}
		hr.Header.Set("Content-Type", ct)
	}
	hr.Header.Set("User-Agent", chromeUA)
	for k, v := range rq.headers {
		hr.Header.Set(k, v)
	}
	for _, c := range rq.cookies {
		hr.AddCookie(c)
	}
	return hr
}

func trackBody(t testing.TB, fields map[string]any) string {
	t.Helper()
	b, err := json.Marshal(fields)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// Real responses of every route, for every status a handler gives short of a
// store outage, match api/openapi.yaml.
func TestContractResponses(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// A visitor of shop with a session, and a granted visitor of optin.
	shopToken := e.mustTrack("shop", shopOrigin+"/", "")
	grant := e.do(req{method: http.MethodPut, path: "/v1/consent", headers: map[string]string{"Origin": "https://optin.example"},
		body: `{"site":"optin","analytics":true,"marketing":false,"policy_version":"v2"}`})
	if grant.status != http.StatusOK {
		t.Fatalf("consent grant: %d %s", grant.status, grant.body)
	}
	optinToken, _ := grant.json(t)["token"].(string)

	chat := e.startChat("shop", shopToken, "Ann", "ann@mail.example", shopOrigin+"/help", map[string]string{"Origin": shopOrigin})
	if chat.status != http.StatusCreated {
		t.Fatalf("chat start: %d %s", chat.status, chat.body)
	}
	chatID, _ := chat.json(t)["chat_id"].(string)
	op := func(key string) map[string]string { return map[string]string{"Authorization": "Bearer " + key} }
	shopVisitor := e.visitorID("shop", shopToken)
	// Subjects to erase: a visitor, a visitor erasing themselves, an identity-less chat.
	goneVisitor := e.visitorID("shop", e.mustTrack("shop", shopOrigin+"/", ""))
	meToken := e.mustTrack("shop", shopOrigin+"/", "")
	lone := e.startChat("shop", "", "Lo", "lo@mail.example", "", nil)
	loneChat, _ := lone.json(t)["chat_id"].(string)
	ret := e.operatorGet("/v1/sites/shop/retention", shopPrivacyKey)
	if ret.status != http.StatusOK {
		t.Fatalf("retention: %d %s", ret.status, ret.body)
	}
	days, _ := json.Marshal(retentionDays(t, ret))
	sameRetention := string(days)

	shop := map[string]string{"Origin": shopOrigin}
	pv := trackBody(t, map[string]any{"site": "shop", "type": "pageview", "url": shopOrigin + "/p", "title": "P", "referrer": "https://search.example/?q=x"})
	big := `{"site":"shop","type":"pageview","url":"` + shopOrigin + `/","title":"` + strings.Repeat("x", MaxBodyBytes) + `"}`

	for _, tc := range []struct {
		name   string
		rq     req
		status int
		// reason or code expected in the body ("" to skip).
		reason, code string
	}{
		{name: "tracked pageview new visitor", rq: req{method: http.MethodPost, path: "/v1/track", body: pv, headers: shop}, status: 200},
		{name: "tracked pageview sendBeacon text/plain", rq: req{method: http.MethodPost, path: "/v1/track", body: pv, ctype: "text/plain;charset=UTF-8", headers: shop}, status: 200},
		{name: "tracked pageview with token header", rq: req{method: http.MethodPost, path: "/v1/track", body: pv,
			headers: map[string]string{"Origin": shopOrigin, tokenHeader: shopToken}}, status: 200},
		{name: "tracked pageview opt-in with grant", rq: req{method: http.MethodPost, path: "/v1/track",
			body:    trackBody(t, map[string]any{"site": "optin", "url": "https://optin.example/a"}),
			headers: map[string]string{"Origin": "https://optin.example", tokenHeader: optinToken}}, status: 200},
		{name: "heartbeat tracked", rq: req{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"heartbeat"}`,
			headers: map[string]string{"Origin": shopOrigin, tokenHeader: shopToken}}, status: 200},
		{name: "leave under Origin null", rq: req{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"leave"}`,
			ctype: "text/plain;charset=UTF-8", headers: map[string]string{"Origin": "null"}, cookies: []*http.Cookie{{Name: "vt_shop", Value: shopToken}}}, status: 200},
		{name: "dnt", rq: req{method: http.MethodPost, path: "/v1/track", body: pv,
			headers: map[string]string{"Origin": shopOrigin, "DNT": "1"}, cookies: []*http.Cookie{{Name: "vt_shop", Value: shopToken}}}, status: 200, reason: "dnt"},
		{name: "dnt count ping without url", rq: req{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"pageview"}`,
			headers: map[string]string{"Origin": shopOrigin, "DNT": "1"}}, status: 200, reason: "dnt"},
		{name: "gpc", rq: req{method: http.MethodPost, path: "/v1/track", body: pv,
			headers: map[string]string{"Origin": shopOrigin, "Sec-GPC": "1", "DNT": "1"}}, status: 200, reason: "gpc"},
		{name: "bot", rq: req{method: http.MethodPost, path: "/v1/track", body: pv,
			headers: map[string]string{"Origin": shopOrigin, "User-Agent": googlebotUA}}, status: 200, reason: "bot"},
		{name: "no_consent", rq: req{method: http.MethodPost, path: "/v1/track",
			body:    trackBody(t, map[string]any{"site": "optin", "type": "pageview", "url": "https://optin.example/"}),
			headers: map[string]string{"Origin": "https://optin.example"}}, status: 200, reason: "no_consent"},
		{name: "no_session heartbeat", rq: req{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"heartbeat"}`,
			headers: shop}, status: 200, reason: "no_session"},
		{name: "invalid_json", rq: req{method: http.MethodPost, path: "/v1/track", body: `{"site":`, headers: shop}, status: 400, code: "invalid_json"},
		{name: "invalid_request wrong type", rq: req{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","url":42}`, headers: shop},
			status: 400, code: "invalid_request"},
		{name: "invalid_request unknown type", rq: req{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"click"}`, headers: shop},
			status: 400, code: "invalid_request"},
		{name: "unknown_site", rq: req{method: http.MethodPost, path: "/v1/track", body: `{"site":"nope","url":"https://nope.example/"}`, headers: shop},
			status: 404, code: "unknown_site"},
		{name: "origin_not_allowed", rq: req{method: http.MethodPost, path: "/v1/track", body: pv, headers: map[string]string{"Origin": "https://evil.example"}},
			status: 403, code: "origin_not_allowed"},
		{name: "body_too_large", rq: req{method: http.MethodPost, path: "/v1/track", body: big, headers: shop}, status: 413, code: "body_too_large"},
		{name: "unsupported_media_type", rq: req{method: http.MethodPost, path: "/v1/track", body: "site=shop&type=pageview",
			ctype: "application/x-www-form-urlencoded", headers: shop}, status: 415, code: "unsupported_media_type"},
		{name: "url_not_in_site", rq: req{method: http.MethodPost, path: "/v1/track",
			body: trackBody(t, map[string]any{"site": "shop", "url": "https://evil.example/"}), headers: shop}, status: 422, code: "url_not_in_site"},
		{name: "consent get defaults", rq: req{method: http.MethodGet, path: "/v1/consent?site=shop", headers: shop}, status: 200},
		{name: "consent get granted", rq: req{method: http.MethodGet, path: "/v1/consent?site=optin",
			headers: map[string]string{"Origin": "https://optin.example", tokenHeader: optinToken}}, status: 200},
		{name: "consent get unknown site", rq: req{method: http.MethodGet, path: "/v1/consent?site=nope"}, status: 404, code: "unknown_site"},
		{name: "consent get foreign origin", rq: req{method: http.MethodGet, path: "/v1/consent?site=shop", headers: map[string]string{"Origin": blogOrigin}},
			status: 403, code: "origin_not_allowed"},
		{name: "consent put grant", rq: req{method: http.MethodPut, path: "/v1/consent", headers: map[string]string{"Origin": "https://optin.example"},
			body: `{"site":"optin","analytics":true,"marketing":true,"policy_version":"v2"}`}, status: 200},
		{name: "consent put refusal", rq: req{method: http.MethodPut, path: "/v1/consent", headers: shop,
			body: `{"site":"shop","analytics":false,"marketing":false,"policy_version":"2026-11"}`}, status: 200},
		{name: "consent put policy_outdated", rq: req{method: http.MethodPut, path: "/v1/consent", headers: map[string]string{"Origin": "https://optin.example"},
			body: `{"site":"optin","analytics":true,"marketing":false,"policy_version":"v1"}`}, status: 409, code: "policy_outdated"},
		{name: "consent put missing field", rq: req{method: http.MethodPut, path: "/v1/consent", headers: shop,
			body: `{"site":"shop","marketing":true,"policy_version":"2026-11"}`}, status: 400, code: "invalid_request"},
		{name: "consent put text/plain", rq: req{method: http.MethodPut, path: "/v1/consent", headers: shop, ctype: "text/plain",
			body: `{"site":"shop","analytics":true,"marketing":false,"policy_version":"2026-11"}`}, status: 415, code: "unsupported_media_type"},
		{name: "consent put too large", rq: req{method: http.MethodPut, path: "/v1/consent", headers: shop,
			body: `{"site":"shop","analytics":true,"marketing":false,"policy_version":"` + strings.Repeat("v", MaxBodyBytes) + `"}`},
			status: 413, code: "body_too_large"},
		{name: "track preflight", rq: req{method: http.MethodOptions, path: "/v1/track",
			headers: map[string]string{"Origin": blogOrigin, "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type, x-visitor-token"}},
			status: 204},
		{name: "consent preflight", rq: req{method: http.MethodOptions, path: "/v1/consent",
			headers: map[string]string{"Origin": shopOrigin, "Access-Control-Request-Method": "PUT"}}, status: 204},
		{name: "preflight unknown origin", rq: req{method: http.MethodOptions, path: "/v1/track",
			headers: map[string]string{"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"}}, status: 403, code: "origin_not_allowed"},
		{name: "chat start without identity", rq: req{method: http.MethodPost, path: "/v1/chats", headers: shop,
			body: `{"site":"shop","contact":{"name":"Bo","email":"bo@mail.example","phone":"+44 20 7946 0000"},"marketing_opt_in":true,"url":"https://shop.example/help"}`}, status: 201},
		{name: "chat start returning", rq: req{method: http.MethodPost, path: "/v1/chats", headers: map[string]string{"Origin": shopOrigin, tokenHeader: shopToken},
			body: `{"site":"shop","contact":{"name":"Ann"}}`}, status: 201},
		{name: "chat start on-chat issues identity", rq: req{method: http.MethodPost, path: "/v1/chats", headers: map[string]string{"Origin": "https://chat.example"},
			body: `{"site":"onchat","contact":{"name":"Cy"},"url":"https://chat.example/"}`}, status: 201},
		{name: "chat start bad email", rq: req{method: http.MethodPost, path: "/v1/chats", headers: shop,
			body: `{"site":"shop","contact":{"email":"not an address"}}`}, status: 400, code: "invalid_request"},
		{name: "chat start foreign origin", rq: req{method: http.MethodPost, path: "/v1/chats", headers: map[string]string{"Origin": blogOrigin},
			body: `{"site":"shop","contact":{"name":"Eve"}}`}, status: 403, code: "origin_not_allowed"},
		{name: "chat start text/plain", rq: req{method: http.MethodPost, path: "/v1/chats", headers: shop, ctype: "text/plain",
			body: `{"site":"shop","contact":{"name":"Eve"}}`}, status: 415, code: "unsupported_media_type"},
		{name: "chat start url not in site", rq: req{method: http.MethodPost, path: "/v1/chats", headers: shop,
			body: `{"site":"shop","url":"https://blog.example/"}`}, status: 422, code: "url_not_in_site"},
		{name: "chat start unknown site", rq: req{method: http.MethodPost, path: "/v1/chats", body: `{"site":"nope"}`}, status: 404, code: "unknown_site"},
		{name: "chats preflight", rq: req{method: http.MethodOptions, path: "/v1/chats",
			headers: map[string]string{"Origin": "https://chat.example", "Access-Control-Request-Method": "POST"}}, status: 204},
		{name: "live", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/live?within=10m&limit=5", headers: op(shopOperatorKey)}, status: 200},
		{name: "live by privacy key", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/live", headers: op(shopPrivacyKey)}, status: 200},
		{name: "live without key", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/live"}, status: 401, code: "unauthorized"},
		{name: "live with wrong key", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/live", headers: op("nope-nope-nope")}, status: 401, code: "unauthorized"},
		{name: "live with another site's key", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/live", headers: op(blogOperatorKey)}, status: 403, code: "forbidden"},
		{name: "live of unknown site", rq: req{method: http.MethodGet, path: "/v1/sites/nope/visitors/live", headers: op(shopOperatorKey)}, status: 404, code: "unknown_site"},
		{name: "live within out of range", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/live?within=2h", headers: op(shopOperatorKey)}, status: 400, code: "invalid_request"},
		{name: "live bad cursor", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/live?cursor=forged", headers: op(shopOperatorKey)}, status: 400, code: "invalid_request"},
		{name: "chat context", rq: req{method: http.MethodGet, path: "/v1/sites/shop/chats/" + chatID, headers: op(shopOperatorKey)}, status: 200},
		{name: "chat context not found", rq: req{method: http.MethodGet, path: "/v1/sites/shop/chats/AAAAAAAAAAAAAAAAAAAAAA", headers: op(shopOperatorKey)}, status: 404, code: "not_found"},
		{name: "chat context of another site", rq: req{method: http.MethodGet, path: "/v1/sites/blog/chats/" + chatID, headers: op(blogOperatorKey)}, status: 404, code: "not_found"},
		{name: "stats", rq: req{method: http.MethodGet, path: "/v1/sites/shop/stats", headers: op(shopOperatorKey)}, status: 200},
		{name: "stats of a day", rq: req{method: http.MethodGet, path: "/v1/sites/shop/stats?day=2026-01-02", headers: op(shopOperatorKey)}, status: 200},
		{name: "stats bad day", rq: req{method: http.MethodGet, path: "/v1/sites/shop/stats?day=yesterday", headers: op(shopOperatorKey)}, status: 400, code: "invalid_request"},
		{name: "retention", rq: req{method: http.MethodGet, path: "/v1/sites/shop/retention", headers: op(shopPrivacyKey)}, status: 200},
		{name: "retention by an operator", rq: req{method: http.MethodGet, path: "/v1/sites/shop/retention", headers: op(shopOperatorKey)}, status: 403, code: "forbidden"},
		{name: "retention put", rq: req{method: http.MethodPut, path: "/v1/sites/shop/retention", headers: op(shopPrivacyKey), body: sameRetention}, status: 200},
		{name: "retention put out of bounds", rq: req{method: http.MethodPut, path: "/v1/sites/shop/retention", headers: op(shopPrivacyKey),
			body: `{"sessions":0,"profiles":395,"chats":90,"consents":1095,"audit":365}`}, status: 422, code: "retention_out_of_bounds"},
		{name: "retention put incomplete", rq: req{method: http.MethodPut, path: "/v1/sites/shop/retention", headers: op(shopPrivacyKey),
			body: `{"sessions":30}`}, status: 400, code: "invalid_request"},
		{name: "retention put text/plain", rq: req{method: http.MethodPut, path: "/v1/sites/shop/retention", headers: op(shopPrivacyKey), ctype: "text/plain",
			body: sameRetention}, status: 415, code: "unsupported_media_type"},
		{name: "subject search", rq: req{method: http.MethodPost, path: "/v1/sites/shop/subjects/search", headers: op(shopPrivacyKey),
			body: `{"email":"ann@mail.example"}`}, status: 200},
		{name: "subject search without match", rq: req{method: http.MethodPost, path: "/v1/sites/shop/subjects/search", headers: op(shopPrivacyKey),
			body: `{"email":"nobody@mail.example"}`}, status: 200},
		{name: "subject search without email", rq: req{method: http.MethodPost, path: "/v1/sites/shop/subjects/search", headers: op(shopPrivacyKey),
			body: `{}`}, status: 400, code: "invalid_request"},
		{name: "visitor export", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/" + shopVisitor, headers: op(shopPrivacyKey)}, status: 200},
		{name: "visitor export unknown", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/AAAAAAAAAAAAAAAAAAAAAA", headers: op(shopPrivacyKey)}, status: 404, code: "not_found"},
		{name: "visitor rectify", rq: req{method: http.MethodPatch, path: "/v1/sites/shop/visitors/" + shopVisitor, headers: op(shopPrivacyKey),
			body: `{"contact":{"phone":"+44 20 7946 0001"}}`}, status: 200},
		{name: "visitor rectify without contact", rq: req{method: http.MethodPatch, path: "/v1/sites/shop/visitors/" + shopVisitor, headers: op(shopPrivacyKey),
			body: `{}`}, status: 400, code: "invalid_request"},
		{name: "audit", rq: req{method: http.MethodGet, path: "/v1/sites/shop/audit", headers: op(shopPrivacyKey)}, status: 200},
		{name: "audit of a target", rq: req{method: http.MethodGet, path: "/v1/sites/shop/audit?target=" + shopVisitor + "&limit=10", headers: op(shopPrivacyKey)}, status: 200},
		// An e-mail never travels in a URL (proxies and browsers log URLs): 400.
		{name: "audit of an e-mail target", rq: req{method: http.MethodGet, path: "/v1/sites/shop/audit?target=ada%40math.example", headers: op(shopPrivacyKey)}, status: 400, code: "invalid_request"},
		{name: "audit bad limit", rq: req{method: http.MethodGet, path: "/v1/sites/shop/audit?limit=0", headers: op(shopPrivacyKey)}, status: 400, code: "invalid_request"},
		{name: "processing record", rq: req{method: http.MethodGet, path: "/v1/sites/shop/processing-record", headers: op(shopPrivacyKey)}, status: 200},
		{name: "processing record markdown", rq: req{method: http.MethodGet, path: "/v1/sites/shop/processing-record?format=md", headers: op(shopPrivacyKey)}, status: 200},
		{name: "processing record bad format", rq: req{method: http.MethodGet, path: "/v1/sites/shop/processing-record?format=xml", headers: op(shopPrivacyKey)}, status: 400, code: "invalid_request"},
		{name: "my export", rq: req{method: http.MethodGet, path: "/v1/me?site=shop", headers: map[string]string{"Origin": shopOrigin, tokenHeader: shopToken}}, status: 200},
		{name: "my export without identity", rq: req{method: http.MethodGet, path: "/v1/me?site=shop", headers: shop}, status: 401, code: "unauthorized"},
		{name: "my export foreign origin", rq: req{method: http.MethodGet, path: "/v1/me?site=shop",
			headers: map[string]string{"Origin": blogOrigin, tokenHeader: shopToken}}, status: 403, code: "origin_not_allowed"},
		{name: "me preflight", rq: req{method: http.MethodOptions, path: "/v1/me",
			headers: map[string]string{"Origin": shopOrigin, "Access-Control-Request-Method": "DELETE"}}, status: 204},
		{name: "my erasure", rq: req{method: http.MethodDelete, path: "/v1/me?site=shop", headers: shop,
			cookies: []*http.Cookie{{Name: "vt_shop", Value: meToken}}}, status: 204},
		{name: "chat erasure", rq: req{method: http.MethodDelete, path: "/v1/sites/shop/chats/" + loneChat, headers: op(shopPrivacyKey)}, status: 204},
		{name: "chat erasure again", rq: req{method: http.MethodDelete, path: "/v1/sites/shop/chats/" + loneChat, headers: op(shopPrivacyKey)}, status: 404, code: "not_found"},
		{name: "visitor erasure", rq: req{method: http.MethodDelete, path: "/v1/sites/shop/visitors/" + goneVisitor, headers: op(shopPrivacyKey)}, status: 204},
		{name: "healthz", rq: req{method: http.MethodGet, path: "/healthz"}, status: 200},
		{name: "readyz", rq: req{method: http.MethodGet, path: "/readyz"}, status: 200},
		{name: "healthz head", rq: req{method: http.MethodHead, path: "/healthz"}, status: 200},
		{name: "readyz head", rq: req{method: http.MethodHead, path: "/readyz"}, status: 200},
		{name: "widget head", rq: req{method: http.MethodHead, path: "/v1/widget.js"}, status: 200},
		{name: "home", rq: req{method: http.MethodGet, path: "/"}, status: 200},
		{name: "home head", rq: req{method: http.MethodHead, path: "/"}, status: 200},
		{name: "openapi", rq: req{method: http.MethodGet, path: "/v1/openapi.yaml"}, status: 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.rq)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			checkContract(t, e, tc.rq, r)
			if tc.reason != "" {
				if got := r.json(t)["reason"]; got != tc.reason {
					t.Errorf("reason %v, want %q", got, tc.reason)
				}
			}
			if tc.code != "" {
				if got := r.errorCode(t); got != tc.code {
					t.Errorf("code %q, want %q", got, tc.code)
				}
			}
		})
	}
}

// With Redis unreachable, the routes that need it answer 503 store_unavailable with
// Retry-After, as documented.
func TestContractStoreUnavailable(t *testing.T) {
	t.Parallel()
	e := newEnv(t, func(o *envOptions) { o.trackTimeout, o.storeTimeout = 150*time.Millisecond, 150*time.Millisecond })
	token := e.mustTrack("shop", shopOrigin+"/", "")
	e.redis.Stop()
	for _, tc := range []struct {
		name string
		rq   req
	}{
		{name: "readyz", rq: req{method: http.MethodGet, path: "/readyz"}},
		{name: "track", rq: req{method: http.MethodPost, path: "/v1/track", headers: map[string]string{"Origin": shopOrigin, tokenHeader: token},
			body: trackBody(t, map[string]any{"site": "shop", "url": shopOrigin + "/cart"})}},
		{name: "consent get", rq: req{method: http.MethodGet, path: "/v1/consent?site=shop", headers: map[string]string{tokenHeader: token}}},
		{name: "consent put", rq: req{method: http.MethodPut, path: "/v1/consent",
			body: `{"site":"shop","analytics":true,"marketing":false,"policy_version":"2026-11"}`}},
		{name: "chat start", rq: req{method: http.MethodPost, path: "/v1/chats", headers: map[string]string{tokenHeader: token},
			body: `{"site":"shop","contact":{"name":"Ann"}}`}},
		{name: "live", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/live", headers: map[string]string{"Authorization": "Bearer " + shopOperatorKey}}},
		{name: "stats", rq: req{method: http.MethodGet, path: "/v1/sites/shop/stats", headers: map[string]string{"Authorization": "Bearer " + shopOperatorKey}}},
		{name: "my export", rq: req{method: http.MethodGet, path: "/v1/me?site=shop", headers: map[string]string{tokenHeader: token}}},
		{name: "visitor export", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/" + e.visitorID("shop", token),
			headers: map[string]string{"Authorization": "Bearer " + shopPrivacyKey}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := e.do(tc.rq)
			if r.status != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503: %s", r.status, r.body)
			}
			checkContract(t, e, tc.rq, r)
		})
	}
	e.redis.Restart(t)
	// go-redis backs off dialling after failures: wait until the client is back, so
	// that the harness's TTL scan can run.
	deadline := time.Now().Add(15 * time.Second)
	for e.rdb.Ping(context.Background()).Err() != nil {
		if time.Now().After(deadline) {
			t.Fatal("Redis client did not reconnect after the restart")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Every route that reaches the store answers 503 store_unavailable with
// Retry-After when the domain says the store is unavailable, and 500 internal
// without detail for an error it does not know, as documented; only the
// latter is logged as an internal error. Over a fake domain: no Redis, no
// timeout waited on.
func TestContractStoreErrorsEveryRoute(t *testing.T) {
	t.Parallel()
	op := map[string]string{"Authorization": "Bearer " + shopOperatorKey}
	priv := map[string]string{"Authorization": "Bearer " + shopPrivacyKey}
	routes := []struct {
		name string
		rq   req
	}{
		{name: "track", rq: req{method: http.MethodPost, path: "/v1/track", headers: map[string]string{"Origin": shopOrigin},
			body: `{"site":"shop","url":"https://shop.example/cart"}`}},
		{name: "consent get", rq: req{method: http.MethodGet, path: "/v1/consent?site=shop"}},
		{name: "consent put", rq: req{method: http.MethodPut, path: "/v1/consent",
			body: `{"site":"shop","analytics":true,"marketing":false,"policy_version":"2026-11"}`}},
		{name: "chat start", rq: req{method: http.MethodPost, path: "/v1/chats", body: `{"site":"shop","contact":{"name":"Ann"}}`}},
		{name: "my export", rq: req{method: http.MethodGet, path: "/v1/me?site=shop", headers: map[string]string{tokenHeader: "a.b"}}},
		{name: "live", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/live", headers: op}},
		{name: "live stream", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/live/stream", headers: op}},
		{name: "chat context", rq: req{method: http.MethodGet, path: "/v1/sites/shop/chats/AAAAAAAAAAAAAAAAAAAAAA", headers: op}},
		{name: "stats", rq: req{method: http.MethodGet, path: "/v1/sites/shop/stats", headers: op}},
		{name: "stats range", rq: req{method: http.MethodGet, path: "/v1/sites/shop/stats?from=2026-11-01&to=2026-11-02", headers: op}},
		{name: "retention", rq: req{method: http.MethodGet, path: "/v1/sites/shop/retention", headers: priv}},
		{name: "retention put", rq: req{method: http.MethodPut, path: "/v1/sites/shop/retention", headers: priv,
			body: `{"sessions":30,"profiles":395,"chats":90,"consents":1095,"audit":365}`}},
		{name: "subject search", rq: req{method: http.MethodPost, path: "/v1/sites/shop/subjects/search", headers: priv, body: `{"email":"ann@mail.example"}`}},
		{name: "visitor export", rq: req{method: http.MethodGet, path: "/v1/sites/shop/visitors/AAAAAAAAAAAAAAAAAAAAAA", headers: priv}},
		{name: "visitor rectify", rq: req{method: http.MethodPatch, path: "/v1/sites/shop/visitors/AAAAAAAAAAAAAAAAAAAAAA", headers: priv,
			body: `{"contact":{"phone":"+44 20 7946 0001"}}`}},
		{name: "visitor erasure", rq: req{method: http.MethodDelete, path: "/v1/sites/shop/visitors/AAAAAAAAAAAAAAAAAAAAAA", headers: priv}},
		{name: "chat erasure", rq: req{method: http.MethodDelete, path: "/v1/sites/shop/chats/AAAAAAAAAAAAAAAAAAAAAA", headers: priv}},
		{name: "audit", rq: req{method: http.MethodGet, path: "/v1/sites/shop/audit", headers: priv}},
		{name: "readyz", rq: req{method: http.MethodGet, path: "/readyz"}},
	}
	for _, tc := range []struct {
		name   string
		err    error
		status int
		code   string
	}{
		{name: "unavailable", err: fmt.Errorf("read: %w", visitor.ErrStoreUnavailable), status: http.StatusServiceUnavailable, code: "store_unavailable"},
		{name: "unknown", err: errors.New("redis: WRONGTYPE secret-detail"), status: http.StatusInternalServerError, code: "internal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newFakeEnv(t)
			// The token of /v1/me is one the fake knows, so the call reaches the store.
			known := e.fake.issue()
			e.fake.setFail(tc.err)
			for _, rt := range routes {
				rq := rt.rq
				if rq.headers[tokenHeader] != "" {
					rq.headers = map[string]string{tokenHeader: known}
				}
				r := e.do(rq)
				if r.status != tc.status {
					t.Errorf("%s: status %d, want %d: %s", rt.name, r.status, tc.status, r.body)
					continue
				}
				assertErrorShape(t, r, tc.code)
				checkContract(t, e, rq, r)
				if strings.Contains(string(r.body), "secret-detail") || strings.Contains(string(r.body), "redis") {
					t.Errorf("%s: the error body leaks its cause: %s", rt.name, r.body)
				}
				if got, want := r.header.Get("Retry-After") != "", tc.status == http.StatusServiceUnavailable; got != want {
					t.Errorf("%s: Retry-After %q, want one only with 503", rt.name, r.header.Get("Retry-After"))
				}
			}
			if got, want := strings.Contains(e.logs.String(), `"msg":"internal error"`), tc.status == http.StatusInternalServerError; got != want {
				t.Errorf("internal error logged: %v, want %v", got, want)
			}
		})
	}
}

// contractRecorder records what checkContract reports instead of failing the test.
type contractRecorder struct {
	testing.TB
	errs []string
}

func (r *contractRecorder) Helper() {}

func (r *contractRecorder) Errorf(format string, args ...any) {
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

func (r *contractRecorder) Error(args ...any) { r.errs = append(r.errs, fmt.Sprint(args...)) }

// checkContract is not vacuous: responses that break the contract are reported.
func TestContractCatchesViolations(t *testing.T) {
	t.Parallel()
	e := newFakeEnv(t)
	track := req{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","url":"https://shop.example/"}`}
	widget := func(kv ...string) http.Header {
		h := http.Header{"Content-Type": {"application/json; charset=utf-8"}, "Vary": {"Origin"}}
		for i := 0; i+1 < len(kv); i += 2 {
			h.Set(kv[i], kv[i+1])
		}
		return h
	}
	for _, tc := range []struct {
		name string
		rq   req
		r    resp
	}{
		{name: "tracked without token", rq: track, r: resp{status: 200, header: widget(), body: []byte(`{"tracked":true}`)}},
		{name: "tracked with an extra field", rq: track, r: resp{status: 200, header: widget(), body: []byte(`{"tracked":true,"token":"a.b","visitor_id":"v"}`)}},
		{name: "unknown reason", rq: track, r: resp{status: 200, header: widget(), body: []byte(`{"tracked":false,"reason":"sleepy"}`)}},
		{name: "Access-Control-Allow-Origin *", rq: track, r: resp{status: 200, header: widget("Access-Control-Allow-Origin", "*"), body: []byte(`{"tracked":false,"reason":"dnt"}`)}},
		{name: "no Vary", rq: track, r: resp{status: 200, header: http.Header{"Content-Type": {"application/json"}}, body: []byte(`{"tracked":false,"reason":"dnt"}`)}},
		{name: "cookie that is not HttpOnly", rq: track, r: resp{status: 200, header: widget("Set-Cookie", "vt_shop=a.b; Path=/; Secure"), body: []byte(`{"tracked":true,"token":"a.b"}`)}},
		{name: "unknown error code", rq: track, r: resp{status: 400, header: widget(), body: []byte(`{"error":{"code":"oops","message":"m"}}`)}},
		{name: "code of another status", rq: track, r: resp{status: 400, header: widget(), body: []byte(`{"error":{"code":"unknown_site","message":"m"}}`)}},
		{name: "error of another shape", rq: track, r: resp{status: 400, header: widget(), body: []byte(`{"code":"invalid_json","message":"m"}`)}},
		{name: "undocumented status", rq: track, r: resp{status: 418, header: widget(), body: []byte(`{"error":{"code":"internal","message":"m"}}`)}},
		{name: "503 without Retry-After", rq: track, r: resp{status: 503, header: widget(), body: []byte(`{"error":{"code":"store_unavailable","message":"m"}}`)}},
		{name: "internal leaking detail", rq: track, r: resp{status: 500, header: widget(), body: []byte(`{"error":{"code":"internal","message":"redis: ERR wrong type"}}`)}},
		{name: "consent get with token", rq: req{method: http.MethodGet, path: "/v1/consent?site=shop"},
			r: resp{status: 200, header: widget(), body: []byte(`{"analytics":true,"marketing":false,"policy_version":"p","valid_until":null,"token":"a.b"}`)}},
		{name: "consent put with an undocumented reason", rq: req{method: http.MethodPut, path: "/v1/consent", body: `{"site":"shop","analytics":true,"marketing":false,"policy_version":"2026-11"}`},
			r: resp{status: 200, header: widget(), body: []byte(`{"analytics":false,"marketing":false,"policy_version":"p","valid_until":null,"reason":"bot"}`)}},
		{name: "preflight without Allow-Headers", rq: req{method: http.MethodOptions, path: "/v1/track", headers: map[string]string{"Origin": shopOrigin}},
			r: resp{status: 204, header: http.Header{"Vary": {"Origin"}, "Access-Control-Allow-Origin": {shopOrigin}, "Access-Control-Allow-Credentials": {"true"}, "Access-Control-Allow-Methods": {"POST"}}}},
		{name: "undocumented route", rq: req{method: http.MethodGet, path: "/v1/nope"}, r: resp{status: 200, header: widget(), body: []byte(`{}`)}},
		{name: "undocumented request field type", rq: req{method: http.MethodPost, path: "/v1/track", body: `{"site":"shop","type":"click"}`},
			r: resp{status: 200, header: widget(), body: []byte(`{"tracked":false,"reason":"dnt"}`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &contractRecorder{TB: t}
			checkContract(rec, e, tc.rq, tc.r)
			if len(rec.errs) == 0 {
				t.Fatalf("checkContract accepted %d %s", tc.r.status, tc.r.body)
			}
			t.Logf("reported: %.300s", rec.errs[0])
		})
	}
}

// Every operation states its security: the operator and privacy routes the
// Bearer key, every other route `security: []` (issue 18).
func TestContractSecurity(t *testing.T) {
	t.Parallel()
	doc, _ := loadSpec(t)
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if op.Security == nil {
				t.Errorf("%s %s states no security", method, path)
				continue
			}
			keyed := strings.HasPrefix(path, "/v1/sites/{site}/") && path != "/v1/sites/{site}/widget-config"
			if got := len(*op.Security) > 0; got != keyed {
				t.Errorf("%s %s: security %v, want the bearer key %v", method, path, *op.Security, keyed)
			}
		}
	}
}

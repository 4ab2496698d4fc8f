package httpapi

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/visitord/visitord/internal/web"
)

// widgetMaxGzip is the widget script's budget, gzipped.
const widgetMaxGzip = 4 << 10

// assetServer serves the API over testSites with or without the demo shop,
// over a fake domain: the files need no store.
func assetServer(t *testing.T, demo bool) *httptest.Server {
	t.Helper()
	return newFakeEnv(t, func(o *envOptions) { o.demo = demo }).srv
}

// get sends a GET with headers; the transport neither asks for nor undoes gzip.
func getAsset(t *testing.T, srv *httptest.Server, path string, headers map[string]string) resp {
	t.Helper()
	rq, err := http.NewRequest(http.MethodGet, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range headers {
		rq.Header.Set(k, v)
	}
	client := &http.Client{Transport: &http.Transport{DisableCompression: true}}
	res, err := client.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp{status: res.StatusCode, header: res.Header, body: b, cookies: res.Cookies()}
}

func gunzipBody(t *testing.T, b []byte) []byte {
	t.Helper()
	r, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestWidgetScript(t *testing.T) {
	t.Parallel()
	srv := assetServer(t, false)
	set, err := web.Load()
	if err != nil {
		t.Fatal(err)
	}
	want := set.Get("widget.js").Body

	plain := getAsset(t, srv, "/v1/widget.js", nil)
	if plain.status != http.StatusOK {
		t.Fatalf("status %d, want 200: %s", plain.status, plain.body)
	}
	for _, h := range []struct{ name, want string }{
		{"Content-Type", "text/javascript; charset=utf-8"},
		{"Cache-Control", "public, max-age=300"},
		{"X-Content-Type-Options", "nosniff"},
		{"Content-Security-Policy", fileCSP},
		{"Content-Encoding", ""},
	} {
		if got := plain.header.Get(h.name); got != h.want {
			t.Errorf("%s = %q, want %q", h.name, got, h.want)
		}
	}
	if !bytes.Equal(plain.body, want) {
		t.Error("the body is not the embedded widget.js")
	}
	tag := plain.header.Get("ETag")
	if !regexp.MustCompile(`^"[A-Za-z0-9_-]+"$`).MatchString(tag) {
		t.Errorf("ETag %q is not a strong entity tag", tag)
	}

	// Gzipped for browsers that accept it, under the size budget, with its own tag.
	zipped := getAsset(t, srv, "/v1/widget.js", map[string]string{"Accept-Encoding": "gzip, deflate, br"})
	if got := zipped.header.Get("Content-Encoding"); got != "gzip" {
		t.Fatalf("Content-Encoding = %q, want gzip", got)
	}
	if n := len(zipped.body); n >= widgetMaxGzip {
		t.Errorf("widget.js is %d bytes gzipped, want under %d", n, widgetMaxGzip)
	}
	t.Logf("widget.js: %d bytes, %d gzipped", len(plain.body), len(zipped.body))
	if !bytes.Equal(gunzipBody(t, zipped.body), want) {
		t.Error("the gzipped body is not the embedded widget.js")
	}
	gzTag := zipped.header.Get("ETag")
	if gzTag == tag || gzTag == "" {
		t.Errorf("gzipped ETag %q must differ from the plain %q", gzTag, tag)
	}
	if !strings.Contains(zipped.header.Get("Vary"), "Accept-Encoding") {
		t.Errorf("Vary = %q, want Accept-Encoding", zipped.header.Get("Vary"))
	}

	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{name: "same tag", headers: map[string]string{"If-None-Match": tag}, want: http.StatusNotModified},
		{name: "weak form of the tag", headers: map[string]string{"If-None-Match": "W/" + tag}, want: http.StatusNotModified},
		{name: "tag in a list", headers: map[string]string{"If-None-Match": `"old", ` + tag}, want: http.StatusNotModified},
		{name: "star", headers: map[string]string{"If-None-Match": "*"}, want: http.StatusNotModified},
		{name: "gzip tag", headers: map[string]string{"If-None-Match": gzTag, "Accept-Encoding": "gzip"}, want: http.StatusNotModified},
		{name: "other tag", headers: map[string]string{"If-None-Match": `"old"`}, want: http.StatusOK},
		{name: "plain tag for a gzip request", headers: map[string]string{"If-None-Match": tag, "Accept-Encoding": "gzip"}, want: http.StatusOK},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := getAsset(t, srv, "/v1/widget.js", tc.headers)
			if r.status != tc.want {
				t.Fatalf("status %d, want %d", r.status, tc.want)
			}
			if r.status == http.StatusNotModified {
				if len(r.body) != 0 {
					t.Errorf("a 304 has a body of %d bytes", len(r.body))
				}
				if r.header.Get("ETag") == "" || r.header.Get("Cache-Control") != "public, max-age=300" {
					t.Errorf("a 304 lacks ETag or Cache-Control: %v", r.header)
				}
			}
		})
	}
}

func TestWidgetConfig(t *testing.T) {
	t.Parallel()
	srv := assetServer(t, false)
	for _, tc := range []struct {
		name     string
		site     string
		origin   string
		status   int
		code     string
		wantJSON map[string]any
	}{
		{name: "opt-in site from its origin", site: "optin", origin: "https://optin.example", status: http.StatusOK,
			wantJSON: map[string]any{"site": "optin", "consent_mode": "opt-in", "policy_version": "v2",
				"legal_text": "Analytics only with your consent.", "marketing_question": marketingQuestion}},
		{name: "opt-out site without Origin", site: "shop", status: http.StatusOK,
			wantJSON: map[string]any{"site": "shop", "consent_mode": "opt-out", "policy_version": "2026-11",
				"legal_text": "We record the pages you visit to help our chat team.", "marketing_question": marketingQuestion}},
		{name: "another site's origin", site: "optin", origin: shopOrigin, status: http.StatusForbidden, code: "origin_not_allowed"},
		{name: "unknown site", site: "nope", origin: shopOrigin, status: http.StatusNotFound, code: "unknown_site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.origin != "" {
				h["Origin"] = tc.origin
			}
			r := getAsset(t, srv, "/v1/sites/"+tc.site+"/widget-config", h)
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if tc.code != "" {
				if got := r.errorCode(t); got != tc.code {
					t.Errorf("code %q, want %q", got, tc.code)
				}
				return
			}
			m := r.json(t)
			for k, v := range tc.wantJSON {
				if m[k] != v {
					t.Errorf("%s = %v, want %v", k, m[k], v)
				}
			}
			if len(m) != len(tc.wantJSON) {
				t.Errorf("answer has fields %v, want exactly %v", m, tc.wantJSON)
			}
			if tc.origin != "" {
				if got := r.header.Get("Access-Control-Allow-Origin"); got != tc.origin {
					t.Errorf("Access-Control-Allow-Origin = %q, want %q", got, tc.origin)
				}
				if got := r.header.Get("Access-Control-Allow-Credentials"); got != "true" {
					t.Errorf("Access-Control-Allow-Credentials = %q, want true", got)
				}
			}
			if !strings.Contains(r.header.Get("Vary"), "Origin") {
				t.Errorf("Vary = %q, want Origin", r.header.Get("Vary"))
			}
		})
	}

	// The preflight of a configured origin is answered, as on the other widget routes.
	rq, _ := http.NewRequest(http.MethodOptions, srv.URL+"/v1/sites/optin/widget-config", nil)
	rq.Header.Set("Origin", "https://optin.example")
	rq.Header.Set("Access-Control-Request-Method", "GET")
	res, err := http.DefaultClient.Do(rq)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusNoContent || res.Header.Get("Access-Control-Allow-Origin") != "https://optin.example" {
		t.Errorf("preflight: status %d, Access-Control-Allow-Origin %q", res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
	}
}

func TestDemoShopOnlyWithDemo(t *testing.T) {
	t.Parallel()
	paths := []string{"/demo", "/demo/products", "/demo/cart", "/demo/demo.js", "/demo/demo.css"}
	t.Run("without the demo site", func(t *testing.T) {
		srv := assetServer(t, false)
		for _, p := range paths {
			if r := getAsset(t, srv, p, nil); r.status != http.StatusNotFound {
				t.Errorf("%s: status %d, want 404", p, r.status)
			}
		}
	})
	t.Run("with the demo site", func(t *testing.T) {
		srv := assetServer(t, true)
		for _, p := range paths {
			r := getAsset(t, srv, p, nil)
			if r.status != http.StatusOK {
				t.Errorf("%s: status %d, want 200", p, r.status)
				continue
			}
			if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("%s: X-Content-Type-Options = %q", p, got)
			}
			if strings.HasSuffix(p, ".js") || strings.HasSuffix(p, ".css") {
				continue
			}
			if got := r.header.Get("Content-Security-Policy"); got != pageCSP {
				t.Errorf("%s: Content-Security-Policy = %q, want %q", p, got, pageCSP)
			}
			body := string(r.body)
			for _, want := range []string{`<script async src="/v1/widget.js" data-site="demo"></script>`, `<script defer src="/demo/demo.js"></script>`, `id="chat-form"`} {
				if !strings.Contains(body, want) {
					t.Errorf("%s lacks %s", p, want)
				}
			}
			assertNoInlineCode(t, p, body)
		}
	})
}

func TestConsoleSecurityHeaders(t *testing.T) {
	t.Parallel()
	srv := assetServer(t, false)
	r := getAsset(t, srv, "/console", nil)
	if r.status != http.StatusOK {
		t.Fatalf("status %d, want 200", r.status)
	}
	csp := r.header.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self'", "connect-src 'self'", "style-src 'self'", "frame-ancestors 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("Content-Security-Policy %q lacks %s", csp, want)
		}
	}
	if strings.Contains(csp, "unsafe-") {
		t.Errorf("Content-Security-Policy %q allows unsafe sources", csp)
	}
	for _, h := range []struct{ name, want string }{
		{"Referrer-Policy", "no-referrer"},
		{"X-Content-Type-Options", "nosniff"},
		{"X-Frame-Options", "DENY"},
		{"Content-Type", "text/html; charset=utf-8"},
	} {
		if got := r.header.Get(h.name); got != h.want {
			t.Errorf("%s = %q, want %q", h.name, got, h.want)
		}
	}
	assertNoInlineCode(t, "/console", string(r.body))
	for _, p := range []string{"/console/console.js", "/console/console.css"} {
		if r := getAsset(t, srv, p, nil); r.status != http.StatusOK || r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: status %d, headers %v", p, r.status, r.header)
		}
	}
	// The console's script builds the page with textContent only.
	set, err := web.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"console.js", "demo.js", "widget.js"} {
		if src := string(set.Get(name).Body); regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(`).MatchString(src) {
			t.Errorf("%s writes HTML or evaluates strings", name)
		}
	}
}

// assertNoInlineCode fails on inline scripts, event handler attributes and style
// attributes, which the pages' CSP would block.
func assertNoInlineCode(t *testing.T, name, html string) {
	t.Helper()
	for _, m := range regexp.MustCompile(`(?is)<script([^>]*)>(.*?)</script>`).FindAllStringSubmatch(html, -1) {
		if !strings.Contains(m[1], "src=") || strings.TrimSpace(m[2]) != "" {
			t.Errorf("%s has an inline script: %s", name, m[0])
		}
	}
	for _, re := range []*regexp.Regexp{regexp.MustCompile(`(?i)\son[a-z]+\s*=`), regexp.MustCompile(`(?i)\sstyle\s*=`), regexp.MustCompile(`(?i)<style`)} {
		if m := re.FindString(html); m != "" {
			t.Errorf("%s has inline code: %s", name, m)
		}
	}
}

func TestEtagMatchesAndAcceptsGzip(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, header string
		want         bool
	}{
		{name: "empty", header: "", want: false},
		{name: "exact", header: `"abc"`, want: true},
		{name: "weak", header: `W/"abc"`, want: true},
		{name: "list", header: `"x", "abc"`, want: true},
		{name: "star", header: "*", want: true},
		{name: "other", header: `"abcd"`, want: false},
	} {
		t.Run("etag "+tc.name, func(t *testing.T) {
			if got := etagMatches(tc.header, `"abc"`); got != tc.want {
				t.Errorf("etagMatches(%q) = %v, want %v", tc.header, got, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name, header string
		want         bool
	}{
		{name: "empty", header: "", want: false},
		{name: "gzip", header: "gzip", want: true},
		{name: "browser", header: "gzip, deflate, br, zstd", want: true},
		{name: "refused", header: "gzip;q=0, br", want: false},
		{name: "upper case", header: "GZIP", want: true},
		{name: "star", header: "*", want: true},
		{name: "identity only", header: "identity", want: false},
	} {
		t.Run("gzip "+tc.name, func(t *testing.T) {
			if got := acceptsGzip(tc.header); got != tc.want {
				t.Errorf("acceptsGzip(%q) = %v, want %v", tc.header, got, tc.want)
			}
		})
	}
}

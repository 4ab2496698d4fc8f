package httpapi

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/gin-gonic/gin"
)

// decodeTrackSlow is decodeTrack without its fast path: encoding/json alone.
func decodeTrackSlow(b []byte) (trackRequest, error) {
	r, err := decodeTrackJSON(b)
	if err != nil {
		return trackRequest{}, err
	}
	return checkTrack(r)
}

// sameDecoding fails unless decodeTrack and encoding/json alone agree on b:
// the same request, or errors of the same message.
func sameDecoding(t *testing.T, b []byte) {
	t.Helper()
	got, gotErr := decodeTrack(b)
	want, wantErr := decodeTrackSlow(b)
	if (gotErr == nil) != (wantErr == nil) || (gotErr != nil && gotErr.Error() != wantErr.Error()) {
		t.Fatalf("decodeTrack(%q): error %v, encoding/json %v", b, gotErr, wantErr)
	}
	if got != want {
		t.Fatalf("decodeTrack(%q) = %+v, encoding/json %+v", b, got, want)
	}
}

var trackBodies = []string{
	`{"site":"shop","type":"pageview","url":"https://shop.example/a?utm_source=x#f","title":"A","referrer":"https://search.example/"}`,
	` { "site" : "shop" ,` + "\n\t\r" + `"url":"https://shop.example/" } ` + "\n",
	`{"site":"shop","type":"heartbeat"}`,
	"{\"site\":\"shop\",\"title\":\"Tasse – café 日本 \u2028 😀\"}",
	`{"site":"shop","title":"an \"escaped\" title","url":"https:\/\/shop.example\/"}`,
	`{"site":"shop","title":"\u00e9\ud83d\ude00 \ud800"}`,
	`{"site":"shop","site":"other"}`,
	`{"site":"shop","SITE":"other"}`,
	`{"Site":"shop"}`,
	`{"ſite":"shop"}`,
	`{"site":"shop","extra":"x"}`,
	`{"site":"shop","extra":{"a":[1,null]}}`,
	`{"site":"shop","type":null}`,
	`{"site":"shop","url":"null"}`,
	`{"site":42}`,
	`{"site":""}`,
	`{}`,
	` {} `,
	`{"site":"shop",}`,
	`{"site":"shop"`,
	`{"site":"shop"}x`,
	`{"site":"shop"}{}`,
	`{"site" "shop"}`,
	`{"site":"sh` + "\x00" + `op"}`,
	`{"site":"sh` + "\t" + `op"}`,
	"{\"site\":\"\xff\xfe\"}",
	"{\"site\":\"shop\",\"title\":\"\xc3\x28\"}",
	"{\"site\":\"shop\",\"title\":\"\xed\xa0\x80\"}",
	"\xef\xbb\xbf{\"site\":\"shop\"}",
	`[]`,
	`null`,
	``,
	`"shop"`,
	`{"site":"shop","url":1e999}`,
}

// The fast path decodes exactly what encoding/json decodes, and errs where it
// errs with the same message (issue 20).
func TestDecodeTrackFastAgreesWithJSON(t *testing.T) {
	t.Parallel()
	for _, b := range trackBodies {
		sameDecoding(t, []byte(b))
	}
}

// A tracker's body takes the fast path; bodies with escapes, other keys or
// other values are left to encoding/json.
func TestDecodeTrackFastShape(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		body string
		fast bool
	}{
		{body: trackBodies[0], fast: true},
		{body: trackBodies[1], fast: true},
		{body: trackBodies[3], fast: true},
		{body: `{}`, fast: true},
		{body: `{"site":"shop","title":"a \"b\""}`},
		{body: `{"Site":"shop"}`},
		{body: `{"site":"shop","extra":"x"}`},
		{body: `{"site":"shop","type":null}`},
		{body: `{"site":"shop"}x`},
	} {
		if _, fast := decodeTrackFast([]byte(tc.body)); fast != tc.fast {
			t.Errorf("decodeTrackFast(%q): fast %v, want %v", tc.body, fast, tc.fast)
		}
	}
}

func FuzzDecodeTrackFast(f *testing.F) {
	for _, b := range trackBodies {
		f.Add([]byte(b))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		sameDecoding(t, b)
		if r, ok := decodeTrackFast(b); ok {
			var want trackRequest
			if err := json.Unmarshal(b, &want); err != nil || r != want {
				t.Fatalf("fast path took %q as %+v; encoding/json: %+v, %v", b, r, want, err)
			}
		}
	})
}

// The answer is written as c.JSON writes it: same status, Content-Type and bytes.
func TestRenderTrackAsGin(t *testing.T) {
	t.Parallel()
	ginMode.Do(func() { gin.SetMode(gin.ReleaseMode) })
	for _, r := range []trackResponse{
		{Tracked: true, Token: "djF8aWR8c2hvcHwxMjM0NTY3OHwxNzY0.q1w2e3r4-_t5y6u7i8o9p0"},
		{Reason: "dnt"},
		{Reason: "no_consent"},
		{Tracked: true},
		{},
		{Tracked: true, Token: "a<b>&c\"d\\e\u2028é\x01"},
		{Reason: "<script>"},
	} {
		got, want := httptest.NewRecorder(), httptest.NewRecorder()
		c, _ := gin.CreateTestContext(got)
		renderTrack(c, r)
		c.Writer.WriteHeaderNow()
		wc, _ := gin.CreateTestContext(want)
		wc.JSON(http.StatusOK, r)
		wc.Writer.WriteHeaderNow()
		if got.Code != want.Code || got.Body.String() != want.Body.String() ||
			strings.Join(got.Header()["Content-Type"], ",") != strings.Join(want.Header()["Content-Type"], ",") {
			t.Errorf("renderTrack(%+v) = %d %q %q, c.JSON %d %q %q", r, got.Code, got.Header()["Content-Type"], got.Body,
				want.Code, want.Header()["Content-Type"], want.Body)
		}
	}
}

func BenchmarkDecodeTrack(b *testing.B) {
	body := []byte(`{"site":"shop","type":"pageview","url":"https://shop.example/products/blue-mug-with-a-long-name?utm_source=mail","title":"Blue mug with a long name","referrer":"https://www.search.example/q"}`)
	for _, bm := range []struct {
		name   string
		decode func([]byte) (trackRequest, error)
	}{{"encoding-json", decodeTrackSlow}, {"fast", decodeTrack}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := bm.decode(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkRenderTrack(b *testing.B) {
	ginMode.Do(func() { gin.SetMode(gin.ReleaseMode) })
	r := trackResponse{Tracked: true, Token: strings.Repeat("x", 120) + "." + strings.Repeat("y", 43)}
	for _, bm := range []struct {
		name   string
		render func(*gin.Context)
	}{
		{"gin", func(c *gin.Context) { c.JSON(http.StatusOK, r) }},
		{"fast", func(c *gin.Context) { renderTrack(c, r) }},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			w := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(w)
			for b.Loop() {
				w.Body.Reset()
				bm.render(c)
			}
		})
	}
}

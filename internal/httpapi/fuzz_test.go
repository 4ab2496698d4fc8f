package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// FuzzDecodeTrack feeds arbitrary bodies to the track decoder (run with
// go test -run '^$' -fuzz FuzzDecodeTrack ./internal/httpapi/). It never panics;
// a body it accepts names a site and a type; a body it refuses maps to 400
// invalid_json exactly when it is not JSON, else to 400 invalid_request.
func FuzzDecodeTrack(f *testing.F) {
	for _, s := range []string{
		`{"site":"shop","type":"pageview","url":"https://shop.example/a?utm_source=x#f","title":"A","referrer":"https://search.example/"}`,
		`{"site":"shop","type":"heartbeat"}`,
		`{"site":"shop","type":"leave"}`,
		`{"site":"shop","url":"https://shop.example/"}`,
		`{"site":"shop","type":null}`,
		`{"site":"shop","type":"click"}`,
		`{"site":"shop","site":""}`,
		``,
		` `,
		`null`,
		`{}`,
		`[]`,
		`"shop"`,
		`42`,
		`{"site":`,
		`{"site":"shop"}x`,
		`{"site":"shop"}` + "\r\n",
		`{"site":42}`,
		`{"site":["shop"],"url":{"a":[1,2,{"b":null}]}}`,
		`{"site":"shop","title":{"a":{"b":{"c":[[[[]]]]}}}}`,
		`{"site":"shop","url":1e999}`,
		`{"site":"shop","title":"\ud800"}`,
		`{"site":"\u0000"}`,
		"{\"site\":\"\xff\xfe\xfd\",\"type\":\"pageview\"}",
		"{\"site\":\"shop\",\"title\":\"\xc3\x28\"}",
		"\xef\xbb\xbf{\"site\":\"shop\"}",
		`{"site":"shop","url":"` + strings.Repeat("a", 17<<10) + `"}`,
		`{"site":"` + strings.Repeat("s", 16<<10) + `"}`,
		strings.Repeat("[", 10001) + strings.Repeat("]", 10001),
		`{"a":` + strings.Repeat(`{"a":`, 200) + `1` + strings.Repeat("}", 201),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := decodeTrack(b)
		if err == nil {
			if r.Site == "" || r.Type == "" {
				t.Fatalf("decodeTrack(%q) = %+v: accepted without site or type", b, r)
			}
			if !json.Valid(b) {
				t.Fatalf("decodeTrack(%q) accepted a body that is not JSON", b)
			}
			return
		}
		status, code, msg := statusOf(err)
		if status != http.StatusBadRequest || (code != "invalid_json" && code != "invalid_request") {
			t.Fatalf("decodeTrack(%q): %v maps to %d %s, want 400 invalid_json or invalid_request", b, err, status, code)
		}
		if msg == "" {
			t.Fatalf("decodeTrack(%q): %s without a message", b, code)
		}
		if got, want := code == "invalid_json", !json.Valid(b); got != want {
			t.Fatalf("decodeTrack(%q): code %s, but json.Valid = %v", b, code, !want)
		}
	})
}

package httpapi

import (
	"net/http"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
)

// The page view's body and answer without encoding/json's reflection (issue
// 20). The fast paths take only the shape a tracker sends, an object of the
// five fields with plain string values, and give up on anything else, which
// encoding/json then decodes or encodes as before: every error, null, escape,
// odd key or case is encoding/json's, so the two cannot disagree.

// decodeTrackFast decodes b when it is a JSON object whose keys are exactly
// the trackRequest field names and whose values are strings without escapes
// or invalid UTF-8; ok is false for anything else.
func decodeTrackFast(b []byte) (r trackRequest, ok bool) {
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return trackRequest{}, false
	}
	i = skipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return trackRequest{}, skipSpace(b, i+1) == len(b)
	}
	// One copy of the body; the fields are substrings of it.
	s := string(b)
	for {
		ks, ke, next, ok := scanPlainString(b, i)
		if !ok {
			return trackRequest{}, false
		}
		i = skipSpace(b, next)
		if i >= len(b) || b[i] != ':' {
			return trackRequest{}, false
		}
		vs, ve, next, ok := scanPlainString(b, skipSpace(b, i+1))
		if !ok {
			return trackRequest{}, false
		}
		v := s[vs:ve]
		switch s[ks:ke] {
		case "site":
			r.Site = v
		case "type":
			r.Type = v
		case "url":
			r.URL = v
		case "title":
			r.Title = v
		case "referrer":
			r.Referrer = v
		default:
			// encoding/json matches keys without regard to case and skips
			// unknown ones: its business.
			return trackRequest{}, false
		}
		i = skipSpace(b, next)
		if i >= len(b) {
			return trackRequest{}, false
		}
		switch b[i] {
		case ',':
			i = skipSpace(b, i+1)
		case '}':
			return r, skipSpace(b, i+1) == len(b)
		default:
			return trackRequest{}, false
		}
	}
}

// scanPlainString finds the JSON string at b[i]: its contents are b[start:end]
// and next follows its closing quote. ok is false unless it is a string without
// escapes, control characters or invalid UTF-8, which decodes to its bytes.
func scanPlainString(b []byte, i int) (start, end, next int, ok bool) {
	if i >= len(b) || b[i] != '"' {
		return 0, 0, 0, false
	}
	start = i + 1
	for j := start; j < len(b); {
		c := b[j]
		switch {
		case c == '"':
			return start, j, j + 1, true
		case c == '\\' || c < 0x20:
			return 0, 0, 0, false
		case c < utf8.RuneSelf:
			j++
		default:
			r, size := utf8.DecodeRune(b[j:])
			if r == utf8.RuneError && size == 1 {
				return 0, 0, 0, false
			}
			j += size
		}
	}
	return 0, 0, 0, false
}

func skipSpace(b []byte, i int) int {
	for i < len(b) {
		switch b[i] {
		case ' ', '\t', '\n', '\r':
			i++
		default:
			return i
		}
	}
	return i
}

// jsonContentType is the Content-Type Gin's c.JSON writes.
var jsonContentType = []string{"application/json; charset=utf-8"}

// renderTrack writes r as c.JSON(http.StatusOK, r) would: the same header and
// bytes.
func renderTrack(c *gin.Context, r trackResponse) {
	b, ok := appendTrackResponse(make([]byte, 0, 48+len(r.Token)+len(r.Reason)), r)
	if !ok {
		c.JSON(http.StatusOK, r)
		return
	}
	h := c.Writer.Header()
	if len(h["Content-Type"]) == 0 {
		h["Content-Type"] = jsonContentType
	}
	c.Status(http.StatusOK)
	_, _ = c.Writer.Write(b)
}

// appendTrackResponse appends r as encoding/json marshals it; ok is false when
// Token or Reason holds a byte encoding/json would escape (never in a token or
// a reason), which c.JSON then writes.
func appendTrackResponse(b []byte, r trackResponse) ([]byte, bool) {
	if !plainJSON(r.Token) || !plainJSON(r.Reason) {
		return b, false
	}
	if r.Tracked {
		b = append(b, `{"tracked":true`...)
	} else {
		b = append(b, `{"tracked":false`...)
	}
	if r.Token != "" {
		b = append(b, `,"token":"`...)
		b = append(b, r.Token...)
		b = append(b, '"')
	}
	if r.Reason != "" {
		b = append(b, `,"reason":"`...)
		b = append(b, r.Reason...)
		b = append(b, '"')
	}
	return append(b, '}'), true
}

// plainJSON reports whether encoding/json writes s between quotes as it is.
func plainJSON(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

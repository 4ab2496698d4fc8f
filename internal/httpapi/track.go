package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

// trackRequest is the body of POST /v1/track.
type trackRequest struct {
	Site     string `json:"site"`
	Type     string `json:"type"`
	URL      string `json:"url"`
	Title    string `json:"title"`
	Referrer string `json:"referrer"`
}

// trackResponse is the answer of POST /v1/track.
type trackResponse struct {
	Tracked bool   `json:"tracked"`
	Token   string `json:"token,omitempty"`
	Reason  string `json:"reason,omitempty"`
}

// decodeTrack decodes a track body (JSON, whether sent as application/json or
// as text/plain by sendBeacon) and checks its shape.
func decodeTrack(b []byte) (trackRequest, error) {
	r, ok := decodeTrackFast(b)
	if !ok {
		var err error
		if r, err = decodeTrackJSON(b); err != nil {
			return trackRequest{}, err
		}
	}
	return checkTrack(r)
}

// decodeTrackJSON decodes a track body with encoding/json, as decodeJSON does
// every other body.
func decodeTrackJSON(b []byte) (trackRequest, error) {
	var r trackRequest
	err := decodeJSON(b, &r)
	return r, err
}

// checkTrack checks the shape of a decoded track body.
func checkTrack(r trackRequest) (trackRequest, error) {
	if r.Site == "" {
		return trackRequest{}, visitor.Errorf(visitor.EInvalid, "site is required")
	}
	if r.Type == "" {
		r.Type = string(visitor.HitPageview)
	}
	return r, nil
}

func (a *api) track(c *gin.Context) {
	typ := "unknown"
	outcome := "rejected"
	defer func() { a.metrics.hits.WithLabelValues(typ, outcome).Inc() }()
	b, err := readBody(c, true)
	if err != nil {
		a.fail(c, err)
		return
	}
	req, err := decodeTrack(b)
	if err != nil {
		a.fail(c, err)
		return
	}
	if validType(visitor.HitType(req.Type)) {
		typ = req.Type
	}
	site, err := a.siteOf(c, req.Site)
	if err != nil {
		a.fail(c, err)
		return
	}
	hit := visitor.Hit{
		Site: site, Type: visitor.HitType(req.Type), URL: req.URL, Title: req.Title, Referrer: req.Referrer,
		Token: tokenOf(c, site.ID), UserAgent: c.Request.UserAgent(), IP: clientIP(c),
		DNT: c.GetHeader("DNT") == "1", GPC: c.GetHeader("Sec-GPC") == "1",
	}
	if err := checkOrigin(c, site, hit.Type != visitor.HitPageview); err != nil {
		a.fail(c, err)
		return
	}
	hit.Caller = a.svc.Caller(site, hit.Token) // verified once: Track uses it too
	if err := a.limitTrack(site, hit); err != nil {
		outcome = "rate_limited"
		a.fail(c, err)
		return
	}
	ctx, cancel := context.WithTimeout(c.Request.Context(), a.trackTimeout)
	defer cancel()
	res, err := a.svc.Track(ctx, hit)
	if err != nil {
		a.fail(c, err)
		return
	}
	if res.Issued {
		a.setIdentity(c, site.ID, res.Token, res.TokenExpires)
	}
	if res.ForgetIdentity {
		a.expireIdentity(c, site.ID)
	}
	if res.Tracked {
		outcome = "tracked"
		renderTrack(c, trackResponse{Tracked: true, Token: res.Token})
		return
	}
	outcome = string(res.Reason)
	renderTrack(c, trackResponse{Reason: string(res.Reason)})
}

// bindJSON reads an application/json body (16 KiB at most) into v.
func bindJSON(c *gin.Context, v any) error {
	b, err := readBody(c, false)
	if err != nil {
		return err
	}
	return decodeJSON(b, v)
}

// decodeJSON decodes a request body: malformed JSON is errInvalidJSON, a field
// of the wrong type or null ErrInvalid naming the field (no request field is
// nullable in api/openapi.yaml).
func decodeJSON(b []byte, v any) error {
	err := json.Unmarshal(b, v)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		// encoding/json leaves a field unset for null: look only when the body
		// holds the word at all, so the page-view path decodes once.
		if bytes.Contains(b, []byte("null")) {
			if field, ok := nullField(b); ok {
				return visitor.Errorf(visitor.EInvalid, "%s must not be null", field)
			}
		}
		return nil
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return visitor.Errorf(visitor.EInvalid, "the body must be a JSON object")
	case errors.As(err, &typeErr):
		return visitor.Errorf(visitor.EInvalid, "%s must be %s", typeErr.Field, jsonKind(typeErr.Type))
	}
	return errInvalidJSON
}

// nullField finds a null in a JSON body and names it ("contact.name", "null"
// for the whole body).
func nullField(b []byte) (string, bool) {
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return "", false
	}
	return findNull(v, "")
}

func findNull(v any, path string) (string, bool) {
	switch t := v.(type) {
	case nil:
		if path == "" {
			return "the body", true
		}
		return path, true
	case map[string]any:
		for k, e := range t {
			p := k
			if path != "" {
				p = path + "." + k
			}
			if f, ok := findNull(e, p); ok {
				return f, true
			}
		}
	case []any:
		for i, e := range t {
			if f, ok := findNull(e, fmt.Sprintf("%s[%d]", path, i)); ok {
				return f, true
			}
		}
	}
	return "", false
}

// jsonKind names a Go type as the JSON value it decodes from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int64, reflect.Float64:
		return "a number"
	case reflect.Slice:
		return "an array"
	}
	return "an object"
}

func validType(t visitor.HitType) bool {
	return t == visitor.HitPageview || t == visitor.HitHeartbeat || t == visitor.HitLeave
}

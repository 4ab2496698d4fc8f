package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
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
	var r trackRequest
	if err := decodeJSON(b, &r); err != nil {
		return trackRequest{}, err
	}
	if r.Site == "" {
		return trackRequest{}, errors.Join(visitor.ErrInvalid, errors.New("site is required"))
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
		c.JSON(http.StatusOK, trackResponse{Tracked: true, Token: res.Token})
		return
	}
	outcome = string(res.Reason)
	c.JSON(http.StatusOK, trackResponse{Reason: string(res.Reason)})
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
// of the wrong type ErrInvalid naming the field.
func decodeJSON(b []byte, v any) error {
	err := json.Unmarshal(b, v)
	var typeErr *json.UnmarshalTypeError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &typeErr):
		return errors.Join(visitor.ErrInvalid, fmt.Errorf("field %s must be %s", typeErr.Field, jsonKind(typeErr.Type)))
	}
	return errInvalidJSON
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

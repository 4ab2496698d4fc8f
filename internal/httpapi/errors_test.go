package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

// TestErrorMapping renders errors through fail, the one place where errors
// become HTTP: each answers its status, code and message, and no text of what
// wraps a client error reaches the body. Only 500 and 503 are logged.
func TestErrorMapping(t *testing.T) {
	t.Parallel()
	const secret = "dial tcp 10.1.2.3:6379: i/o timeout"
	storeDown := fmt.Errorf("record hit: %w", fmt.Errorf("%w: %s", visitor.ErrStoreUnavailable, secret))
	for _, tt := range []struct {
		name       string
		err        error
		status     int
		code       string
		message    string
		retryAfter string
		logged     bool
	}{
		{name: "invalid json", err: errInvalidJSON, status: 400, code: "invalid_json", message: "the body is not valid JSON"},
		{name: "invalid request", err: visitor.Errorf(visitor.EInvalid, "site is required"), status: 400, code: "invalid_request", message: "site is required"},
		{name: "bare sentinel", err: visitor.ErrInvalid, status: 400, code: "invalid_request", message: "invalid request"},
		{name: "wrapped not found", err: fmt.Errorf("export chat of shop: %w", visitor.Errorf(visitor.ENotFound, "no chat %q", "c1")),
			status: 404, code: "not_found", message: `no chat "c1"`},
		{name: "no route", err: errNoRoute, status: 404, code: "not_found", message: "no such route"},
		{name: "unknown site", err: visitor.Errorf(visitor.EUnknownSite, "site %q is not configured", "nope"), status: 404, code: "unknown_site", message: `site "nope" is not configured`},
		{name: "no method", err: errNoMethod, status: 405, code: "method_not_allowed", message: "method not allowed on this route"},
		{name: "unauthorized", err: visitor.Errorf(visitor.EUnauthorized, "the API key is not valid"), status: 401, code: "unauthorized", message: "the API key is not valid"},
		{name: "forbidden", err: visitor.Errorf(visitor.EForbidden, "role operator may not use this route"), status: 403, code: "forbidden", message: "role operator may not use this route"},
		{name: "origin not allowed", err: visitor.ErrOriginNotAllowed, status: 403, code: "origin_not_allowed", message: "origin not allowed"},
		{name: "policy outdated", err: visitor.Errorf(visitor.EPolicyOutdated, "site shop asks consent for policy %q", "2026-11"), status: 409, code: "policy_outdated", message: `site shop asks consent for policy "2026-11"`},
		{name: "body too large", err: errBodyTooLarge, status: 413, code: "body_too_large", message: "the body is larger than 16 KiB"},
		{name: "unsupported media", err: errUnsupportedMedia, status: 415, code: "unsupported_media_type", message: "the body must be application/json"},
		{name: "url not in site", err: visitor.Errorf(visitor.EURLNotInSite, "the url's origin is not one of site shop's origins"), status: 422, code: "url_not_in_site", message: "the url's origin is not one of site shop's origins"},
		{name: "retention out of bounds", err: fmt.Errorf("set retention: %w", visitor.Errorf(visitor.ERetentionBounds, "retention sessions is 0 days, outside 1..1825")),
			status: 422, code: "retention_out_of_bounds", message: "retention sessions is 0 days, outside 1..1825"},
		{name: "rate limited", err: fmt.Errorf("live stream: %w", &visitor.RateLimitError{RetryAfter: 2500 * time.Millisecond}),
			status: 429, code: "rate_limited", message: "too many requests; try again in 3 s", retryAfter: "3"},
		{name: "store unavailable", err: storeDown, status: 503, code: "store_unavailable", message: "the store is unavailable; try again shortly", retryAfter: "1", logged: true},
		{name: "joined store unavailable", err: errors.Join(visitor.ErrStoreUnavailable, errors.New(secret)), status: 503, code: "store_unavailable",
			message: "the store is unavailable; try again shortly", retryAfter: "1", logged: true},
		{name: "unknown", err: fmt.Errorf("save chat: %s", secret), status: 500, code: "internal", message: "internal error", logged: true},
		{name: "erased is internal", err: fmt.Errorf("bind chat: %w", visitor.ErrErased), status: 500, code: "internal", message: "internal error", logged: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			a := &api{log: slog.New(slog.NewJSONHandler(&logs, nil))}
			w := httptest.NewRecorder()
			c, _ := gin.CreateTestContext(w)
			c.Request = httptest.NewRequest(http.MethodGet, "/v1/track", nil)
			a.fail(c, tt.err)

			if got, want := w.Code, tt.status; got != want {
				t.Errorf("status = %d, want %d", got, want)
			}
			var body errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %s: %v", w.Body, err)
			}
			if got, want := body.Error, (errorDetail{Code: tt.code, Message: tt.message}); got != want {
				t.Errorf("error = %+v, want %+v", got, want)
			}
			if strings.Contains(w.Body.String(), secret) {
				t.Errorf("body %s carries the wrapped chain", w.Body)
			}
			if got, want := w.Header().Get("Retry-After"), tt.retryAfter; got != want {
				t.Errorf("Retry-After = %q, want %q", got, want)
			}
			if got, want := w.Header().Get("Cache-Control"), "no-store"; got != want {
				t.Errorf("Cache-Control = %q, want %q", got, want)
			}
			if got, want := logs.Len() > 0, tt.logged; got != want {
				t.Errorf("logged = %v, want %v: %s", got, want, logs.String())
			}
		})
	}
}

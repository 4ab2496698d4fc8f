package httpapi

import (
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/visitord/visitord/internal/visitor"
)

// Transport errors; domain errors come from package visitor.
var (
	errInvalidJSON      = errors.New("the body is not valid JSON")
	errBodyTooLarge     = errors.New("the body is larger than 16 KiB")
	errUnsupportedMedia = errors.New("the body must be application/json")
	errNoRoute          = errors.New("no such route")
	errNoMethod         = errors.New("method not allowed on this route")
)

type errorBody struct {
	Error errorDetail `json:"error"`
}

type errorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// statusOf maps an error to its status, code and message: the one place where
// errors become HTTP. Only unknown errors are logged, as 500 "internal error".
func statusOf(err error) (int, string, string) {
	msg := message(err)
	switch {
	case errors.Is(err, errInvalidJSON):
		return http.StatusBadRequest, "invalid_json", msg
	case errors.Is(err, visitor.ErrRetentionBounds): // before ErrInvalid, which it wraps
		return http.StatusUnprocessableEntity, "retention_out_of_bounds", msg
	case errors.Is(err, visitor.ErrInvalid):
		return http.StatusBadRequest, "invalid_request", msg
	case errors.Is(err, visitor.ErrUnknownSite):
		return http.StatusNotFound, "unknown_site", msg
	case errors.Is(err, visitor.ErrNotFound), errors.Is(err, errNoRoute):
		return http.StatusNotFound, "not_found", msg
	case errors.Is(err, errNoMethod):
		return http.StatusMethodNotAllowed, "method_not_allowed", msg
	case errors.Is(err, visitor.ErrUnauthorized):
		return http.StatusUnauthorized, "unauthorized", msg
	case errors.Is(err, visitor.ErrOriginNotAllowed):
		return http.StatusForbidden, "origin_not_allowed", msg
	case errors.Is(err, visitor.ErrForbidden):
		return http.StatusForbidden, "forbidden", msg
	case errors.Is(err, visitor.ErrPolicyOutdated):
		return http.StatusConflict, "policy_outdated", msg
	case errors.Is(err, errBodyTooLarge):
		return http.StatusRequestEntityTooLarge, "body_too_large", msg
	case errors.Is(err, errUnsupportedMedia):
		return http.StatusUnsupportedMediaType, "unsupported_media_type", msg
	case errors.Is(err, visitor.ErrURLNotInSite):
		return http.StatusUnprocessableEntity, "url_not_in_site", msg
	case errors.Is(err, visitor.ErrRateLimited):
		return http.StatusTooManyRequests, "rate_limited", msg
	case errors.Is(err, visitor.ErrStoreUnavailable):
		return http.StatusServiceUnavailable, "store_unavailable", "the store is unavailable; try again shortly"
	}
	return http.StatusInternalServerError, "internal", "internal error"
}

// message is err's text as one line naming what is wrong: the sentinel that
// only repeats the code ("invalid request") is dropped, and the parts a wrapped
// or joined error carries are joined with "; ", never a newline.
func message(err error) string {
	var parts []string
	for p := range strings.SplitSeq(err.Error(), "\n") {
		p = strings.TrimSpace(strings.TrimPrefix(p, visitor.ErrInvalid.Error()+": "))
		if p != "" && p != visitor.ErrInvalid.Error() {
			parts = append(parts, p)
		}
	}
	if len(parts) == 0 {
		return visitor.ErrInvalid.Error()
	}
	return strings.Join(parts, "; ")
}

// fail renders err in the API's error shape and ends the request.
func (a *api) fail(c *gin.Context, err error) {
	status, code, msg := statusOf(err)
	switch status {
	case http.StatusInternalServerError:
		a.log.LogAttrs(c.Request.Context(), slog.LevelError, "internal error",
			slog.String("route", routeOf(c)), slog.String("error", err.Error()))
	case http.StatusServiceUnavailable:
		a.log.LogAttrs(c.Request.Context(), slog.LevelWarn, "store unavailable",
			slog.String("route", routeOf(c)), slog.String("error", err.Error()))
		c.Header("Retry-After", "1")
	case http.StatusTooManyRequests:
		c.Header("Retry-After", retryAfter(err))
	}
	c.Header("Cache-Control", "no-store")
	c.AbortWithStatusJSON(status, errorBody{Error: errorDetail{Code: code, Message: msg}})
}

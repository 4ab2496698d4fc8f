package httpapi

import (
	"errors"
	"log/slog"
	"net/http"

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

// statuses is the HTTP status of each client error code of package visitor.
var statuses = map[string]int{
	visitor.EInvalid:          http.StatusBadRequest,
	visitor.ENotFound:         http.StatusNotFound,
	visitor.EUnknownSite:      http.StatusNotFound,
	visitor.EUnauthorized:     http.StatusUnauthorized,
	visitor.EForbidden:        http.StatusForbidden,
	visitor.EOriginNotAllowed: http.StatusForbidden,
	visitor.EURLNotInSite:     http.StatusUnprocessableEntity,
	visitor.EPolicyOutdated:   http.StatusConflict,
	visitor.ERetentionBounds:  http.StatusUnprocessableEntity,
	visitor.ERateLimited:      http.StatusTooManyRequests,
	visitor.EStoreUnavailable: http.StatusServiceUnavailable,
}

// statusOf maps an error to its status, code and message: the one place where
// errors become HTTP. A *visitor.Error anywhere in err's chain answers its code
// and message, never the text of what wraps it; any other error is 500
// "internal error".
func statusOf(err error) (int, string, string) {
	for _, t := range []struct {
		err    error
		status int
		code   string
	}{
		{errInvalidJSON, http.StatusBadRequest, "invalid_json"},
		{errNoRoute, http.StatusNotFound, "not_found"},
		{errNoMethod, http.StatusMethodNotAllowed, "method_not_allowed"},
		{errBodyTooLarge, http.StatusRequestEntityTooLarge, "body_too_large"},
		{errUnsupportedMedia, http.StatusUnsupportedMediaType, "unsupported_media_type"},
	} {
		if errors.Is(err, t.err) {
			return t.status, t.code, t.err.Error()
		}
	}
	var e *visitor.Error
	if errors.As(err, &e) {
		if status, ok := statuses[e.Code]; ok {
			return status, e.Code, e.Message
		}
	}
	return http.StatusInternalServerError, visitor.EInternal, "internal error"
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

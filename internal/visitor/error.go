package visitor

import (
	"errors"
	"fmt"
	"strings"
)

// Error codes: what went wrong, as the API names it to clients (api/openapi.yaml).
const (
	EInvalid          = "invalid_request"
	ENotFound         = "not_found"
	EUnknownSite      = "unknown_site"
	EUnauthorized     = "unauthorized"
	EForbidden        = "forbidden"
	EOriginNotAllowed = "origin_not_allowed"
	EURLNotInSite     = "url_not_in_site"
	EPolicyOutdated   = "policy_outdated"
	ERetentionBounds  = "retention_out_of_bounds"
	ERateLimited      = "rate_limited"
	EStoreUnavailable = "store_unavailable"
	// EInternal is the code of every error that is not an *Error: a bug or a
	// failure the client cannot act on.
	EInternal = "internal"
)

// Error is an error a client may see: Code says what went wrong, Message says
// it in one sentence naming the field or subject at fault. The domain builds
// it; adapters may wrap it with context for the logs, and the transport finds
// it with errors.As and answers Code and Message, never the wrapped text.
type Error struct {
	Code    string
	Message string
}

// Error is the code in words, then the message: "not found: no chat "x"".
func (e *Error) Error() string {
	words := strings.ReplaceAll(e.Code, "_", " ")
	if e.Message == "" || e.Message == words {
		return words
	}
	return words + ": " + e.Message
}

// Is reports whether target is an *Error of the same code, so that
// errors.Is(err, ErrNotFound) holds for every not-found error.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	return ok && t.Code == e.Code
}

// Errorf returns an *Error of code whose message is format applied to args.
// The message must be one line.
func Errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// ErrorCode returns the code of the *Error in err's chain, "" for nil and
// EInternal for an error that carries none.
func ErrorCode(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Code
	}
	return EInternal
}

// ErrorMessage returns the message of the *Error in err's chain, "" for nil and
// "internal error" for an error that carries none: nothing else of an unknown
// error may reach a client.
func ErrorMessage(err error) string {
	var e *Error
	switch {
	case err == nil:
		return ""
	case errors.As(err, &e):
		return e.Message
	}
	return "internal error"
}

// Domain errors, one per code. errors.Is(err, ErrX) holds for every *Error of
// ErrX's code; adapters wrap them with detail for the logs.
var (
	// ErrInvalid reports a request that breaks the contract (bad field, bad value).
	ErrInvalid = &Error{Code: EInvalid, Message: "invalid request"}
	// ErrNotFound reports a site, visitor or chat that does not exist.
	ErrNotFound = &Error{Code: ENotFound, Message: "not found"}
	// ErrUnknownSite reports a site id that is not configured.
	ErrUnknownSite = &Error{Code: EUnknownSite, Message: "unknown site"}
	// ErrUnauthorized reports a caller without a valid API key.
	ErrUnauthorized = &Error{Code: EUnauthorized, Message: "unauthorized"}
	// ErrForbidden reports a caller that may not do what it asked.
	ErrForbidden = &Error{Code: EForbidden, Message: "forbidden"}
	// ErrOriginNotAllowed reports a browser origin that is not one of the site's.
	ErrOriginNotAllowed = &Error{Code: EOriginNotAllowed, Message: "origin not allowed"}
	// ErrURLNotInSite reports a page URL whose origin is not one of the site's.
	ErrURLNotInSite = &Error{Code: EURLNotInSite, Message: "url not in site"}
	// ErrPolicyOutdated reports a consent given for another policy version than the site's.
	ErrPolicyOutdated = &Error{Code: EPolicyOutdated, Message: "policy outdated"}
	// ErrRetentionBounds reports retention windows outside the allowed bounds.
	ErrRetentionBounds = &Error{Code: ERetentionBounds, Message: "retention out of bounds"}
	// ErrRateLimited reports a caller that sent more requests than its site
	// allows in a window; the error that carries it is a *RateLimitError,
	// which says when to try again.
	ErrRateLimited = &Error{Code: ERateLimited, Message: "rate limited"}
	// ErrStoreUnavailable reports that the store did not answer in time. Its
	// message is what a client is told; the store wraps it with the cause.
	ErrStoreUnavailable = &Error{Code: EStoreUnavailable, Message: "the store is unavailable; try again shortly"}
)

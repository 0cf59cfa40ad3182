package agent

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/forewarm/forewarm/agent/api"
)

// Error is a refusal with an api.Code* code; the HTTP layer turns it into
// the status that code implies.
type Error struct {
	Code string
	Msg  string
}

func (e *Error) Error() string { return e.Code + ": " + e.Msg }

func errorf(code, format string, args ...any) *Error {
	return &Error{Code: code, Msg: fmt.Sprintf(format, args...)}
}

// CodeOf returns err's code, api.CodeInternal for errors the agent did not
// classify.
func CodeOf(err error) string {
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return api.CodeInternal
}

func statusOf(code string) int {
	switch code {
	case api.CodeBadRequest:
		return http.StatusBadRequest
	case api.CodeUnauthorized:
		return http.StatusUnauthorized
	case api.CodeWrongApp:
		return http.StatusForbidden
	case api.CodeNotFound, api.CodeUnknownSpec:
		return http.StatusNotFound
	case api.CodeInstanceDown, api.CodeStartFailed:
		return http.StatusBadGateway
	case api.CodeConflict, api.CodeClaimed, api.CodeLeaseTooSmall, api.CodeLeaseBusy, api.CodeNotReady, api.CodeOverCapacity, api.CodeNoInstance:
		return http.StatusConflict
	case api.CodeGone:
		return http.StatusGone
	case api.CodeTooLarge:
		return http.StatusRequestEntityTooLarge
	case api.CodeShuttingDown:
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

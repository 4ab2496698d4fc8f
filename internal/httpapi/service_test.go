package httpapi

import "github.com/visitord/visitord/internal/visitor"

// The domain implements the interfaces the handlers depend on.
var _ Service = (*visitor.Service)(nil)

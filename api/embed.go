// Package api holds visitord's HTTP contract, api/openapi.yaml, written by
// hand and checked by the tests of package httpapi.
package api

import _ "embed"

// OpenAPI is api/openapi.yaml, served at GET /v1/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

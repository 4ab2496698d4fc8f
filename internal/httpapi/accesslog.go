package httpapi

import (
	"context"
	"io"
	"log/slog"
	"math"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// accessLog writes the one line each request logs: its method, route
// template, status, latency and site, never the raw path, query, IP or token.
//
// With a writer, the line is built by hand, byte for byte what
// slog.NewJSONHandler(w, nil) writes for the same record, without slog's
// caller lookup, its reflection on the float and its allocations: the
// access log was a tenth of a page view's Go CPU (issue 20). Without one, it
// goes through the logger like every other line.
type accessLog struct {
	log *slog.Logger
	mu  sync.Mutex
	w   io.Writer
	buf []byte
}

func newAccessLog(log *slog.Logger, w io.Writer) *accessLog {
	return &accessLog{log: log, w: w, buf: make([]byte, 0, 256)}
}

// request logs one request that ended at t.
func (l *accessLog) request(ctx context.Context, t time.Time, method, route string, status int, latencyMS float64, site string) {
	if l.w == nil {
		l.log.LogAttrs(ctx, slog.LevelInfo, "request",
			slog.String("method", method), slog.String("route", route), slog.Int("status", status),
			slog.Float64("latency_ms", latencyMS), slog.String("site", site))
		return
	}
	l.mu.Lock()
	l.buf = appendAccessLine(l.buf[:0], t, method, route, status, latencyMS, site)
	// A failed write is dropped as slog's handler drops it: the log has no
	// log of its own to report to.
	_, _ = l.w.Write(l.buf)
	l.mu.Unlock()
}

// appendAccessLine appends the access log line of a request to b as
// slog.NewJSONHandler writes it at level INFO with message "request".
func appendAccessLine(b []byte, t time.Time, method, route string, status int, latencyMS float64, site string) []byte {
	b = append(b, `{"time":"`...)
	b = t.Round(0).AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","level":"INFO","msg":"request","method":`...)
	b = appendJSONString(b, method)
	b = append(b, `,"route":`...)
	b = appendJSONString(b, route)
	b = append(b, `,"status":`...)
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, `,"latency_ms":`...)
	b = appendJSONFloat(b, latencyMS)
	b = append(b, `,"site":`...)
	b = appendJSONString(b, site)
	return append(b, "}\n"...)
}

// appendJSONString appends s quoted as slog's JSON handler quotes it: `"` and
// `\` and control characters escaped, invalid UTF-8 as \ufffd, U+2028 and
// U+2029 escaped, and nothing else (no HTML escaping).
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

const hexDigits = "0123456789abcdef"

// appendJSONFloat appends f as encoding/json marshals a float64, which is what
// slog's JSON handler writes for one. NaN and ±Inf, which JSON cannot hold,
// never come from a latency and are written as slog writes its marshalling
// error.
func appendJSONFloat(b []byte, f float64) []byte {
	if math.IsInf(f, 0) || math.IsNaN(f) {
		return append(b, `"!ERROR:json: unsupported value: `+strconv.FormatFloat(f, 'g', -1, 64)+`"`...)
	}
	format := byte('f')
	if abs := math.Abs(f); abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b = strconv.AppendFloat(b, f, format, -1, 64)
	if format == 'e' {
		// encoding/json writes e-7, not e-07.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return b
}

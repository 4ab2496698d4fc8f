package main

import (
	"io/fs"
	"log/slog"
	"math"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
)

// defaultGOGC is the garbage collector's target where GOGC is not set: a page
// view allocates a few kilobytes that are garbage when it answers, and at Go's
// own 100 the collector took a tenth of the service's CPU (issue 20). The heap
// may grow to five times the live heap instead of two; the memory limit below
// bounds it.
const defaultGOGC = 400

// memoryLimitShare is the share of the container's memory limit given to the
// Go runtime as its soft limit where GOMEMLIMIT is not set: the rest is for
// what the runtime does not count (stacks of cgo, the binary, page cache).
const memoryLimitShare = 0.9

// gcSettings is how the garbage collector is tuned at start.
type gcSettings struct {
	// GOGC is the percentage set, or 0 when GOGC in the environment rules.
	GOGC int
	// MemoryLimit is the soft memory limit in bytes set, or 0 when GOMEMLIMIT
	// in the environment rules or there is no container limit to derive it from.
	MemoryLimit int64
}

// gcDefaults returns visitord's defaults for what the environment leaves unset:
// GOGC defaultGOGC, GOMEMLIMIT memoryLimitShare of the cgroup's memory limit
// (0 for none). The Go runtime itself reads GOGC and GOMEMLIMIT when set.
func gcDefaults(getenv func(string) string, cgroupLimit int64) gcSettings {
	var g gcSettings
	if getenv("GOGC") == "" {
		g.GOGC = defaultGOGC
	}
	if getenv("GOMEMLIMIT") == "" && cgroupLimit > 0 {
		g.MemoryLimit = int64(float64(cgroupLimit) * memoryLimitShare)
	}
	return g
}

// apply sets what g holds in the runtime and logs the result.
func (g gcSettings) apply(log *slog.Logger) {
	if g.GOGC > 0 {
		debug.SetGCPercent(g.GOGC)
	}
	if g.MemoryLimit > 0 {
		debug.SetMemoryLimit(g.MemoryLimit)
	}
	m := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/gomemlimit:bytes"}}
	metrics.Read(m)
	attrs := []any{slog.Uint64("gogc", m[0].Value.Uint64())}
	if limit := m[1].Value.Uint64(); limit < math.MaxInt64 {
		attrs = append(attrs, slog.Uint64("memory_limit_bytes", limit))
	}
	log.Info("garbage collector", attrs...)
}

// cgroupMemoryLimit is the memory limit of the cgroup the process runs in
// (cgroup v2, else v1), read from fsys rooted at /; 0 for none.
func cgroupMemoryLimit(fsys fs.FS) int64 {
	for _, name := range []string{"sys/fs/cgroup/memory.max", "sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			continue
		}
		n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		// v2 writes "max" for none, v1 a number near 2^63 rounded to pages.
		if err != nil || n <= 0 || n >= math.MaxInt64/2 {
			return 0
		}
		return n
	}
	return 0
}

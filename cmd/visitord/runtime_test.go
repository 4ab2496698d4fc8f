package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"math"
	"runtime/debug"
	"testing"
	"testing/fstest"
)

// GOGC and GOMEMLIMIT set in the environment rule; where they are not,
// visitord applies defaultGOGC and memoryLimitShare of the container's limit.
func TestGCDefaults(t *testing.T) {
	t.Parallel()
	const limit = 256 << 20
	for _, tc := range []struct {
		name  string
		env   map[string]string
		limit int64
		want  gcSettings
	}{
		{name: "nothing set, no container limit", want: gcSettings{GOGC: defaultGOGC}},
		{name: "nothing set, a container limit", limit: limit, want: gcSettings{GOGC: defaultGOGC, MemoryLimit: limit * 9 / 10}},
		{name: "GOGC set", env: map[string]string{"GOGC": "100"}, limit: limit, want: gcSettings{MemoryLimit: limit * 9 / 10}},
		{name: "GOGC off", env: map[string]string{"GOGC": "off"}, want: gcSettings{}},
		{name: "GOMEMLIMIT set", env: map[string]string{"GOMEMLIMIT": "100MiB"}, limit: limit, want: gcSettings{GOGC: defaultGOGC}},
		{name: "both set", env: map[string]string{"GOGC": "200", "GOMEMLIMIT": "100MiB"}, limit: limit, want: gcSettings{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := gcDefaults(mapEnv(tc.env), tc.limit); got != tc.want {
				t.Errorf("gcDefaults = %+v, want %+v", got, tc.want)
			}
		})
	}
}

// The container's memory limit is read from cgroup v2, else v1; "max" or
// v1's page-rounded 2^63 is none.
func TestCgroupMemoryLimit(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		fs   fstest.MapFS
		want int64
	}{
		{name: "v2", fs: fstest.MapFS{"sys/fs/cgroup/memory.max": {Data: []byte("268435456\n")}}, want: 268435456},
		{name: "v2 without limit", fs: fstest.MapFS{"sys/fs/cgroup/memory.max": {Data: []byte("max\n")}}},
		{name: "v1", fs: fstest.MapFS{"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("536870912\n")}}, want: 536870912},
		{name: "v1 without limit", fs: fstest.MapFS{"sys/fs/cgroup/memory/memory.limit_in_bytes": {Data: []byte("9223372036854771712\n")}}},
		{name: "no cgroup", fs: fstest.MapFS{}},
		{name: "garbage", fs: fstest.MapFS{"sys/fs/cgroup/memory.max": {Data: []byte("lots")}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := cgroupMemoryLimit(tc.fs); got != tc.want {
				t.Errorf("cgroupMemoryLimit = %d, want %d", got, tc.want)
			}
		})
	}
}

// apply sets the runtime's GOGC and memory limit and logs what is in force.
func TestGCSettingsApply(t *testing.T) {
	// Not parallel: it changes the process's garbage collector.
	prevGOGC := debug.SetGCPercent(100)
	prevLimit := debug.SetMemoryLimit(math.MaxInt64)
	t.Cleanup(func() { debug.SetGCPercent(prevGOGC); debug.SetMemoryLimit(prevLimit) })

	var logs bytes.Buffer
	gcSettings{GOGC: 321, MemoryLimit: 123 << 20}.apply(slog.New(slog.NewJSONHandler(&logs, nil)))
	if got := debug.SetGCPercent(100); got != 321 {
		t.Errorf("GOGC %d, want 321", got)
	}
	if got := debug.SetMemoryLimit(-1); got != 123<<20 {
		t.Errorf("memory limit %d, want %d", got, 123<<20)
	}
	var line struct {
		Msg   string `json:"msg"`
		GOGC  int    `json:"gogc"`
		Limit int64  `json:"memory_limit_bytes"`
	}
	if err := json.Unmarshal(logs.Bytes(), &line); err != nil {
		t.Fatalf("%v: %s", err, logs.String())
	}
	if line.Msg != "garbage collector" || line.GOGC != 321 || line.Limit != 123<<20 {
		t.Errorf("logged %s", logs.String())
	}
}

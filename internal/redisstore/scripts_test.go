package redisstore

import (
	"context"
	"io/fs"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/redistest"
)

// luaEnv runs scripts of one Store on a Redis of its own.
type luaEnv struct {
	ctx context.Context
	c   *redis.Client
	s   *Store
}

func luaStart(tb testing.TB) luaEnv {
	tb.Helper()
	c := redistest.Start(tb).Client(tb)
	return luaEnv{ctx: context.Background(), c: c, s: New(c)}
}

// run sends calls in one pipeline and fails the test on an error.
func (e luaEnv) run(tb testing.TB, calls ...*call) {
	tb.Helper()
	if err := e.s.run(e.ctx, calls...); err != nil {
		tb.Fatal(err)
	}
}

// pexpireAt is key's absolute expiry, zero when it has none or is gone.
func (e luaEnv) pexpireAt(tb testing.TB, key string) time.Time {
	tb.Helper()
	n, err := e.c.Do(e.ctx, "PEXPIRETIME", key).Int64()
	if err != nil {
		tb.Fatal(err)
	}
	if n < 0 {
		return time.Time{}
	}
	return time.UnixMilli(n).UTC()
}

// luaT0 is a fixed time of the script tests, well ahead of the wall clock, so
// that expiry times written from it are in the future.
var luaT0 = time.Now().UTC().Truncate(time.Millisecond).Add(time.Hour)

// Every .lua file that is not a library is declared, every declared script is
// a file, and LoadScripts loads them all: a script cannot exist and not be
// preloaded.
func TestEveryScriptDeclaredAndPreloaded(t *testing.T) {
	t.Parallel()
	names, err := fs.Glob(luaFiles, "*.lua")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, n := range names {
		if !strings.HasPrefix(n, "lib_") {
			files = append(files, n)
		}
	}
	var decl []string
	for _, s := range declared {
		decl = append(decl, s.file)
	}
	slices.Sort(decl)
	if !slices.Equal(files, decl) {
		t.Fatalf("declared scripts %v, want one per script file %v", decl, files)
	}
	e := luaStart(t)
	if err := e.s.LoadScripts(e.ctx); err != nil {
		t.Fatal(err)
	}
	shas := make([]string, len(declared))
	for i, s := range declared {
		shas[i] = s.Hash()
	}
	exists, err := e.c.ScriptExists(e.ctx, shas...).Result()
	if err != nil {
		t.Fatal(err)
	}
	for i, ok := range exists {
		if !ok {
			t.Errorf("%s is declared but not loaded by LoadScripts", declared[i].file)
		}
	}
}

// Every .lua file opens with a header naming its KEYS, ARGV and reply (a
// library, what it defines), and every KEYS[n] a script uses is in its header.
func TestScriptHeaders(t *testing.T) {
	t.Parallel()
	names, err := fs.Glob(luaFiles, "*.lua")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		src, err := luaFiles.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		var header []string
		for _, l := range strings.Split(string(src), "\n") {
			if !strings.HasPrefix(l, "--") {
				break
			}
			header = append(header, l)
		}
		h := strings.Join(header, "\n")
		if strings.HasPrefix(n, "lib_") {
			if !strings.HasPrefix(h, "-- Library:") {
				t.Errorf("%s: header does not open with \"-- Library:\"", n)
			}
			continue
		}
		for _, want := range []string{"KEYS", "ARGV", "Reply"} {
			if !strings.Contains(h, want) {
				t.Errorf("%s: header names no %s", n, want)
			}
		}
		body := string(src)[len(h):]
		for i := 1; i <= 9; i++ {
			k := "KEYS[" + string(rune('0'+i)) + "]"
			if strings.Contains(body, k) && !strings.Contains(h, k) {
				t.Errorf("%s uses %s, which its header does not list", n, k)
			}
		}
	}
}

// A script a node lost (SCRIPT FLUSH: a restart, a failover) is sent whole
// again by run, in the same call.
func TestRunReloadsLostScripts(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	if err := e.s.LoadScripts(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.c.ScriptFlush(e.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	c := queueArgs{key: queueKey("shop"), delivery: "wh:{shop:d1}", due: luaT0, ttl: time.Hour}.call()
	e.run(t, c)
	if got, err := e.c.ZScore(e.ctx, queueKey("shop"), "wh:{shop:d1}").Result(); err != nil || int64(got) != ms(luaT0) {
		t.Errorf("queued score %v, %v; want %d", got, err, ms(luaT0))
	}
}

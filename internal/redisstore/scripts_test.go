package redisstore

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
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
// again in the same call, by run and by runShared.
func TestRunReloadsLostScripts(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		run  func(*Store, context.Context, *call) error
	}{
		{name: "run", run: func(s *Store, ctx context.Context, c *call) error { return s.run(ctx, c) }},
		{name: "runShared", run: (*Store).runShared},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := luaStart(t)
			if err := e.s.LoadScripts(e.ctx); err != nil {
				t.Fatal(err)
			}
			if err := e.c.ScriptFlush(e.ctx).Err(); err != nil {
				t.Fatal(err)
			}
			c := queueArgs{key: queueKey("shop"), delivery: "wh:{shop:d1}", due: luaT0, ttl: time.Hour}.call()
			if err := tc.run(e.s, e.ctx, c); err != nil {
				t.Fatal(err)
			}
			if got, err := e.c.ZScore(e.ctx, queueKey("shop"), "wh:{shop:d1}").Result(); err != nil || int64(got) != ms(luaT0) {
				t.Errorf("queued score %v, %v; want %d", got, err, ms(luaT0))
			}
		})
	}
}

// Concurrent runShared calls share round trips (group commit): the server
// reads far fewer requests than it runs calls, and every call still gets its
// own reply.
func TestRunSharedGroupsConcurrentCalls(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	if err := e.s.LoadScripts(e.ctx); err != nil {
		t.Fatal(err)
	}
	const calls = 200
	before := readsProcessed(t, e)
	start := make(chan struct{})
	errs := make(chan error, calls)
	for i := range calls {
		go func() {
			<-start
			c := queueArgs{key: queueKey("shop"), delivery: fmt.Sprintf("wh:{shop:d%d}", i), due: luaT0.Add(time.Duration(i) * time.Millisecond), ttl: time.Hour}.call()
			errs <- e.s.runShared(e.ctx, c)
		}()
	}
	close(start)
	for range calls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// The INFO call that reads the figure is one read of its own.
	reads := readsProcessed(t, e) - before - 1
	if reads > calls/2 {
		t.Errorf("%d concurrent calls took %d round trips, want at most %d: the calls are not grouped", calls, reads, calls/2)
	}
	for i := range calls {
		got, err := e.c.ZScore(e.ctx, queueKey("shop"), fmt.Sprintf("wh:{shop:d%d}", i)).Result()
		if want := ms(luaT0.Add(time.Duration(i) * time.Millisecond)); err != nil || int64(got) != want {
			t.Fatalf("call %d: queued score %v, %v; want %d", i, got, err, want)
		}
	}
}

// TestRunSharedOverlapsBatches: while Redis holds a batch of page-view
// scripts unanswered, the pipeliner sends the next ones on other connections
// (pipelineBatches), so that the service is not idle while Redis runs one
// batch; every call still runs once.
func TestRunSharedOverlapsBatches(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	if err := e.s.LoadScripts(e.ctx); err != nil {
		t.Fatal(err)
	}
	const calls = 4 * pipelineBatch * pipelineBatches
	// Scripts that write wait out the pause unanswered; INFO does not.
	if err := e.c.Do(e.ctx, "CLIENT", "PAUSE", "700", "WRITE").Err(); err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, calls)
	send := func(i int) {
		c := queueArgs{key: queueKey("shop"), delivery: fmt.Sprintf("wh:{shop:d%d}", i), due: luaT0, ttl: time.Hour}.call()
		errs <- e.s.runShared(e.ctx, c)
	}
	// The first call goes out alone and is held; the rest follow it.
	go send(0)
	time.Sleep(100 * time.Millisecond)
	for i := 1; i < calls; i++ {
		go send(i)
	}
	for range calls {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// Each batch in flight had a connection of its own, whose last command is
	// the script's: the calls that follow the held one go out on another
	// connection, where one ordered stream (go-redis' default) would have
	// held them until the first was answered.
	other := redis.NewClient(e.c.Options())
	defer other.Close()
	list, err := other.ClientList(e.ctx).Result()
	if err != nil {
		t.Fatal(err)
	}
	if carriers := strings.Count(list, " cmd=evalsha "); carriers < 2 {
		t.Errorf("%d connection(s) carried the calls while Redis held the first batch, want at least 2: the batches do not overlap\n%s", carriers, list)
	}
	if n := e.c.ZCard(e.ctx, queueKey("shop")).Val(); n != calls {
		t.Errorf("%d of %d calls ran", n, calls)
	}
}

// readsProcessed is the server's count of requests read from clients
// (INFO stats total_reads_processed): its round trips.
func readsProcessed(tb testing.TB, e luaEnv) int64 {
	tb.Helper()
	info, err := e.c.Info(e.ctx, "stats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "total_reads_processed:"); ok {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	tb.Fatalf("INFO stats has no total_reads_processed:\n%s", info)
	return 0
}

// A hit's call carries its EVALSHA command whole (sharedCall): the command
// runShared built from keys and args before, with no room to spare, args its
// tail. Sent by runShared, its script lost or not, it runs as run runs it.
func TestSharedCallIsEvalshaOfKeysAndArgs(t *testing.T) {
	t.Parallel()
	minted := hitOf("m", visitor.HitPageview, luaT0)
	minted.minted = true
	for _, tc := range []struct {
		name   string
		a      hitArgs
		script *script
		flush  bool
	}{
		{name: "hit.lua page view", a: hitOf("p", visitor.HitPageview, luaT0), script: hitScript},
		{name: "hit.lua heartbeat", a: hitOf("h", visitor.HitHeartbeat, luaT0), script: hitScript},
		{name: "hit_new.lua", a: minted, script: hitNewScript},
		{name: "hit.lua, script lost", a: hitOf("pl", visitor.HitPageview, luaT0), script: hitScript, flush: true},
		{name: "hit_new.lua, script lost", a: minted, script: hitNewScript, flush: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := tc.a.call()
			if err != nil {
				t.Fatal(err)
			}
			if c.script != tc.script {
				t.Fatalf("script %s, want %s", c.script.file, tc.script.file)
			}
			want := []any{"evalsha", c.script.Hash(), len(c.keys)}
			for _, k := range c.keys {
				want = append(want, k)
			}
			want = append(want, c.args...)
			if diff := cmp.Diff(want, c.command); diff != "" {
				t.Fatalf("EVALSHA command (-from keys and args +sent):\n%s", diff)
			}
			if cap(c.command) != len(c.command) {
				t.Errorf("EVALSHA command of %d arguments has room for %d: evalshaOf's count is off", len(c.command), cap(c.command))
			}
			if len(c.args) == 0 || &c.args[0] != &c.command[3+len(c.keys)] {
				t.Errorf("args is not the command's tail")
			}

			e := luaStart(t)
			if e.s.ap == nil {
				t.Fatal("the store has no auto-pipeliner: runShared would not send the command")
			}
			if err := e.s.LoadScripts(e.ctx); err != nil {
				t.Fatal(err)
			}
			if tc.flush {
				if err := e.c.ScriptFlush(e.ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if err := e.s.runShared(e.ctx, c); err != nil {
				t.Fatal(err)
			}
			if r, err := decodeHit(c); err != nil {
				t.Fatal(err)
			} else if want := tc.a.op == visitor.HitPageview; (r.outcome == visitor.OutcomeNewSession) != want {
				t.Errorf("outcome %v; a first page view opens a session, a heartbeat does not", r.outcome)
			}
		})
	}
}

package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

func TestStartSetGet(t *testing.T) {
	t.Parallel()
	s := Start(t)
	if got := s.Addr(); !strings.HasPrefix(got, "127.0.0.1:") {
		t.Fatalf("Addr() = %q, want 127.0.0.1:PORT", got)
	}
	if got, want := s.URL(), "redis://"+s.Addr()+"/0"; got != want {
		t.Fatalf("URL() = %q, want %q", got, want)
	}
	opt, err := redis.ParseURL(s.URL())
	if err != nil {
		t.Fatalf("ParseURL(%q): %v", s.URL(), err)
	}
	if got, want := opt.Addr, s.Addr(); got != want {
		t.Fatalf("ParseURL(URL()).Addr = %q, want %q", got, want)
	}

	c := s.Client(t)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", time.Minute).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
		t.Fatalf("GET k = %q, %v; want %q", got, err, "v")
	}
	// Persistence is off unless asked for.
	if got, err := c.ConfigGet(ctx, "appendonly").Result(); err != nil || got["appendonly"] != "no" {
		t.Fatalf("CONFIG GET appendonly = %v, %v; want no", got, err)
	}
	if got, err := c.ConfigGet(ctx, "save").Result(); err != nil || got["save"] != "" {
		t.Fatalf("CONFIG GET save = %v, %v; want empty", got, err)
	}
}

func TestStopRestartKeepsAppendOnlyData(t *testing.T) {
	t.Parallel()
	s := Start(t, "--appendonly", "yes")
	c := s.Client(t)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "kept", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	addr := s.Addr()

	s.Stop()
	s.Stop() // idempotent
	if _, err := probe(addr); err == nil {
		t.Fatalf("server at %s still answers after Stop", addr)
	}

	s.Restart(t)
	if got := s.Addr(); got != addr {
		t.Fatalf("Addr() after Restart = %q, want %q", got, addr)
	}
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "kept" {
		t.Fatalf("GET k after Restart = %q, %v; want %q", got, err, "kept")
	}

	// Restart of a running server stops it first.
	s.Restart(t)
	if got, err := c.Get(ctx, "k").Result(); err != nil || got != "kept" {
		t.Fatalf("GET k after second Restart = %q, %v; want %q", got, err, "kept")
	}
}

func TestKill(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := s.Client(t)
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}

	s.Kill()
	s.Kill() // idempotent
	s.Stop() // and Stop after Kill does nothing
	if _, err := probe(s.Addr()); err == nil {
		t.Fatalf("server at %s still answers after Kill", s.Addr())
	}

	// Without persistence a crash loses everything.
	s.Restart(t)
	if got, err := c.Get(ctx, "k").Result(); !errors.Is(err, redis.Nil) {
		t.Fatalf("GET k after Kill and Restart = %q, %v; want redis.Nil", got, err)
	}
}

func TestTwoServersAtOnce(t *testing.T) {
	t.Parallel()
	a, b := Start(t), Start(t)
	if a.Addr() == b.Addr() {
		t.Fatalf("both servers at %s", a.Addr())
	}
	ctx := t.Context()
	if err := a.Client(t).Set(ctx, "only-a", "1", 0).Err(); err != nil {
		t.Fatalf("SET on a: %v", err)
	}
	if n, err := b.Client(t).Exists(ctx, "only-a").Result(); err != nil || n != 0 {
		t.Fatalf("EXISTS only-a on b = %d, %v; want 0", n, err)
	}
}

func TestParallelStarts(t *testing.T) {
	t.Parallel()
	for i := range 4 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			t.Parallel()
			c := Start(t).Client(t)
			if err := c.Set(t.Context(), "k", i, 0).Err(); err != nil {
				t.Fatalf("SET: %v", err)
			}
			if got, err := c.Get(t.Context(), "k").Int(); err != nil || got != i {
				t.Fatalf("GET k = %d, %v; want %d", got, err, i)
			}
		})
	}
}

func TestStartFailureShowsLog(t *testing.T) {
	t.Parallel()
	lookupServer(t, exec.LookPath, os.Getenv) // skip or fail as Start would
	fake := &recordingTB{TB: t}
	run(func() { Start(fake, "--no-such-directive", "x") })
	if !fake.fatal {
		t.Fatalf("Start with a bad directive did not fail; errors: %q", fake.messages)
	}
	if msg := strings.Join(fake.messages, "\n"); !strings.Contains(msg, "no-such-directive") {
		t.Fatalf("failure message lacks the server's complaint:\n%s", msg)
	}
}

// Without redis-server a test fails with one line saying how to install it,
// unless the caller asked to skip; under CI=true it always fails (issue 18).
func TestLookupServerMissing(t *testing.T) {
	t.Parallel()
	checkLookupMissing(t, "redis-server", "apt-get install -y redis-server", lookupServer)
}

// checkLookupMissing runs lookup with a PATH lacking the tool under each
// environment and checks that it fails or skips as it should.
func checkLookupMissing(t *testing.T, name, install string, lookup func(testing.TB, func(string) (string, error), func(string) string) string) {
	t.Helper()
	missing := func(string) (string, error) { return "", errors.New("not found") }
	tests := []struct {
		name      string
		env       map[string]string
		wantFatal bool
		wantSkip  bool
	}{
		{name: "ci", env: map[string]string{"CI": "true"}, wantFatal: true},
		{name: "local", env: nil, wantFatal: true},
		{name: "ci false", env: map[string]string{"CI": "false"}, wantFatal: true},
		{name: "local asks to skip", env: map[string]string{SkipEnv: "1"}, wantSkip: true},
		{name: "ci asks to skip", env: map[string]string{"CI": "true", SkipEnv: "1"}, wantFatal: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := &recordingTB{TB: t}
			run(func() { lookup(fake, missing, func(k string) string { return tt.env[k] }) })
			if fake.fatal != tt.wantFatal || fake.skipped != tt.wantSkip {
				t.Fatalf("fatal, skipped = %v, %v; want %v, %v", fake.fatal, fake.skipped, tt.wantFatal, tt.wantSkip)
			}
			msg := strings.Join(fake.messages, "\n")
			if strings.Contains(msg, "\n") || !strings.Contains(msg, name) {
				t.Fatalf("message %q: want one line naming %s", msg, name)
			}
			if tt.wantFatal && !strings.Contains(msg, install) {
				t.Fatalf("failure message lacks the install hint %q: %s", install, msg)
			}
			if tt.wantFatal && tt.env["CI"] != "true" && !strings.Contains(msg, SkipEnv+"=1") {
				t.Fatalf("failure message does not say how to skip: %s", msg)
			}
		})
	}
}

func TestAssertAllKeysHaveTTL(t *testing.T) {
	t.Parallel()
	c := Start(t).Client(t)
	ctx := t.Context()
	for _, err := range []error{
		c.Set(ctx, "sess:1", "x", time.Hour).Err(),
		c.HSet(ctx, "visit:1", "path", "/").Err(),
		c.Expire(ctx, "visit:1", time.Hour).Err(),
		c.Set(ctx, "cfg:site", "x", 0).Err(),
		c.RPush(ctx, "leak", "x").Err(),
	} {
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
	}
	allowCfg := func(key string) bool { return strings.HasPrefix(key, "cfg:") }

	fake := &recordingTB{TB: t}
	run(func() { AssertAllKeysHaveTTL(fake, c, allowCfg) })
	msg := strings.Join(fake.messages, "\n")
	if len(fake.messages) == 0 || !strings.Contains(msg, "leak") {
		t.Fatalf("a key without TTL was not reported; messages: %q", msg)
	}
	for _, ok := range []string{"cfg:site", "sess:1", "visit:1"} {
		if strings.Contains(msg, ok) {
			t.Errorf("message names %q, which is allowed or has a TTL:\n%s", ok, msg)
		}
	}

	fake = &recordingTB{TB: t}
	run(func() { AssertAllKeysHaveTTL(fake, c, nil) })
	if msg := strings.Join(fake.messages, "\n"); !strings.Contains(msg, "cfg:site") || !strings.Contains(msg, "leak") {
		t.Fatalf("with nil allow, want cfg:site and leak reported; messages: %q", msg)
	}

	if err := c.Expire(ctx, "leak", time.Hour).Err(); err != nil {
		t.Fatalf("EXPIRE: %v", err)
	}
	fake = &recordingTB{TB: t}
	run(func() { AssertAllKeysHaveTTL(fake, c, allowCfg) })
	if len(fake.messages) != 0 || fake.fatal {
		t.Fatalf("all keys have a TTL or are allowed, yet: %q", fake.messages)
	}
	AssertAllKeysHaveTTL(t, c, allowCfg)
}

func TestKeysAndDumpValues(t *testing.T) {
	t.Parallel()
	c := Start(t).Client(t)
	ctx := t.Context()
	for _, err := range []error{
		c.Set(ctx, "str", "plain", 0).Err(),
		c.HSet(ctx, "hash", "b", "2", "a", "1").Err(),
		c.RPush(ctx, "list", "x", "y").Err(),
		c.SAdd(ctx, "set", "n", "m").Err(),
		c.ZAdd(ctx, "zset", redis.Z{Score: 2, Member: "two"}, redis.Z{Score: 1.5, Member: "one"}).Err(),
		c.XAdd(ctx, &redis.XAddArgs{Stream: "stream", ID: "1-1", Values: []string{"msg", "hello", "from", "me"}}).Err(),
	} {
		if err != nil {
			t.Fatalf("seed: %v", err)
		}
	}

	if diff := cmp.Diff([]string{"hash", "list", "set", "str", "stream", "zset"}, Keys(t, c)); diff != "" {
		t.Errorf("Keys() mismatch (-want +got):\n%s", diff)
	}
	want := map[string]string{
		"str":    "plain",
		"hash":   "a=1\nb=2",
		"list":   "x\ny",
		"set":    "m\nn",
		"zset":   "one 1.5\ntwo 2",
		"stream": "1-1 from=me msg=hello",
	}
	if diff := cmp.Diff(want, DumpValues(t, c)); diff != "" {
		t.Errorf("DumpValues() mismatch (-want +got):\n%s", diff)
	}
}

func TestDumpValuesEmpty(t *testing.T) {
	t.Parallel()
	c := Start(t).Client(t)
	if got := DumpValues(t, c); len(got) != 0 {
		t.Fatalf("DumpValues() of an empty server = %v", got)
	}
	if got := Keys(t, c); len(got) != 0 {
		t.Fatalf("Keys() of an empty server = %v", got)
	}
}

// recordingTB is a testing.TB whose failures and skips are recorded instead
// of reported, so tests can observe a helper failing. Fatal and skip calls end
// the calling goroutine, as the real ones do; call the helper through run.
type recordingTB struct {
	testing.TB

	mu       sync.Mutex
	messages []string
	fatal    bool
	skipped  bool
}

func (r *recordingTB) record(msg string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.messages = append(r.messages, msg)
}

func (r *recordingTB) Error(args ...any)                 { r.record(fmt.Sprint(args...)) }
func (r *recordingTB) Errorf(format string, args ...any) { r.record(fmt.Sprintf(format, args...)) }

func (r *recordingTB) Fatal(args ...any) {
	r.record(fmt.Sprint(args...))
	r.fatal = true
	runtime.Goexit()
}

func (r *recordingTB) Fatalf(format string, args ...any) {
	r.record(fmt.Sprintf(format, args...))
	r.fatal = true
	runtime.Goexit()
}

func (r *recordingTB) Skip(args ...any) {
	r.record(fmt.Sprint(args...))
	r.skipped = true
	runtime.Goexit()
}

func (r *recordingTB) Skipf(format string, args ...any) {
	r.record(fmt.Sprintf(format, args...))
	r.skipped = true
	runtime.Goexit()
}

// run calls fn in its own goroutine, so that a recordingTB's Goexit ends only
// fn, and waits for it.
func run(fn func()) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	<-done
}

// A stopped server keeps its port: no other server can take it while the
// test still holds the address, and a client fails as with no server; a
// restart gets the port back.
func TestStoppedServerHoldsItsPort(t *testing.T) {
	t.Parallel()
	s := Start(t)
	c := s.Client(t)
	s.Stop()
	if ln, err := net.Listen("tcp", s.Addr()); err == nil {
		ln.Close()
		t.Fatalf("the port of a stopped server was free to take")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err == nil {
		t.Fatalf("PING to a stopped server answered")
	}
	s.Restart(t)
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after restart: %v", err)
	}
}

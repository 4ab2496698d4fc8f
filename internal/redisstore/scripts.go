package redisstore

import (
	"context"
	"embed"
	"errors"
	"strings"

	"github.com/redis/go-redis/v9"
)

// luaFiles holds every script (one per file) and the libraries they share
// (lib_*.lua). Each file opens with a header listing its KEYS, ARGV and reply.
//
//go:embed *.lua
var luaFiles embed.FS

// script is a declared Lua script: its file's source after its libraries'.
type script struct {
	file string
	libs []string
	*redis.Script
	// hash is Hash() boxed once: converting a string to any allocates, and
	// runShared sends it on every call.
	hash any
	// lib is the Functions library the script is also a function of (nil:
	// none), fn that function's name, boxed (functions.go).
	lib *library
	fn  any
}

// declared lists every script declare made, in order: LoadScripts loads them
// all, so no script can be declared and not preloaded.
var declared []*script

// declare returns the script of file, the libraries libs put before it, and
// registers it for LoadScripts. A missing file is a build mistake (the files
// are embedded), so it panics at start.
func declare(file string, libs ...string) *script {
	var b strings.Builder
	for _, name := range append(libs, file) {
		b.Write(mustRead(name))
		b.WriteByte('\n')
	}
	s := &script{file: file, libs: libs, Script: redis.NewScript(b.String())}
	s.hash = s.Hash()
	declared = append(declared, s)
	return s
}

// mustRead returns an embedded Lua file; a missing one is a build mistake.
func mustRead(name string) []byte {
	src, err := luaFiles.ReadFile(name)
	if err != nil {
		panic("redisstore: " + err.Error())
	}
	return src
}

// LoadScripts loads the store's scripts and Functions libraries on every node,
// so the first page views after a start need no fallback; scripts missing
// later (a restart, a failover) are sent whole once, a library loaded again.
func (s *Store) LoadScripts(ctx context.Context) error {
	err := s.onEveryNode(ctx, func(ctx context.Context, c redis.UniversalClient) error {
		for _, sc := range declared {
			if err := sc.Load(ctx, c).Err(); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return translate(err)
	}
	for _, lib := range libraries {
		if err := s.loadLibrary(ctx, lib); err != nil {
			return err
		}
	}
	return nil
}

// onEveryNode runs f on each master of a Cluster, else on the client.
func (s *Store) onEveryNode(ctx context.Context, f func(context.Context, redis.UniversalClient) error) error {
	if cc, ok := s.c.(*redis.ClusterClient); ok {
		return cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return f(ctx, c) })
	}
	return f(ctx, s.c)
}

// call is one script call of a pipeline.
type call struct {
	script *script
	keys   []string
	args   []any
	// command, when not nil, is the call's command whole, args its tail
	// (sharedCall): its EVALSHA, or the FCALL runShared makes of it.
	command []any
	cmd     *redis.Cmd
}

// evalshaOf starts the EVALSHA command of sc over keys, with room for n
// arguments: appended to it, they make a sharedCall, whose command runShared
// need not build again from keys and args (issue 20: a page view's hit).
func evalshaOf(sc *script, keys []string, n int) []any {
	cmd := make([]any, 0, 3+len(keys)+n)
	cmd = append(cmd, "evalsha", sc.hash, len(keys))
	for _, k := range keys {
		cmd = append(cmd, k)
	}
	return cmd
}

// sharedCall is the call of sc over keys whose EVALSHA command is cmd:
// evalshaOf(sc, keys, n) with the arguments appended.
func sharedCall(sc *script, keys []string, cmd []any) *call {
	return &call{script: sc, keys: keys, args: cmd[3+len(keys):], command: cmd}
}

// run sends calls in one pipeline: one round trip on a single Redis, one per node
// involved on a Cluster. A call whose script the node lost (NOSCRIPT after a
// restart or failover) is sent again whole; the others ran once.
func (s *Store) run(ctx context.Context, calls ...*call) error {
	return runOn(ctx, s.c, calls...)
}

// runShared sends c through the client's auto-pipeliner when it has one: the
// calls of concurrent requests share one pipeline and one round trip (group
// commit), each still bounded by its own ctx. A call whose ctx ends first
// answers its caller at once; the command may still run, as a pipelined one
// whose reply came late would. A script of a Functions library is sent as
// FCALL of its function, unless the server has no functions; a library the
// node lost is loaded again and the call sent once more. A script the node
// lost (NOSCRIPT) is sent whole once, which caches it again. A call refused
// because the pipeliner holds its queue (WithPipelineQueue) is
// ErrStoreUnavailable at once, and counted.
func (s *Store) runShared(ctx context.Context, c *call) error {
	if s.ap == nil {
		return s.run(ctx, c)
	}
	if c.command == nil {
		c.command = append(evalshaOf(c.script, c.keys, len(c.args)), c.args...)
	}
	fcall := c.script.lib != nil && s.functions.Load() != functionsMissing
	if fcall {
		c.command[0], c.command[1] = "fcall", c.script.fn
	}
	err := s.send(ctx, c)
	if fcall && err != nil && (functionGone(err) || noFunctions(err)) {
		if noFunctions(err) {
			s.functions.Store(functionsMissing)
		} else if err := s.loadLibrary(ctx, c.script.lib); err != nil {
			return err
		}
		if s.functions.Load() == functionsMissing {
			c.command[0], c.command[1] = "evalsha", c.script.hash
		}
		err = s.send(ctx, c)
	}
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		c.cmd = c.script.Eval(ctx, s.c, c.keys, c.args...)
		err = c.cmd.Err()
	}
	if errors.Is(err, redis.ErrAutoPipelineQueueFull) {
		s.pipelineRejected.Add(1)
	}
	if err != nil && !errors.Is(err, redis.Nil) {
		return translate(err)
	}
	return nil
}

// send submits c's command to the auto-pipeliner and waits for its reply.
func (s *Store) send(ctx context.Context, c *call) error {
	c.cmd = redis.NewCmd(ctx, c.command...)
	return s.ap.Submit(ctx, c.cmd).WaitContext(ctx)
}

// runner is what run needs: the client, or one connection of it (redis.Conn).
type runner interface {
	redis.Scripter
	Pipeline() redis.Pipeliner
	Do(ctx context.Context, args ...any) *redis.Cmd
}

// runOn is run on r: with a redis.Conn every command, fallbacks included, goes
// over that one connection.
func runOn(ctx context.Context, r runner, calls ...*call) error {
	pipe := r.Pipeline()
	for _, c := range calls {
		c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	if _, err := pipe.Exec(ctx); err == nil {
		return nil
	}
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			c.cmd = c.script.Eval(ctx, r, c.keys, c.args...)
		}
	}
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil && !errors.Is(err, redis.Nil) {
			return translate(err)
		}
	}
	return nil
}

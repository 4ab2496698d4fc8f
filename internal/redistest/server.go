// Package redistest starts real, ephemeral redis-server processes for tests
// and inspects what they hold. It never mocks Redis: tests that pass against a
// fake can still be wrong about commands, TTLs and pipeline semantics.
package redistest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// readyTimeout bounds how long a starting server may take to answer PING.
	readyTimeout = 10 * time.Second
	// stopTimeout bounds how long a server may take to exit on SIGTERM before
	// it gets SIGKILL.
	stopTimeout = 10 * time.Second
	// startAttempts is how many ports Start tries (and how often Restart
	// retries its port) when another process holds the port.
	startAttempts = 5
	// tailLines is how many lines of each log a startup failure shows.
	tailLines = 30

	logName = "redis.log"    // written by redis-server (--logfile)
	outName = "redis.stdout" // redis-server's stdout and stderr
)

// errPortInUse reports that a launch lost its port to another process.
var errPortInUse = errors.New("port in use")

// Server is a redis-server process started by Start for one test. Its methods
// are safe for concurrent use.
type Server struct {
	bin  string   // path of redis-server
	dir  string   // --dir, also holds the logs
	args []string // extra arguments given to Start
	port int      // fixed by Start, reused by Restart

	mu   sync.Mutex
	proc *process // nil while stopped
	// hold keeps the port of a stopped server, refusing every connection,
	// so that a server another test starts meanwhile cannot take it: a
	// client of this one would then reach that one instead of failing.
	hold net.Listener
}

// process is one run of redis-server.
type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed once cmd.Wait has returned
	err  error         // cmd.Wait's result, set before done is closed
}

// Start runs redis-server on a free loopback port with persistence off, a
// fresh tb.TempDir() as its directory and args appended to its command line
// (later arguments override earlier ones, so "--appendonly", "yes" turns the
// AOF back on). It returns once the server answers PING and stops the server
// in tb.Cleanup. Without redis-server on PATH it fails the test with one line
// saying how to install it, or skips it when VISITORD_TEST_SKIP_REDIS=1 asks
// to (never under CI=true).
func Start(tb testing.TB, args ...string) *Server {
	tb.Helper()
	bin := lookupServer(tb, exec.LookPath, os.Getenv)
	s := &Server{bin: bin, dir: tb.TempDir(), args: slices.Clone(args)}
	// Registered after TempDir so that it runs before the directory is removed.
	tb.Cleanup(s.shutdown)

	return s.startOn(tb, "redis-server", freePort, nil)
}

// startOn starts s on a port pick gives, retrying on another port while the
// chosen one turns out taken; argsFor, when not nil, sets the arguments that
// depend on the port.
func (s *Server) startOn(tb testing.TB, what string, pick func() (int, error), argsFor func(port int) []string) *Server {
	tb.Helper()
	var err error
	for range startAttempts {
		var port int
		if port, err = pick(); err != nil {
			tb.Fatalf("redistest: pick a port for %s: %v", what, err)
		}
		if argsFor != nil {
			s.args = argsFor(port)
		}
		var p *process
		if p, err = s.launch(port); err == nil {
			s.port = port
			s.mu.Lock()
			s.proc = p
			s.mu.Unlock()
			return s
		}
		if !errors.Is(err, errPortInUse) {
			break
		}
	}
	if errors.Is(err, errPortInUse) {
		err = fmt.Errorf("%d attempts, the last: %w", startAttempts, err)
	}
	tb.Fatalf("redistest: start %s: %v\n%s", what, err, s.logTail())
	return nil
}

// SkipEnv names the variable that lets a caller without redis-server skip the
// tests that need it ("1" or "true"); without it they fail.
const SkipEnv = "VISITORD_TEST_SKIP_REDIS"

// ServerPath returns the path of redis-server for a test that starts it
// itself, or ends the test as Start does when it is missing.
func ServerPath(tb testing.TB) string {
	tb.Helper()
	return lookupServer(tb, exec.LookPath, os.Getenv)
}

// ToolPath returns the path of the tool name, from the Debian package pkg, for
// a test that runs it beside redis-server (valgrind), or ends the test as
// Start does when it is missing.
func ToolPath(tb testing.TB, name, pkg string) string {
	tb.Helper()
	return lookupTool(tb, exec.LookPath, os.Getenv, name, pkg)
}

// lookupServer returns the path of redis-server, or ends the test with one line
// saying how to install it: a failure, unless the caller asked to skip with
// VISITORD_TEST_SKIP_REDIS=1; under CI=true always a failure.
func lookupServer(tb testing.TB, lookPath func(string) (string, error), getenv func(string) string) string {
	tb.Helper()
	return lookupTool(tb, lookPath, getenv, "redis-server", "redis-server")
}

// lookupTool finds the binary name from the Debian package pkg on PATH, or ends
// the test as lookupServer says.
func lookupTool(tb testing.TB, lookPath func(string) (string, error), getenv func(string) string, name, pkg string) string {
	tb.Helper()
	bin, err := lookPath(name)
	if err == nil {
		return bin
	}
	ci, _ := strconv.ParseBool(getenv("CI"))
	skip, _ := strconv.ParseBool(getenv(SkipEnv))
	if skip && !ci {
		tb.Skipf("redistest: %s is not on PATH and %s is set: skipping", name, SkipEnv)
	}
	hint := fmt.Sprintf(", or set %s=1 to skip the tests that need it", SkipEnv)
	if ci {
		hint = " (CI=true: never skipped)"
	}
	tb.Fatalf("redistest: %s is not on PATH: install it (apt-get install -y %s)%s", name, pkg, hint)
	return ""
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// Addr returns the server's address, "127.0.0.1:PORT".
func (s *Server) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns the server's address as a redis URL for database 0,
// "redis://127.0.0.1:PORT/0".
func (s *Server) URL() string {
	return "redis://" + s.Addr() + "/0"
}

// Client returns a new client for the server, closed in tb.Cleanup.
func (s *Server) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: s.Addr()})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop shuts the server down gracefully (SIGTERM, which makes redis-server
// flush its AOF, then SIGKILL if it has not exited within ten seconds) and
// waits for it to exit. It does nothing if the server is not running.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.terminate()
	s.proc = nil
	s.holdPort()
}

// holdPort listens on the stopped server's port and closes each connection
// at once, so that its clients fail as with no server (with EOF rather than a
// refused connection) and no other test's server can take the port while this
// test still uses its address. It is best effort: a port it cannot bind stays
// as it is.
func (s *Server) holdPort() {
	if s.hold != nil || s.port == 0 {
		return
	}
	ln, err := net.Listen("tcp", s.Addr())
	if err != nil {
		return
	}
	s.hold = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
}

// releasePort gives back the port holdPort held.
func (s *Server) releasePort() {
	if s.hold != nil {
		_ = s.hold.Close()
		s.hold = nil
	}
}

// shutdown stops the server and gives its port back, at the end of the test.
func (s *Server) shutdown() {
	s.Stop()
	s.mu.Lock()
	defer s.mu.Unlock()
	s.releasePort()
}

// Kill ends the server with SIGKILL, as a crash would, and waits for it to
// exit. It does nothing if the server is not running.
func (s *Server) Kill() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.kill()
	s.proc = nil
	s.holdPort()
}

// Restart stops the server if it is running and starts it again with the
// same port, directory and arguments, so that with "--appendonly", "yes" the
// data survives. It returns once the server answers PING and fails tb if it
// does not.
func (s *Server) Restart(tb testing.TB) {
	tb.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		s.proc.terminate()
		s.proc = nil
	}
	s.releasePort()
	var err error
	for attempt := range startAttempts {
		var p *process
		if p, err = s.launch(s.port); err == nil {
			s.proc = p
			return
		}
		if !errors.Is(err, errPortInUse) {
			break
		}
		// The port is fixed, so all we can do is wait for its holder to leave.
		time.Sleep(time.Duration(attempt+1) * 100 * time.Millisecond)
	}
	tb.Fatalf("redistest: restart redis-server on %s: %v\n%s", s.Addr(), err, s.logTail())
}

// launch runs redis-server on port and waits until it answers PING. The error
// wraps errPortInUse when another process holds the port.
func (s *Server) launch(port int) (*process, error) {
	logPath := filepath.Join(s.dir, logName)
	outPath := filepath.Join(s.dir, outName)

	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child holds its own descriptor

	argv := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", s.dir,
		"--daemonize", "no",
		"--logfile", logPath,
	}
	cmd := exec.Command(s.bin, append(argv, s.args...)...)
	return startCmd(cmd, s.dir, out, port, logPath, outPath)
}

// startCmd starts a redis-server (or sentinel) command in dir with its output
// to out, and waits until it answers on port; a port taken by another process
// wraps errPortInUse.
func startCmd(cmd *exec.Cmd, dir string, out *os.File, port int, logPath, outPath string) (*process, error) {
	logFrom, outFrom := fileSize(logPath), fileSize(outPath)
	cmd.Dir = dir
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = sysProcAttr()
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	err := p.waitReady(addr, readyTimeout)
	if err == nil {
		return p, nil
	}
	p.kill()
	if errors.Is(err, errPortInUse) ||
		logMentions(logPath, logFrom, "Address already in use") ||
		logMentions(outPath, outFrom, "Address already in use") {
		return nil, fmt.Errorf("%s: %w", addr, errPortInUse)
	}
	return nil, err
}

// waitReady polls addr until our process answers PING, exits, or timeout
// passes. An answer from another process wraps errPortInUse.
func (p *process) waitReady(addr string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		select {
		case <-p.done:
			return fmt.Errorf("redis-server exited during startup: %v", p.err)
		default:
		}
		pid, err := probe(addr)
		if err == nil {
			if pid != p.cmd.Process.Pid {
				return fmt.Errorf("%s is served by pid %d, not ours (%d): %w", addr, pid, p.cmd.Process.Pid, errPortInUse)
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no PONG from %s within %v: %v", addr, timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// probe sends PING and INFO server to addr over raw RESP and returns the
// process_id of the server that answered PONG. It uses no client library so
// that polling a server that is not up yet logs nothing.
func probe(addr string) (int, error) {
	conn, err := net.DialTimeout("tcp", addr, 250*time.Millisecond)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(time.Second)); err != nil {
		return 0, err
	}
	// PING fails with -LOADING while the AOF loads, INFO would not.
	const req = "*1\r\n$4\r\nPING\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n"
	if _, err := io.WriteString(conn, req); err != nil {
		return 0, err
	}
	r := bufio.NewReader(conn)
	line, err := readLine(r)
	if err != nil {
		return 0, err
	}
	if line != "+PONG" {
		return 0, fmt.Errorf("PING answered %q", line)
	}
	line, err = readLine(r)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(strings.TrimPrefix(line, "$"))
	if !strings.HasPrefix(line, "$") || err != nil || n < 0 {
		return 0, fmt.Errorf("INFO answered %q", line)
	}
	info := make([]byte, n)
	if _, err := io.ReadFull(r, info); err != nil {
		return 0, err
	}
	for l := range strings.SplitSeq(string(info), "\r\n") {
		if v, ok := strings.CutPrefix(l, "process_id:"); ok {
			return strconv.Atoi(v)
		}
	}
	return 0, errors.New("INFO server has no process_id")
}

// readLine reads one CRLF-terminated RESP line without its terminator.
func readLine(r *bufio.Reader) (string, error) {
	line, err := r.ReadString('\n')
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(line, "\r\n"), nil
}

// terminate sends SIGTERM, waits up to stopTimeout, then kills.
func (p *process) terminate() {
	select {
	case <-p.done:
		return
	default:
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err == nil {
		select {
		case <-p.done:
			return
		case <-time.After(stopTimeout):
		}
	}
	p.kill()
}

// kill sends SIGKILL and waits for the process to exit.
func (p *process) kill() {
	_ = p.cmd.Process.Kill() // fails only if it has already exited
	<-p.done
}

// logTail returns the last lines of the server's log and of its output
// (where it reports configuration errors, before it opens its log).
func (s *Server) logTail() string {
	var b strings.Builder
	for _, name := range []string{logName, outName} {
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		text := strings.TrimSpace(string(data))
		if err != nil || text == "" {
			continue
		}
		lines := strings.Split(text, "\n")
		if len(lines) > tailLines {
			lines = lines[len(lines)-tailLines:]
		}
		fmt.Fprintf(&b, "--- tail of %s ---\n%s\n", name, strings.Join(lines, "\n"))
	}
	return b.String()
}

// fileSize returns the size of path, or 0 if it cannot be read.
func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// logMentions reports whether path, from offset on, contains s.
func logMentions(path string, offset int64, s string) bool {
	data, err := os.ReadFile(path)
	if err != nil || offset > int64(len(data)) {
		return false
	}
	return bytes.Contains(data[offset:], []byte(s))
}

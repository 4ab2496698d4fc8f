package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// A callgrind counts the instructions a redis-server run under valgrind's
// callgrind executes (user space only): the same count for the same commands
// whatever else the machine runs, where CPU time moves with the machine's
// load. The server runs some 50 times slower under it, so it measures a
// count of page views, never a rate.
type callgrind struct {
	pid   int
	dir   string
	total int64 // instructions of the dumps read so far
	dumps int
}

// startRedisCallgrind starts redis-server, as startRedis does, under
// valgrind's callgrind, writing its dumps to dir.
func startRedisCallgrind(ctx context.Context, dir string) (*redisServer, *callgrind, error) {
	for _, tool := range []string{"valgrind", "callgrind_control"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, nil, fmt.Errorf("-callgrind: %s is not on PATH (apt-get install -y valgrind)", tool)
		}
	}
	rs, err := startRedisWith(ctx, dir, "valgrind", "--tool=callgrind", "--callgrind-out-file="+filepath.Join(dir, "callgrind.out.%p"), "redis-server")
	if err != nil {
		return nil, nil, err
	}
	return rs, &callgrind{pid: rs.cmd.Process.Pid, dir: dir}, nil
}

// read dumps the counts since the last dump (callgrind_control -d) and
// returns the instructions of every dump so far: a reading that grows with
// what the server ran, like used_memory.
func (c *callgrind) read() (int64, error) {
	out, err := exec.Command("callgrind_control", "-d", strconv.Itoa(c.pid)).CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("callgrind_control -d: %v: %s", err, out)
	}
	c.dumps++
	path := filepath.Join(c.dir, fmt.Sprintf("callgrind.out.%d.%d", c.pid, c.dumps))
	// callgrind_control returns once the dump is asked for; the file follows.
	deadline := time.Now().Add(30 * time.Second)
	for {
		f, err := os.Open(path)
		if err == nil {
			n, perr := callgrindSummary(f)
			f.Close()
			if perr == nil {
				c.total += n
				return c.total, nil
			}
			err = perr
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("callgrind dump %s: %w", path, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// callgrindSummary reads the instruction count of a callgrind dump: its
// "summary:" line (the Ir events of the dump), written once the dump is whole.
func callgrindSummary(r io.Reader) (int64, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "summary:"); ok {
			return strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no summary line (a dump still being written?)")
}

// countInstructions sends each target, in turn on a wiped server, 10,000 new
// visitors' page views and then n further page views of theirs
// (sendPhases), and prints redis-server's instructions per page view of each
// phase beside the floor's.
func countInstructions(ctx context.Context, w io.Writer, rs *redisServer, cg *callgrind, targets []*target, n int) error {
	const visitors = 10000
	per := make([]phases, len(targets))
	for i, t := range targets {
		if err := (redisNodes{rs}).flush(); err != nil {
			return err
		}
		p, err := sendPhases(ctx, t.url, visitors, n, cg.read)
		if err != nil {
			return fmt.Errorf("%s: %w", t.name, err)
		}
		per[i] = p
	}
	fmt.Fprintf(w, "redis-server instructions per page view (valgrind --tool=callgrind, user space): %d new visitors, then %d further page views of theirs\n\n", visitors, n)
	// The targets are the floor and visitord (-callgrind runs no Cluster).
	floor, vd := per[0], per[1]
	fmt.Fprintf(w, "| measure | %s | %s | %s/floor |\n|---|---|---|---|\n", targets[0].name, targets[1].name, targets[1].name)
	fmt.Fprintf(w, "| instructions/new visitor's page view | %.0f | %.0f | %.2f× |\n", floor.perVisitor, vd.perVisitor, vd.perVisitor/floor.perVisitor)
	fmt.Fprintf(w, "| instructions/further page view | %.0f | %.0f | %.2f× |\n", floor.perView, vd.perView, vd.perView/floor.perView)
	for i, p := range per {
		if p.refused > 0 {
			fmt.Fprintf(w, "%s: %d page views answered 503 or were of a visitor refused so, left out of the counts\n", targets[i].name, p.refused)
		}
	}
	return nil
}

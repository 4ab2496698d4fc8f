// Command loadbench measures visitord's page-view path against its floor, as
// DESIGN.md's Performance section defines them, on loopback with a private
// redis-server, and prints one table: requests per second, p50 and p99, CPU
// per request of the service, of redis-server and of the load generator (from
// /proc/<pid>/stat), Redis commands per request (INFO commandstats),
// allocations per request (the Go runtime's count of heap objects), Redis
// round trips per request (INFO stats total_reads_processed), and Redis
// memory per visitor and per further page view (INFO used_memory).
// `make bench` runs it.
//
// With -cluster N (`make bench-cluster`) it starts N redis-server masters in
// cluster mode instead of one server and measures visitord alone against
// them, then prints a table per node: its share of the page-view scripts, its
// commands, round trips and CPU per page view, and whether a node is hot.
//
// The load generator is this program (Go, keep-alive connections, one
// goroutine per connection), the same for both targets. Each target runs in a
// process of its own: the floor is this binary's `floor` mode; visitord is the
// real binary, configured by environment like production.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "loadbench:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "floor" {
		fs := flag.NewFlagSet("floor", flag.ContinueOnError)
		addr := fs.String("addr", "127.0.0.1:0", "listen address")
		metricsAddr := fs.String("metrics", "", "listen address of /metrics (the Go runtime's allocation count)")
		redisAddr := fs.String("redis", "", "redis host:port")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return err
		}
		if *metricsAddr != "" {
			mln, err := net.Listen("tcp", *metricsAddr)
			if err != nil {
				return err
			}
			go serveRuntimeMetrics(ctx, mln)
		}
		return serveFloor(ctx, ln, *redisAddr)
	}
	fs := flag.NewFlagSet("loadbench", flag.ContinueOnError)
	bin := fs.String("visitord", "bin/visitord", "visitord binary")
	duration := fs.Duration("duration", 3*time.Second, "measured time of each run")
	warmup := fs.Duration("warmup", time.Second, "unmeasured time before each run")
	conns := fs.String("conns", "64", "connection counts, comma-separated")
	runs := fs.Int("runs", 1, "runs per target and connection count (the run of median requests/s is reported)")
	mixName := fs.String("load", "new", "the load: new (a new visitor from a random address on every request) or corpus (DESIGN.md's corpus)")
	returning := fs.Int("returning", 30, "with -load corpus: the percentage of page views by returning visitors (DESIGN.md's corpus: 30)")
	views := fs.Int("memory", 20000, "further page views sent for the Redis memory measurement, after 10k visitors (0 skips it)")
	profile := fs.String("profile", "", "write a CPU profile of visitord under 64-connection load to this file")
	counting := fs.Bool("callgrind", false, "instead of the load, count redis-server's instructions per page view under valgrind's callgrind (the same count on a busy machine): 10k new visitors, then -memory further page views, each target on a wiped server")
	masters := fs.Int("cluster", 0, "run visitord against a Redis Cluster of this many masters instead of one redis-server (0: off); the floor is then not run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *masters < 0 {
		return fmt.Errorf("-cluster: %d masters", *masters)
	}
	if *counting && (*masters > 0 || *views < 1) {
		return errors.New("-callgrind: counts on one redis-server (no -cluster), over -memory > 0 further page views")
	}
	var counts []int
	for _, c := range strings.Split(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("-conns: %q is not a count", c)
		}
		counts = append(counts, n)
	}
	if *returning < 0 || *returning > 100 {
		return fmt.Errorf("-returning: %d is not a percentage", *returning)
	}
	corpus := newCorpus(10000, 2000)
	corpus.returning = *returning
	var mix requester
	switch *mixName {
	case "new":
		mix = newVisitors{c: corpus}
	case "corpus":
		mix = corpus
	default:
		return fmt.Errorf("-load: %q is neither new nor corpus", *mixName)
	}
	dir, err := os.MkdirTemp("", "loadbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	var nodes redisNodes
	var cg *callgrind
	switch {
	case *masters > 0:
		nodes, err = startCluster(ctx, dir, *masters)
	case *counting:
		var rs *redisServer
		rs, cg, err = startRedisCallgrind(ctx, dir)
		nodes = redisNodes{rs}
	default:
		var rs *redisServer
		rs, err = startRedis(ctx, dir)
		nodes = redisNodes{rs}
	}
	if err != nil {
		return err
	}
	defer nodes.stop()
	var targets []*target
	if *masters == 0 {
		// The floor speaks to one Redis: it runs against the single server only.
		floor, err := startFloor(ctx, dir, nodes[0].addr)
		if err != nil {
			return fmt.Errorf("floor: %w", err)
		}
		defer floor.proc.stop()
		targets = append(targets, floor)
	}
	vAddr, err := freeAddr()
	if err != nil {
		return err
	}
	// pprof and /metrics are served on the private metrics listener only.
	mAddr, err := freeAddr()
	if err != nil {
		return err
	}
	var env []string
	if *counting {
		// Under callgrind the server runs some 50 times slower: a page view
		// must not time out and be left out of the count while its script
		// still runs and is counted.
		env = append(env, "VISITORD_TRACK_TIMEOUT=60s")
	}
	vd, err := startVisitord(ctx, *bin, dir, vAddr, mAddr, nodes.url(), env...)
	if err != nil {
		return fmt.Errorf("visitord: %w", err)
	}
	defer vd.stop()
	targets = append(targets, &target{name: "visitord", url: "http://" + vAddr, proc: vd, metrics: []string{"http://" + mAddr, "http://" + vAddr}})

	if cg != nil {
		return countInstructions(ctx, os.Stdout, nodes[0], cg, targets, *views)
	}
	fmt.Printf("loadbench: load %q from this Go program on 127.0.0.1; %s measured after %s warm-up per target; %d run(s), the run of median requests/s shown; %s\n",
		*mixName, duration, warmup, *runs, *bin)
	fmt.Printf("CPU is utime+stime from /proc/<pid>/stat of the processes this run started, over the measured window, per response\n")
	if *masters > 0 {
		fmt.Printf("Redis Cluster of %d masters (%s): only visitord is measured, the floor speaks to one Redis and is not run; redis-server figures are the sums over the nodes\n",
			*masters, nodes.url())
	}
	fmt.Println()
	var cols []column
	for _, c := range counts {
		results := make([][]result, len(targets))
		for i := 0; i < *runs; i++ {
			for ti, t := range targets {
				if err := nodes.flush(); err != nil {
					return err
				}
				// A returning visitor of the corpus comes back to data of this run.
				mix.forget()
				snap := func(responses func() int64) (sample, error) { return takeSample(ctx, nodes, t, responses) }
				r, err := load(ctx, t.url, mix, c, *warmup, *duration, snap)
				if err != nil {
					return fmt.Errorf("%s: %w", t.name, err)
				}
				results[ti] = append(results[ti], r)
				if ctx.Err() != nil {
					return ctx.Err()
				}
			}
		}
		for ti, t := range targets {
			cols = append(cols, column{name: t.name, conns: c, res: median(results[ti])})
		}
	}
	if *views > 0 {
		for _, t := range targets {
			m, err := measureMemory(ctx, nodes, t.url, *views)
			if err != nil {
				// The load figures stand without it; the table shows "—".
				fmt.Fprintf(os.Stderr, "loadbench: %s: %v\n", t.name, err)
			}
			for i := range cols {
				if cols[i].name == t.name {
					cols[i].mem = m
				}
			}
		}
	}
	printTable(os.Stdout, cols)
	if *masters > 0 {
		for _, c := range cols {
			printNodeTable(os.Stdout, nodes.addrs(), c)
		}
	}
	if *profile != "" {
		if err := profileUnderLoad(ctx, "http://"+vAddr, "http://"+mAddr, mix, *profile); err != nil {
			return err
		}
		fmt.Printf("\nCPU profile of visitord under 64-connection load: %s (go tool pprof -top %s %s)\n", *profile, *bin, *profile)
	}
	return nil
}

func median(rs []result) result {
	sort.Slice(rs, func(i, j int) bool { return rs[i].rps < rs[j].rps })
	return rs[len(rs)/2]
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// process is a child this program started; stop ends it (and only it) by PID.
type process struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once the child has exited and been reaped
}

func (p *process) stop() {
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func startProcess(ctx context.Context, cmd *exec.Cmd, addr, logPath string) (*process, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); f.Close(); close(p.exited) }()
	_, portText, err := net.SplitHostPort(addr)
	if err != nil {
		p.stop()
		return nil, err
	}
	port, err := strconv.Atoi(portText)
	if err != nil {
		p.stop()
		return nil, err
	}
	// Ready once the child itself holds the listening socket of addr: a
	// connection alone could reach another process that took the port, and
	// the CPU read from /proc would then be of the wrong process.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		mine, err := listensOn(cmd.Process.Pid, port)
		if err != nil {
			p.stop()
			return nil, err
		}
		if mine {
			return p, nil
		}
		select {
		case <-ctx.Done():
		case <-p.exited:
		case <-time.After(50 * time.Millisecond):
			continue
		}
		break
	}
	p.stop()
	b, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("%s (pid %d) did not listen on %s: %s", cmd.Path, cmd.Process.Pid, addr, tail(b))
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

// startFloor starts the floor (this binary's floor mode) against Redis at
// redisAddr, with the Go runtime's metrics on a listener of its own.
func startFloor(ctx context.Context, dir, redisAddr string) (*target, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	metrics, err := freeAddr()
	if err != nil {
		return nil, err
	}
	p, err := startProcess(ctx, exec.Command(self, "floor", "-addr", addr, "-metrics", metrics, "-redis", redisAddr), addr, filepath.Join(dir, "floor.log"))
	if err != nil {
		return nil, err
	}
	return &target{name: "floor", url: "http://" + addr, proc: p, metrics: []string{"http://" + metrics}}, nil
}

// startVisitord starts visitord on the bench's site against
// VISITORD_REDIS_URL redisURL, with env added to its environment.
func startVisitord(ctx context.Context, bin, dir, addr, metricsAddr, redisURL string, env ...string) (*process, error) {
	if _, err := os.Stat(bin); err != nil {
		return nil, fmt.Errorf("%s: %w (make build makes it)", bin, err)
	}
	sites := filepath.Join(dir, "sites.yaml")
	if err := os.WriteFile(sites, []byte(`sites:
  - id: bench
    origins: ["https://bench.example"]
    consent: opt-out
    policy_version: "1"
    legal_text: "The load benchmark's site."
    controller: {name: "loadbench", contact: "bench@bench.example"}
`), 0o600); err != nil {
		return nil, err
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"VISITORD_ADDR="+addr, "VISITORD_METRICS_ADDR="+metricsAddr, "VISITORD_REDIS_URL="+redisURL, "VISITORD_SITES="+sites,
		"VISITORD_COOKIE_SECRET="+strings.Repeat("c", 32),
		"VISITORD_DATA_KEY=k1:"+"ZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGQ=",
		"VISITORD_INDEX_KEY=aWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWk=",
		"VISITORD_PPROF=true", "VISITORD_TRUSTED_PROXIES=127.0.0.1/32",
	)
	cmd.Env = append(cmd.Env, env...)
	return startProcess(ctx, cmd, addr, filepath.Join(dir, "visitord.log"))
}

// redisServer is the private redis-server of a run.
type redisServer struct {
	*process
	addr string
}

func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	return startRedisWith(ctx, dir, "redis-server")
}

// startRedisWith starts redis-server by the command line command (the
// server's path last: a wrapper such as valgrind first) and the arguments of
// a private server on a free loopback port.
func startRedisWith(ctx context.Context, dir string, command ...string) (*redisServer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	args := append(command[1:len(command):len(command)], "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
	cmd := exec.Command(command[0], args...)
	p, err := startProcess(ctx, cmd, addr, filepath.Join(dir, "redis.log"))
	if err != nil {
		return nil, fmt.Errorf("redis-server: %w", err)
	}
	return &redisServer{process: p, addr: addr}, nil
}

// do sends one command to Redis in RESP and returns the raw reply.
func (r *redisServer) do(args ...string) (string, error) {
	c, err := net.DialTimeout("tcp", r.addr, time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	var b strings.Builder
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	if _, err := io.WriteString(c, b.String()); err != nil {
		return "", err
	}
	_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
	buf := make([]byte, 64<<10)
	var out []byte
	for {
		n, err := c.Read(buf)
		out = append(out, buf[:n]...)
		if err != nil || complete(out) {
			break
		}
	}
	if strings.HasPrefix(string(out), "-") {
		return "", errors.New(strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// complete reports whether a simple or bulk RESP reply is whole.
func complete(b []byte) bool {
	s := string(b)
	if len(s) == 0 {
		return false
	}
	if s[0] != '$' {
		return strings.HasSuffix(s, "\r\n")
	}
	i := strings.Index(s, "\r\n")
	if i < 0 {
		return false
	}
	n, err := strconv.Atoi(s[1:i])
	if err != nil || n < 0 {
		return true
	}
	return len(s) >= i+2+n+2
}

// wipeLua deletes every key but the cfg: configuration keys.
const wipeLua = `local n = 0
for _, k in ipairs(redis.call('KEYS', '*')) do
  if string.sub(k, 1, 4) ~= 'cfg:' then redis.call('UNLINK', k); n = n + 1 end
end
return n`

// flush empties Redis before a run but keeps the configuration keys (cfg:) a
// running visitord keeps across the runs, as in production: FLUSHALL would
// drop the stored layout's version, and the retention job would then take the
// next run's visitors for data of an unknown layout and migrate them all,
// a cost the page views' figures would include.
func (r *redisServer) flush() error {
	_, err := r.do("EVAL", wipeLua, "0")
	return err
}

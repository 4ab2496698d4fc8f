// Command loadbench measures visitord's page-view path against its floor, as
// DESIGN.md's Performance section defines them, on loopback with a private
// redis-server: requests per second at 16 and 64 connections, p50 and p99
// latency, the ratio visitord/floor (median of three runs), and Redis memory
// per visitor and per stored page view. `make bench` runs it.
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
		redisAddr := fs.String("redis", "", "redis host:port")
		if err := fs.Parse(args[1:]); err != nil {
			return err
		}
		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return err
		}
		return serveFloor(ctx, ln, *redisAddr)
	}
	fs := flag.NewFlagSet("loadbench", flag.ContinueOnError)
	bin := fs.String("visitord", "bin/visitord", "visitord binary")
	duration := fs.Duration("duration", 8*time.Second, "measured time of each run")
	warmup := fs.Duration("warmup", 2*time.Second, "unmeasured time before each run")
	conns := fs.String("conns", "16,64", "connection counts")
	runs := fs.Int("runs", 3, "runs per target and connection count (the median is reported)")
	memory := fs.Int("memory", 100000, "page views sent for the Redis memory measurement (0 skips it)")
	profile := fs.String("profile", "", "write a CPU profile of visitord under 64-connection load to this file")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var counts []int
	for _, c := range strings.Split(*conns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(c))
		if err != nil || n < 1 {
			return fmt.Errorf("-conns: %q is not a count", c)
		}
		counts = append(counts, n)
	}
	dir, err := os.MkdirTemp("", "loadbench")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	rs, err := startRedis(ctx, dir)
	if err != nil {
		return err
	}
	defer rs.stop()
	floorAddr, err := freeAddr()
	if err != nil {
		return err
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	floor, err := startProcess(ctx, exec.Command(self, "floor", "-addr", floorAddr, "-redis", rs.addr), floorAddr, filepath.Join(dir, "floor.log"))
	if err != nil {
		return fmt.Errorf("floor: %w", err)
	}
	defer floor.stop()
	vAddr, err := freeAddr()
	if err != nil {
		return err
	}
	// pprof is served on the private metrics listener only.
	mAddr, err := freeAddr()
	if err != nil {
		return err
	}
	vd, err := startVisitord(ctx, *bin, dir, vAddr, mAddr, rs.addr)
	if err != nil {
		return fmt.Errorf("visitord: %w", err)
	}
	defer vd.stop()

	corpus := newCorpus(10000, 2000)
	fmt.Printf("loadbench: load generator = this Go program; %d s per run after %d s warm-up; median of %d runs; GOMAXPROCS of each process as Go sets it\n",
		int(duration.Seconds()), int(warmup.Seconds()), *runs)
	fmt.Printf("corpus: 10k visitors (30%% of page views by returning visitors with their token), URLs 40-120 B, titles 20-80 B, 2k User-Agents (3%% bots), 5%% DNT\n\n")
	type row struct {
		conns         int
		floor, target result
	}
	var rows []row
	for _, c := range counts {
		var fr, vr []result
		for i := 0; i < *runs; i++ {
			if err := rs.flush(); err != nil {
				return err
			}
			fr = append(fr, load(ctx, "http://"+floorAddr, corpus, c, *warmup, *duration))
			if err := rs.flush(); err != nil {
				return err
			}
			vr = append(vr, load(ctx, "http://"+vAddr, corpus, c, *warmup, *duration))
			if ctx.Err() != nil {
				return ctx.Err()
			}
		}
		rows = append(rows, row{conns: c, floor: median(fr), target: median(vr)})
	}
	fmt.Println("| connections | target | requests/s | p50 | p99 | errors | visitord/floor |")
	fmt.Println("|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Printf("| %d | floor | %.0f | %s | %s | %d | |\n", r.conns, r.floor.rps, ms(r.floor.p50), ms(r.floor.p99), r.floor.errors)
		fmt.Printf("| %d | visitord | %.0f | %s | %s | %d | %.0f%% rps, p99 ×%.2f |\n", r.conns, r.target.rps, ms(r.target.p50), ms(r.target.p99), r.target.errors,
			100*r.target.rps/r.floor.rps, float64(r.target.p99)/float64(r.floor.p99))
	}
	if *profile != "" {
		if err := profileUnderLoad(ctx, "http://"+vAddr, "http://"+mAddr, corpus, *profile); err != nil {
			return err
		}
		fmt.Printf("\nCPU profile of visitord under 64-connection load: %s (go tool pprof -top %s %s)\n", *profile, *bin, *profile)
	}
	if *memory > 0 {
		if err := measureMemory(ctx, rs, "http://"+vAddr, *memory); err != nil {
			return err
		}
	}
	return nil
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }

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
	cmd *exec.Cmd
}

func (p *process) stop() {
	if p.cmd.Process == nil {
		return
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = p.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = p.cmd.Process.Kill()
		<-done
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
	p := &process{cmd: cmd}
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond); err == nil {
			c.Close()
			return p, nil
		}
		if ctx.Err() != nil {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	p.stop()
	b, _ := os.ReadFile(logPath)
	return nil, fmt.Errorf("%s did not listen on %s: %s", cmd.Path, addr, tail(b))
}

func tail(b []byte) string {
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return string(b)
}

func startVisitord(ctx context.Context, bin, dir, addr, metricsAddr, redisAddr string) (*process, error) {
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
		"VISITORD_ADDR="+addr, "VISITORD_METRICS_ADDR="+metricsAddr, "VISITORD_REDIS_URL=redis://"+redisAddr+"/0", "VISITORD_SITES="+sites,
		"VISITORD_COOKIE_SECRET="+strings.Repeat("c", 32),
		"VISITORD_DATA_KEY=k1:"+"ZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGRkZGQ=",
		"VISITORD_INDEX_KEY=aWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWk=",
		"VISITORD_PPROF=true", "VISITORD_TRUSTED_PROXIES=127.0.0.1/32",
	)
	return startProcess(ctx, cmd, addr, filepath.Join(dir, "visitord.log"))
}

// redisServer is the private redis-server of a run.
type redisServer struct {
	*process
	addr string
}

func startRedis(ctx context.Context, dir string) (*redisServer, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	_, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command("redis-server", "--port", port, "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir)
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

func (r *redisServer) flush() error {
	_, err := r.do("FLUSHALL")
	return err
}

func (r *redisServer) usedMemory() (int64, error) {
	out, err := r.do("INFO", "memory")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(out, "\r\n") {
		if v, ok := strings.CutPrefix(line, "used_memory:"); ok {
			return strconv.ParseInt(v, 10, 64)
		}
	}
	return 0, errors.New("INFO memory has no used_memory")
}

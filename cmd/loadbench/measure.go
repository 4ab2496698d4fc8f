package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// target is one service under load: the floor or visitord, each a process
// this program started, with the listener its Go runtime's metrics are read on.
type target struct {
	name string
	url  string
	proc *process
	// metrics are the base URLs where the target may serve its Prometheus
	// /metrics, tried in order: visitord serves it on its private metrics
	// listener, older builds on the main listener.
	metrics []string
}

// sample is what is read at each end of a measured window.
type sample struct {
	requests     int64 // responses received so far
	service, gen int64 // CPU ticks of the target and of this program
	nodes        []nodeSample
	mallocs      float64 // heap objects allocated by the target; NaN if unknown
}

// nodeSample is one redis-server's part of a sample: its CPU ticks and INFO.
type nodeSample struct {
	cpu int64
	nodeReading
}

// takeSample reads the target's allocation count, then, close together, the
// number of responses so far, the CPU of the target, of each redis-server and
// of this program, and each redis-server's INFO stats and commandstats.
func takeSample(ctx context.Context, nodes redisNodes, t *target, responses func() int64) (sample, error) {
	s := sample{mallocs: math.NaN()}
	for i, base := range t.metrics {
		if m, err := scrapeMallocs(ctx, base); err == nil {
			s.mallocs = m
			// The next sample reads the same listener first.
			t.metrics[0], t.metrics[i] = t.metrics[i], t.metrics[0]
			break
		}
	}
	s.requests = responses()
	var err error
	if s.service, err = cpuTicks(t.proc.cmd.Process.Pid); err != nil {
		return s, fmt.Errorf("%s cpu: %w", t.name, err)
	}
	for _, n := range nodes {
		ns := nodeSample{}
		if ns.cpu, err = cpuTicks(n.cmd.Process.Pid); err != nil {
			return s, fmt.Errorf("redis-server %s cpu: %w", n.addr, err)
		}
		s.nodes = append(s.nodes, ns)
	}
	if s.gen, err = cpuTicks(os.Getpid()); err != nil {
		return s, fmt.Errorf("load generator cpu: %w", err)
	}
	for i, n := range nodes {
		if s.nodes[i].nodeReading, err = n.reading(); err != nil {
			return s, fmt.Errorf("redis-server %s: %w", n.addr, err)
		}
	}
	return s, nil
}

// scrapeMallocs reads go_memstats_mallocs_total, the heap objects a Go
// process has allocated (runtime/metrics /gc/heap/allocs:objects plus
// /gc/heap/tiny/allocs:objects, as the Prometheus Go collector reports it).
func scrapeMallocs(ctx context.Context, base string) (float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+"/metrics", nil)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("%s/metrics: status %d", base, res.StatusCode)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "go_memstats_mallocs_total "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("%s/metrics has no go_memstats_mallocs_total", base)
}

// costs is a window's cost per request.
type costs struct {
	requests            int64
	service, redis, gen float64 // µs of CPU per request; redis of all nodes
	commands            float64 // Redis commands per request, all nodes
	roundTrips          float64 // reads Redis processed per request, all nodes
	perCommand          map[string]int64
	allocs              float64 // heap objects per request; NaN if unknown
	nodes               []nodeCost
}

// nodeCost is one redis-server's part of a window's cost.
type nodeCost struct {
	scripts    int64   // page-view scripts run: FCALL, EVALSHA and EVAL calls
	commands   float64 // commands per request
	roundTrips float64 // reads processed per request
	cpu        float64 // µs of CPU per request
}

func costsBetween(a, b sample) costs {
	n := b.requests - a.requests
	c := costs{requests: n, allocs: math.NaN()}
	if n <= 0 || len(a.nodes) != len(b.nodes) {
		return c
	}
	perReq := func(ticks int64) float64 { return float64(ticks) * 1e6 / clockTicks / float64(n) }
	c.service, c.gen = perReq(b.service-a.service), perReq(b.gen-a.gen)
	c.perCommand = map[string]int64{}
	for i := range a.nodes {
		total, per := callsBetween(a.nodes[i].calls, b.nodes[i].calls)
		nc := nodeCost{
			scripts:    per["fcall"] + per["evalsha"] + per["eval"],
			commands:   float64(total) / float64(n),
			roundTrips: float64(b.nodes[i].reads-a.nodes[i].reads) / float64(n),
			cpu:        perReq(b.nodes[i].cpu - a.nodes[i].cpu),
		}
		c.nodes = append(c.nodes, nc)
		c.redis += nc.cpu
		c.commands += nc.commands
		c.roundTrips += nc.roundTrips
		for name, k := range per {
			c.perCommand[name] += k
		}
	}
	if !math.IsNaN(a.mallocs) && !math.IsNaN(b.mallocs) {
		c.allocs = (b.mallocs - a.mallocs) / float64(n)
	}
	return c
}

// memory is Redis memory per visitor and per further page view.
type memory struct {
	perVisitor, perView float64
	refused             int // page views answered 503 (or of visitors refused so), left out
	measured            bool
}

// column is one target at one connection count in the table.
type column struct {
	name  string
	conns int
	res   result
	mem   memory
}

// printTable prints the one table of a run: a column per target and
// connection count, each visitord column followed by its ratio to the floor of
// the same connection count, and a row per measure.
func printTable(w io.Writer, cols []column) {
	type measure struct {
		name   string
		format string
		value  func(c column) float64 // NaN when not measured
	}
	memOr := func(c column, v float64) float64 {
		if !c.mem.measured {
			return math.NaN()
		}
		return v
	}
	measures := []measure{
		{"requests/s", "%.0f", func(c column) float64 { return c.res.rps }},
		{"p50 ms", "%.2f", func(c column) float64 { return float64(c.res.p50.Microseconds()) / 1000 }},
		{"p99 ms", "%.2f", func(c column) float64 { return float64(c.res.p99.Microseconds()) / 1000 }},
		{"errors", "%.0f", func(c column) float64 { return float64(c.res.errors) }},
		{"service CPU µs/request", "%.1f", func(c column) float64 { return c.res.cost.service }},
		{"redis-server CPU µs/request", "%.1f", func(c column) float64 { return c.res.cost.redis }},
		{"load generator CPU µs/request", "%.1f", func(c column) float64 { return c.res.cost.gen }},
		{"total CPU µs/request", "%.1f", func(c column) float64 {
			return c.res.cost.service + c.res.cost.redis + c.res.cost.gen
		}},
		{"Redis commands/request", "%.1f", func(c column) float64 { return c.res.cost.commands }},
		{"Redis round trips/request", "%.2f", func(c column) float64 { return c.res.cost.roundTrips }},
		{"allocations/request (runtime)", "%.0f", func(c column) float64 { return c.res.cost.allocs }},
		{"Redis bytes/visitor", "%.0f", func(c column) float64 { return memOr(c, c.mem.perVisitor) }},
		{"Redis bytes/further page view", "%.0f", func(c column) float64 { return memOr(c, c.mem.perView) }},
	}
	// floorOf is the floor column of c's connection count, if any.
	floorOf := func(c column) (column, bool) {
		for _, f := range cols {
			if f.name == "floor" && f.conns == c.conns {
				return f, c.name != "floor"
			}
		}
		return column{}, false
	}
	fmt.Fprint(w, "| measure |")
	n := 0
	for _, c := range cols {
		fmt.Fprintf(w, " %s (%d conns) |", c.name, c.conns)
		n++
		if _, ok := floorOf(c); ok {
			fmt.Fprintf(w, " %s/floor |", c.name)
			n++
		}
	}
	fmt.Fprint(w, "\n|---|"+strings.Repeat("---|", n)+"\n")
	for _, m := range measures {
		fmt.Fprintf(w, "| %s |", m.name)
		for _, c := range cols {
			v := m.value(c)
			if math.IsNaN(v) {
				fmt.Fprint(w, " n/a |")
			} else {
				fmt.Fprintf(w, " "+m.format+" |", v)
			}
			if f, ok := floorOf(c); ok {
				if fv := m.value(f); math.IsNaN(v) || math.IsNaN(fv) || fv == 0 {
					fmt.Fprint(w, " |")
				} else {
					fmt.Fprintf(w, " %.2f× |", v/fv)
				}
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w)
	for _, c := range cols {
		if c.mem.refused > 0 {
			fmt.Fprintf(w, "%s: %d page views of the memory measurement answered 503 or were of a visitor refused so, left out of its counts\n", c.name, c.mem.refused)
		}
	}
	for _, c := range cols {
		fmt.Fprintf(w, "%s (%d conns) Redis commands/request: %s\n", c.name, c.conns, commandMix(c.res.cost))
	}
}

// commandMix lists the commands of a window per request, most frequent first.
func commandMix(c costs) string {
	if c.requests <= 0 {
		return "n/a"
	}
	names := make([]string, 0, len(c.perCommand))
	for n := range c.perCommand {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		if c.perCommand[names[i]] != c.perCommand[names[j]] {
			return c.perCommand[names[i]] > c.perCommand[names[j]]
		}
		return names[i] < names[j]
	})
	parts := make([]string, 0, len(names))
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s %.2f", n, float64(c.perCommand[n])/float64(c.requests)))
	}
	return strings.Join(parts, ", ")
}

// hotNodeMargin is how far, in percentage points, a node's share of the
// page-view scripts may lie from an even share (100/N) before it is hot.
const hotNodeMargin = 10

// printNodeTable prints, for a cluster run's column c, a row per node (addrs
// in the order of c's nodes): its share of the page-view scripts (FCALL, EVALSHA and
// EVAL calls on it of those on all nodes), its commands, round trips and
// redis-server CPU per page view, then the totals and the verdict on a hot
// node.
func printNodeTable(w io.Writer, addrs []string, c column) {
	nodes := c.res.cost.nodes
	if len(nodes) != len(addrs) || len(nodes) == 0 {
		fmt.Fprintf(w, "\n%s (%d conns): no per-node figures\n", c.name, c.conns)
		return
	}
	var scripts int64
	for _, n := range nodes {
		scripts += n.scripts
	}
	even := 100 / float64(len(nodes))
	fmt.Fprintf(w, "\n%s (%d conns) per Cluster node, per page view (request):\n\n", c.name, c.conns)
	fmt.Fprint(w, "| node | share of page-view scripts | Redis commands | Redis round trips | redis-server CPU µs |\n|---|---|---|---|---|\n")
	var hot []string
	for i, n := range nodes {
		share := math.NaN()
		if scripts > 0 {
			share = 100 * float64(n.scripts) / float64(scripts)
		}
		if math.Abs(share-even) > hotNodeMargin {
			hot = append(hot, fmt.Sprintf("%s %.1f%%", addrs[i], share))
		}
		fmt.Fprintf(w, "| %s | %.1f%% | %.2f | %.3f | %.1f |\n", addrs[i], share, n.commands, n.roundTrips, n.cpu)
	}
	fmt.Fprintf(w, "| all %d nodes | 100%% | %.2f | %.3f | %.1f |\n\n", len(nodes), c.res.cost.commands, c.res.cost.roundTrips, c.res.cost.redis)
	switch {
	case scripts == 0:
		fmt.Fprintln(w, "no page-view scripts counted on any node: no verdict on a hot node")
	case len(hot) == 0:
		fmt.Fprintf(w, "no hot node: every node's share of the page-view scripts is within ±%d points of %.1f%%\n", hotNodeMargin, even)
	default:
		fmt.Fprintf(w, "HOT NODE: share of the page-view scripts more than %d points from %.1f%%: %s\n", hotNodeMargin, even, strings.Join(hot, ", "))
	}
}

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
	requests            int64 // responses received so far
	service, redis, gen int64 // CPU ticks of the target, redis-server and this program
	calls               map[string]int64
	mallocs             float64 // heap objects allocated by the target; NaN if unknown
}

// takeSample reads the target's allocation count, then, close together, the
// number of responses so far, the CPU of the target, of redis-server and of
// this program, and INFO commandstats.
func takeSample(ctx context.Context, rs *redisServer, t *target, responses func() int64) (sample, error) {
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
	if s.redis, err = cpuTicks(rs.cmd.Process.Pid); err != nil {
		return s, fmt.Errorf("redis-server cpu: %w", err)
	}
	if s.gen, err = cpuTicks(os.Getpid()); err != nil {
		return s, fmt.Errorf("load generator cpu: %w", err)
	}
	if s.calls, err = rs.commandCalls(); err != nil {
		return s, err
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
	service, redis, gen float64 // µs of CPU per request
	commands            float64 // Redis commands per request
	perCommand          map[string]int64
	allocs              float64 // heap objects per request; NaN if unknown
}

func costsBetween(a, b sample) costs {
	n := b.requests - a.requests
	c := costs{requests: n, allocs: math.NaN()}
	if n <= 0 {
		return c
	}
	perReq := func(ticks int64) float64 { return float64(ticks) * 1e6 / clockTicks / float64(n) }
	c.service, c.redis, c.gen = perReq(b.service-a.service), perReq(b.redis-a.redis), perReq(b.gen-a.gen)
	total, per := callsBetween(a.calls, b.calls)
	c.commands, c.perCommand = float64(total)/float64(n), per
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

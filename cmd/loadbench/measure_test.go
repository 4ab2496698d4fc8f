package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestCostsBetween(t *testing.T) {
	t.Parallel()
	a := sample{requests: 100, service: 50, redis: 20, gen: 7, mallocs: 1000,
		calls: map[string]int64{"hset": 10, "info": 3}}
	b := sample{requests: 1100, service: 60, redis: 25, gen: 9, mallocs: 181000,
		calls: map[string]int64{"hset": 2010, "evalsha": 1000, "info": 5}}
	c := costsBetween(a, b)
	// 10 ticks of 10 ms over 1000 responses is 100 µs each.
	if c.requests != 1000 || c.service != 100 || c.redis != 50 || c.gen != 20 {
		t.Fatalf("costs = %+v, want 1000 responses, 100/50/20 µs", c)
	}
	// INFO is the bench's own command: not counted.
	if c.commands != 3 || c.perCommand["hset"] != 2000 || c.perCommand["evalsha"] != 1000 || len(c.perCommand) != 2 {
		t.Fatalf("commands = %v %v, want 3 per request: hset 2000, evalsha 1000", c.commands, c.perCommand)
	}
	if c.allocs != 180 {
		t.Fatalf("allocs = %v, want 180", c.allocs)
	}
	b.mallocs = math.NaN()
	if got := costsBetween(a, b).allocs; !math.IsNaN(got) {
		t.Fatalf("allocs without a second reading = %v, want NaN (shown n/a)", got)
	}
}

func TestPrintTableRatiosToTheFloor(t *testing.T) {
	t.Parallel()
	floor := column{name: "floor", conns: 64, res: result{rps: 1000, p99: 2 * time.Millisecond,
		cost: costs{requests: 1, service: 40, redis: 10, gen: 30, commands: 5, allocs: 80}},
		mem: memory{perVisitor: 1000, perView: 1000, measured: true}}
	vd := column{name: "visitord", conns: 64, res: result{rps: 500, p99: 3 * time.Millisecond,
		cost: costs{requests: 1, service: 80, redis: 30, gen: 30, commands: 20, allocs: math.NaN()}}}
	var b strings.Builder
	printTable(&b, []column{floor, vd})
	out := b.String()
	for _, want := range []string{
		"| measure | floor (64 conns) | visitord (64 conns) | visitord/floor |\n|---|---|---|---|\n",
		"| requests/s | 1000 | 500 | 0.50× |",
		"| p99 ms | 2.00 | 3.00 | 1.50× |",
		"| service CPU µs/request | 40.0 | 80.0 | 2.00× |",
		"| total CPU µs/request | 80.0 | 140.0 | 1.75× |",
		"| Redis commands/request | 5.0 | 20.0 | 4.00× |",
		"| allocations/request (runtime) | 80 | n/a | |",
		"| Redis bytes/visitor | 1000 | n/a | |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestCostsBetween(t *testing.T) {
	t.Parallel()
	node := func(cpu, reads int64, calls map[string]int64) nodeSample {
		return nodeSample{cpu: cpu, nodeReading: nodeReading{calls: calls, reads: reads}}
	}
	a := sample{requests: 100, service: 50, gen: 7, mallocs: 1000,
		nodes: []nodeSample{node(20, 40, map[string]int64{"hset": 10, "info": 3})}}
	b := sample{requests: 1100, service: 60, gen: 9, mallocs: 181000,
		nodes: []nodeSample{node(25, 540, map[string]int64{"hset": 2010, "evalsha": 1000, "info": 5})}}
	c := costsBetween(a, b)
	// 10 ticks of 10 ms over 1000 responses is 100 µs each.
	if c.requests != 1000 || c.service != 100 || c.redis != 50 || c.gen != 20 {
		t.Fatalf("costs = %+v, want 1000 responses, 100/50/20 µs", c)
	}
	// INFO is the bench's own command: not counted.
	if c.commands != 3 || c.perCommand["hset"] != 2000 || c.perCommand["evalsha"] != 1000 || len(c.perCommand) != 2 {
		t.Fatalf("commands = %v %v, want 3 per request: hset 2000, evalsha 1000", c.commands, c.perCommand)
	}
	if c.roundTrips != 0.5 {
		t.Fatalf("round trips = %v, want 0.5 (500 reads over 1000 responses)", c.roundTrips)
	}
	if c.allocs != 180 {
		t.Fatalf("allocs = %v, want 180", c.allocs)
	}
	b.mallocs = math.NaN()
	if got := costsBetween(a, b).allocs; !math.IsNaN(got) {
		t.Fatalf("allocs without a second reading = %v, want NaN (shown n/a)", got)
	}
}

// The figures of a Cluster are the sums over its nodes; each node keeps its own.
func TestCostsBetweenSumsTheNodes(t *testing.T) {
	t.Parallel()
	a := sample{requests: 0, nodes: []nodeSample{
		{cpu: 0, nodeReading: nodeReading{reads: 10, calls: map[string]int64{}}},
		{cpu: 5, nodeReading: nodeReading{reads: 0, calls: map[string]int64{"evalsha": 1}}},
	}}
	b := sample{requests: 1000, nodes: []nodeSample{
		{cpu: 30, nodeReading: nodeReading{reads: 310, calls: map[string]int64{"evalsha": 600, "eval": 2, "hset": 100}}},
		{cpu: 25, nodeReading: nodeReading{reads: 400, calls: map[string]int64{"evalsha": 301, "fcall": 100, "set": 1}}},
	}}
	c := costsBetween(a, b)
	want := []nodeCost{
		{scripts: 602, commands: 0.702, roundTrips: 0.3, cpu: 300},
		{scripts: 400, commands: 0.401, roundTrips: 0.4, cpu: 200},
	}
	if len(c.nodes) != len(want) {
		t.Fatalf("nodes = %+v, want %+v", c.nodes, want)
	}
	for i, w := range want {
		if got := c.nodes[i]; got.scripts != w.scripts || math.Abs(got.commands-w.commands) > 1e-9 ||
			math.Abs(got.roundTrips-w.roundTrips) > 1e-9 || got.cpu != w.cpu {
			t.Errorf("node %d = %+v, want %+v", i, got, w)
		}
	}
	if c.redis != 500 || math.Abs(c.commands-1.103) > 1e-9 || math.Abs(c.roundTrips-0.7) > 1e-9 || c.perCommand["evalsha"] != 900 {
		t.Fatalf("totals = %v µs, %v commands, %v round trips, %v; want 500, 1.103, 0.7, evalsha 900", c.redis, c.commands, c.roundTrips, c.perCommand)
	}
}

func TestPrintNodeTable(t *testing.T) {
	t.Parallel()
	addrs := []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"}
	col := func(scripts ...int64) column {
		c := column{name: "visitord", conns: 64, res: result{cost: costs{requests: 100, commands: 3, roundTrips: 0.6, redis: 30}}}
		for _, s := range scripts {
			c.res.cost.nodes = append(c.res.cost.nodes, nodeCost{scripts: s, commands: 1, roundTrips: 0.2, cpu: 10})
		}
		return c
	}
	tests := []struct {
		name    string
		col     column
		want    []string
		notWant string
	}{
		{
			name: "even",
			col:  col(340, 330, 330),
			want: []string{
				"| node | share of page-view scripts | Redis commands | Redis round trips | redis-server CPU µs |",
				"| 127.0.0.1:1 | 34.0% | 1.00 | 0.200 | 10.0 |",
				"| all 3 nodes | 100% | 3.00 | 0.600 | 30.0 |",
				"no hot node: every node's share of the page-view scripts is within ±10 points of 33.3%",
			},
			notWant: "HOT NODE",
		},
		{
			name:    "one node takes half",
			col:     col(500, 250, 250),
			want:    []string{"HOT NODE: share of the page-view scripts more than 10 points from 33.3%: 127.0.0.1:1 50.0%"},
			notWant: "no hot node",
		},
		{
			name:    "no scripts",
			col:     col(0, 0, 0),
			want:    []string{"no page-view scripts counted on any node: no verdict"},
			notWant: "hot node:",
		},
		{
			name: "no per-node figures",
			col:  col(),
			want: []string{"visitord (64 conns): no per-node figures"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b strings.Builder
			printNodeTable(&b, addrs, tt.col)
			out := b.String()
			for _, w := range tt.want {
				if !strings.Contains(out, w) {
					t.Errorf("node table lacks %q:\n%s", w, out)
				}
			}
			if tt.notWant != "" && strings.Contains(out, tt.notWant) {
				t.Errorf("node table has %q:\n%s", tt.notWant, out)
			}
		})
	}
}

func TestPrintTableRatiosToTheFloor(t *testing.T) {
	t.Parallel()
	floor := column{name: "floor", conns: 64, res: result{rps: 1000, p99: 2 * time.Millisecond,
		cost: costs{requests: 1, service: 40, redis: 10, gen: 30, commands: 5, roundTrips: 1, allocs: 80}},
		mem: memory{perVisitor: 1000, perView: 1000, measured: true}}
	vd := column{name: "visitord", conns: 64, res: result{rps: 500, p99: 3 * time.Millisecond,
		cost: costs{requests: 1, service: 80, redis: 30, gen: 30, commands: 20, roundTrips: 0.25, allocs: math.NaN()}}}
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
		"| Redis round trips/request | 1.00 | 0.25 | 0.25× |",
		"| allocations/request (runtime) | 80 | n/a | |",
		"| Redis bytes/visitor | 1000 | n/a | |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

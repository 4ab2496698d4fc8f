package main

import (
	"math"
	"testing"
)

func TestCostsBetween(t *testing.T) {
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

package main

import (
	"strings"
	"testing"

	"github.com/visitord/visitord/internal/redistest"
)

func TestParseCommandStats(t *testing.T) {
	t.Parallel()
	info := "# Commandstats\r\ncmdstat_hset:calls=12,usec=40,usec_per_call=3.33,rejected_calls=0,failed_calls=0\r\n" +
		"cmdstat_config|get:calls=2,usec=5,usec_per_call=2.50,rejected_calls=0,failed_calls=0\r\n"
	got, err := parseCommandStats(info)
	if err != nil {
		t.Fatal(err)
	}
	if got["hset"] != 12 || got["config|get"] != 2 || len(got) != 2 {
		t.Fatalf("parseCommandStats = %v, want hset 12, config|get 2", got)
	}
	for _, bad := range []string{"cmdstat_hset", "cmdstat_hset:usec=4", "cmdstat_hset:calls=x,usec=4"} {
		if got, err := parseCommandStats(bad); err == nil {
			t.Errorf("parseCommandStats(%q) = %v, want an error", bad, got)
		}
	}
}

// TestCommandCallsOfRealRedis reads INFO commandstats of a real redis-server
// before and after known commands: the delta counts them, commands run by a
// script included, and leaves out the bench's own INFO.
func TestCommandCallsOfRealRedis(t *testing.T) {
	t.Parallel()
	rs := &redisServer{addr: redistest.Start(t).Addr()}
	before, err := rs.commandCalls()
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range [][]string{
		{"HSET", "h", "a", "1"}, {"HSET", "h", "b", "2"}, {"HSET", "h", "c", "3"},
		{"EXPIRE", "h", "60"},
		{"EVAL", "return redis.call('SET', KEYS[1], ARGV[1])", "1", "k", "v"},
	} {
		if _, err := rs.do(cmd...); err != nil {
			t.Fatalf("%v: %v", cmd, err)
		}
	}
	after, err := rs.commandCalls()
	if err != nil {
		t.Fatal(err)
	}
	total, per := callsBetween(before, after)
	want := map[string]int64{"hset": 3, "expire": 1, "eval": 1, "set": 1}
	if total != 6 || len(per) != len(want) {
		t.Fatalf("calls between = %d %v, want 6 %v", total, per, want)
	}
	for name, n := range want {
		if per[name] != n {
			t.Fatalf("calls of %s = %d, want %d (all: %v)", name, per[name], n, per)
		}
	}
}

func TestUsedMemoryOfRealRedis(t *testing.T) {
	t.Parallel()
	rs := &redisServer{addr: redistest.Start(t).Addr()}
	before, err := rs.usedMemory()
	if err != nil {
		t.Fatal(err)
	}
	if before <= 0 {
		t.Fatalf("used_memory = %d, want > 0", before)
	}
	if _, err := rs.do("SET", "big", strings.Repeat("x", 100000)); err != nil {
		t.Fatal(err)
	}
	after, err := rs.usedMemory()
	if err != nil {
		t.Fatal(err)
	}
	if after-before < 100000 {
		t.Fatalf("used_memory grew by %d for a 100000-byte value", after-before)
	}
	if _, err := parseUsedMemory("# Memory\r\nused_memory_human:1M\r\n"); err == nil {
		t.Fatal("parseUsedMemory without used_memory: want an error")
	}
}

package main

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

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

func TestParseReadsProcessed(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		info    string
		want    int64
		wantErr bool
	}{
		{name: "INFO stats", info: "# Stats\r\ntotal_connections_received:3\r\ntotal_reads_processed:1234\r\ntotal_writes_processed:1200\r\n", want: 1234},
		{name: "with commandstats", info: "# Stats\r\ntotal_reads_processed:7\r\n\r\n# Commandstats\r\ncmdstat_get:calls=1,usec=1\r\n", want: 7},
		{name: "no trailing CRLF", info: "total_reads_processed:0", want: 0},
		{name: "missing", info: "# Stats\r\ntotal_writes_processed:1200\r\n", wantErr: true},
		{name: "a prefix of another field only", info: "total_reads_processed_x:5\r\n", wantErr: true},
		{name: "not a number", info: "total_reads_processed:many\r\n", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseReadsProcessed(tt.info)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseReadsProcessed = %d, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("parseReadsProcessed = %d, want %d", got, tt.want)
			}
		})
	}
}

// TestReadingOfRealRedis reads INFO stats and commandstats of a real
// redis-server before and after known commands: the calls' delta counts them,
// commands run by a script included, and leaves out the bench's own INFO; the
// reads' delta counts a pipeline as one read.
func TestReadingOfRealRedis(t *testing.T) {
	t.Parallel()
	rs := &redisServer{addr: redistest.Start(t).Addr()}
	before, err := rs.reading()
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
	after, err := rs.reading()
	if err != nil {
		t.Fatal(err)
	}
	total, per := callsBetween(before.calls, after.calls)
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

// The reads' delta counts round trips, not commands: 100 commands written
// at once are one read, 5 commands sent one by one are 5. Each connection's
// close and the bench's own INFO add a read or two.
func TestReadsProcessedCountsRoundTrips(t *testing.T) {
	t.Parallel()
	rs := &redisServer{addr: redistest.Start(t).Addr()}
	readsOf := func(send func()) int64 {
		t.Helper()
		before, err := rs.reading()
		if err != nil {
			t.Fatal(err)
		}
		send()
		after, err := rs.reading()
		if err != nil {
			t.Fatal(err)
		}
		return after.reads - before.reads
	}
	pipelined := readsOf(func() {
		c, err := net.Dial("tcp", rs.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		const n = 100
		if _, err := io.WriteString(c, strings.Repeat("*1\r\n$4\r\nPING\r\n", n)); err != nil {
			t.Fatal(err)
		}
		want := strings.Repeat("+PONG\r\n", n)
		_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(c, make([]byte, len(want))); err != nil {
			t.Fatal(err)
		}
	})
	oneByOne := readsOf(func() {
		for range 5 {
			if _, err := rs.do("PING"); err != nil {
				t.Fatal(err)
			}
		}
	})
	if pipelined < 1 || pipelined > 5 || oneByOne < 5 {
		t.Fatalf("reads of 100 pipelined commands = %d, want 1 to 5; of 5 one by one = %d, want at least 5", pipelined, oneByOne)
	}
	t.Logf("reads: pipelined %d, one by one %d", pipelined, oneByOne)
}

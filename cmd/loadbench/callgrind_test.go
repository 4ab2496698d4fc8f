package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/visitord/visitord/internal/redistest"
)

func TestCallgrindSummary(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name, dump string
		want       int64
		err        bool
	}{
		{name: "a dump", dump: "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\nsummary: 2368294872\n\nfn=(1) main\n0 5\ntotals: 2368998035\n", want: 2368294872},
		{name: "a dump still being written", dump: "version: 1\ncreator: callgrind-3.19.0\nevents: Ir\n", err: true},
		{name: "not a number", dump: "summary: many\n", err: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := callgrindSummary(strings.NewReader(tc.dump))
			if (err != nil) != tc.err || got != tc.want {
				t.Fatalf("callgrindSummary = %d, %v; want %d, error %v", got, err, tc.want, tc.err)
			}
		})
	}
}

// A redis-server under callgrind counts what it runs: the instructions of
// twice the commands are about twice the instructions, read as a reading
// that only grows.
func TestCallgrindCountsRedisInstructions(t *testing.T) {
	t.Parallel()
	redistest.ServerPath(t)
	redistest.ToolPath(t, "valgrind", "valgrind")
	rs, cg, err := startRedisCallgrind(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer rs.stop()
	sets := func(n int) int64 {
		t.Helper()
		before, err := cg.read()
		if err != nil {
			t.Fatal(err)
		}
		// One pipeline on one connection: the server's work per command, not
		// a connection's or a second's (its cron runs by time).
		c, err := net.Dial("tcp", rs.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "*3\r\n$3\r\nSET\r\n$%d\r\nk%d\r\n$100\r\n%s\r\n", len(fmt.Sprint("k", i)), i, strings.Repeat("v", 100))
		}
		if _, err := io.WriteString(c, b.String()); err != nil {
			t.Fatal(err)
		}
		r := bufio.NewReader(c)
		for range n {
			if line, err := r.ReadString('\n'); err != nil || line != "+OK\r\n" {
				t.Fatalf("SET answered %q, %v", line, err)
			}
		}
		after, err := cg.read()
		if err != nil {
			t.Fatal(err)
		}
		return after - before
	}
	one, two := sets(5000), sets(10000)
	if one <= 0 || two <= 0 {
		t.Fatalf("instructions of 5,000 and 10,000 SETs: %d, %d; want both counted", one, two)
	}
	if r := float64(two) / float64(one); r < 1.6 || r > 2.4 {
		t.Errorf("10,000 SETs took %.2f× the instructions of 5,000 (%d, %d); want about 2×", r, two, one)
	}
}

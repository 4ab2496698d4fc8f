package main

import (
	"context"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/visitord/visitord/internal/redistest"
)

func TestParseStat(t *testing.T) {
	t.Parallel()
	// Fields 14 and 15 (utime, stime) are 1234 and 56 in each line.
	rest := " S 1 2 3 4 5 6 7 8 9 10 1234 56 0 0 20 0 4 0 100 2000 300\n"
	tests := []struct {
		name    string
		line    string
		want    int64
		wantErr bool
	}{
		{name: "plain name", line: "4242 (visitord)" + rest, want: 1290},
		{name: "name with spaces and parentheses", line: "4242 (a (b) c)" + rest, want: 1290},
		{name: "no command name", line: "4242 visitord S 1 2", wantErr: true},
		{name: "cut short", line: "4242 (visitord) S 1 2 3", wantErr: true},
		{name: "not a number", line: "4242 (visitord) S 1 2 3 4 5 6 7 8 9 10 x 56 0", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseStat(tt.line)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("parseStat = %d, want an error", got)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Fatalf("parseStat = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestCPUTicksOfThisProcess(t *testing.T) {
	t.Parallel()
	b, err := os.ReadFile("/proc/self/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(b)[strings.LastIndexByte(string(b), ')')+1:])
	utime, _ := strconv.ParseInt(f[11], 10, 64)
	stime, _ := strconv.ParseInt(f[12], 10, 64)
	got, err := cpuTicks(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	// CPU time only grows: the later reading is at least the earlier sum.
	if got < utime+stime {
		t.Fatalf("cpuTicks = %d, below the %d read before", got, utime+stime)
	}
}

func TestListeningInodes(t *testing.T) {
	t.Parallel()
	table := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:1F90 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 111 1 0000000000000000 100 0 0 10 0
   1: 0100007F:1F90 0100007F:C350 01 00000000:00000000 00:00000000 00000000     0        0 222 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:1F91 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 333 1 0000000000000000 100 0 0 10 0
`
	got, err := listeningInodes(strings.NewReader(table), 8080)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0] != "111" {
		t.Fatalf("listening inodes of port 8080 = %v, want [111] (the LISTEN socket, not the connection)", got)
	}
}

func TestListensOnTellsWhoseThePortIs(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if mine, err := listensOn(os.Getpid(), port); err != nil || !mine {
		t.Fatalf("listensOn(this process, its own port) = %v, %v; want true", mine, err)
	}
	// A port another process listens on is not this process's.
	srv := redistest.Start(t)
	_, p, _ := net.SplitHostPort(srv.Addr())
	other, _ := strconv.Atoi(p)
	if mine, err := listensOn(os.Getpid(), other); err != nil || mine {
		t.Fatalf("listensOn(this process, redis-server's port) = %v, %v; want false", mine, err)
	}
	ln.Close()
	if mine, err := listensOn(os.Getpid(), port); err != nil || mine {
		t.Fatalf("listensOn(this process, a closed port) = %v, %v; want false", mine, err)
	}
}

// A child that answers on its port only because another process holds it is
// not taken as started: the bench would read the CPU of the wrong process.
func TestStartProcessRefusesAPortItDoesNotHold(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	p, err := startProcess(context.Background(), exec.Command("true"), ln.Addr().String(), filepath.Join(t.TempDir(), "log"))
	if err == nil {
		p.stop()
		t.Fatalf("startProcess of a child that never listens, on a port this test holds, succeeded")
	}
}

func TestStartRedisHoldsItsPort(t *testing.T) {
	t.Parallel()
	redistest.ServerPath(t) // fails, or skips on request, without redis-server
	rs, err := startRedis(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer rs.stop()
	_, p, _ := net.SplitHostPort(rs.addr)
	port, _ := strconv.Atoi(p)
	if mine, err := listensOn(rs.cmd.Process.Pid, port); err != nil || !mine {
		t.Fatalf("listensOn(redis-server's pid, its port) = %v, %v; want true", mine, err)
	}
	if ticks, err := cpuTicks(rs.cmd.Process.Pid); err != nil || ticks < 0 {
		t.Fatalf("cpuTicks(redis-server) = %d, %v", ticks, err)
	}
	rs.stop()
	select {
	case <-rs.exited:
	default:
		t.Fatal("stop returned before redis-server exited")
	}
}

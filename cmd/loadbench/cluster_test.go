package main

import (
	"context"
	"net"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/visitord/visitord/internal/redistest"
)

func TestSlotRanges(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		masters int
		want    [][2]int
	}{
		{name: "one", masters: 1, want: [][2]int{{0, 16383}}},
		{name: "three", masters: 3, want: [][2]int{{0, 5460}, {5461, 10921}, {10922, 16383}}},
		{name: "four", masters: 4, want: [][2]int{{0, 4095}, {4096, 8191}, {8192, 12287}, {12288, 16383}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := slotRanges(tt.masters)
			if len(got) != len(tt.want) {
				t.Fatalf("slotRanges(%d) = %v, want %v", tt.masters, got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("slotRanges(%d) = %v, want %v", tt.masters, got, tt.want)
				}
			}
		})
	}
	// Any count covers every slot once, in contiguous ranges of sizes that
	// differ by one at most.
	for masters := 1; masters <= 64; masters++ {
		next, lo, hi := 0, clusterSlots, 0
		for _, r := range slotRanges(masters) {
			if r[0] != next || r[1] < r[0] {
				t.Fatalf("slotRanges(%d): range %v after slot %d", masters, r, next-1)
			}
			lo, hi = min(lo, r[1]-r[0]+1), max(hi, r[1]-r[0]+1)
			next = r[1] + 1
		}
		if next != clusterSlots || hi-lo > 1 {
			t.Fatalf("slotRanges(%d) ends at %d, sizes %d to %d", masters, next, lo, hi)
		}
	}
}

func TestClusterReady(t *testing.T) {
	t.Parallel()
	ok := "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_slots_pfail:0\r\n" +
		"cluster_known_nodes:3\r\ncluster_size:3\r\ncluster_current_epoch:3\r\n"
	tests := []struct {
		name    string
		info    string
		masters int
		wantErr bool
	}{
		{name: "ok", info: ok, masters: 3},
		{name: "state fail", info: "cluster_state:fail\r\n" + ok[len("cluster_state:ok\r\n"):], masters: 3, wantErr: true},
		{name: "a node not yet met", info: ok, masters: 4, wantErr: true},
		{name: "slots missing", info: "cluster_state:ok\r\ncluster_slots_assigned:10923\r\ncluster_slots_ok:10923\r\ncluster_known_nodes:3\r\ncluster_size:3\r\n", masters: 3, wantErr: true},
		{name: "empty", info: "", masters: 3, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := clusterReady(tt.info, tt.masters); (err != nil) != tt.wantErr {
				t.Fatalf("clusterReady = %v, want an error: %v", err, tt.wantErr)
			}
		})
	}
}

// TestStartCluster starts a 3-master cluster as -cluster 3 does: every node
// is ok, the nodes serve the slots of slotRanges between them, a cluster
// client of VISITORD_REDIS_URL's node list reaches keys on every node, and
// stop ends every node.
func TestStartCluster(t *testing.T) {
	t.Parallel()
	redistest.ServerPath(t) // fails, or skips on request, without redis-server
	ctx := context.Background()
	nodes, err := startCluster(ctx, t.TempDir(), 3)
	if err != nil {
		t.Fatal(err)
	}
	defer nodes.stop()
	if len(nodes) != 3 {
		t.Fatalf("%d nodes, want 3", len(nodes))
	}
	owner := map[[2]int]string{}
	for i, r := range slotRanges(3) {
		owner[r] = nodes[i].addr
	}
	for _, n := range nodes {
		out, err := n.do("CLUSTER", "INFO")
		if err != nil {
			t.Fatal(err)
		}
		if err := clusterReady(bulkBody(out), 3); err != nil {
			t.Fatalf("%s: %v", n.addr, err)
		}
		_, p, _ := net.SplitHostPort(n.addr)
		port, _ := strconv.Atoi(p)
		if mine, err := listensOn(n.cmd.Process.Pid, port); err != nil || !mine {
			t.Fatalf("listensOn(node %s's pid, its port) = %v, %v; want true", n.addr, mine, err)
		}
		// Every node sees the same assignment: each range at its own node.
		c := redis.NewClient(&redis.Options{Addr: n.addr})
		slots, err := c.ClusterSlots(ctx).Result()
		c.Close()
		if err != nil {
			t.Fatal(err)
		}
		if len(slots) != 3 {
			t.Fatalf("%s: CLUSTER SLOTS = %+v, want 3 ranges", n.addr, slots)
		}
		for _, s := range slots {
			if want := owner[[2]int{int(s.Start), int(s.End)}]; len(s.Nodes) != 1 || s.Nodes[0].Addr != want {
				t.Fatalf("%s: slots %d-%d at %+v, want at %s alone", n.addr, s.Start, s.End, s.Nodes, want)
			}
		}
	}
	// A cluster client of the nodes reaches every node; the bench's flush
	// between runs wipes all but the cfg: keys on each.
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: nodes.addrs()})
	defer cc.Close()
	for i := range 100 {
		if err := cc.Set(ctx, "k"+strconv.Itoa(i), "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := cc.Set(ctx, "cfg:layout", "3", 0).Err(); err != nil {
		t.Fatal(err)
	}
	keysOn := func(n *redisServer) int64 {
		t.Helper()
		out, err := n.do("DBSIZE")
		if err != nil {
			t.Fatal(err)
		}
		k, err := strconv.ParseInt(strings.TrimSpace(strings.TrimPrefix(out, ":")), 10, 64)
		if err != nil {
			t.Fatalf("DBSIZE of %s: %q", n.addr, out)
		}
		return k
	}
	var total int64
	for _, n := range nodes {
		k := keysOn(n)
		if k == 0 {
			t.Fatalf("node %s holds none of 100 keys", n.addr)
		}
		total += k
	}
	if total != 101 {
		t.Fatalf("%d keys on the nodes, want 101", total)
	}
	if err := nodes.flush(); err != nil {
		t.Fatal(err)
	}
	total = 0
	for _, n := range nodes {
		total += keysOn(n)
	}
	if v, err := cc.Get(ctx, "cfg:layout").Result(); total != 1 || err != nil || v != "3" {
		t.Fatalf("after flush: %d keys, cfg:layout %q %v; want the cfg: key alone", total, v, err)
	}
	nodes.stop()
	for _, n := range nodes {
		select {
		case <-n.exited:
		default:
			t.Fatalf("stop returned before node %s exited", n.addr)
		}
	}
}

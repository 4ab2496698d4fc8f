package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const (
	// clusterSlots is the number of hash slots of a Redis Cluster.
	clusterSlots = 16384
	// clusterBusOffset is how far above its client port a node listens for
	// its peers (the default cluster bus port).
	clusterBusOffset = 10000
	// clusterReadyTimeout bounds the wait for cluster_state:ok on every node.
	clusterReadyTimeout = 30 * time.Second
)

// redisNodes are the redis-servers of a run: one, or the masters of a Cluster.
type redisNodes []*redisServer

// addrs returns the address of every node, in start order.
func (ns redisNodes) addrs() []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = n.addr
	}
	return out
}

// url returns the nodes as VISITORD_REDIS_URL names them: redis://host:port/0
// for one server, a comma list of host:port for a Cluster.
func (ns redisNodes) url() string {
	if len(ns) == 1 {
		return "redis://" + ns[0].addr + "/0"
	}
	return strings.Join(ns.addrs(), ",")
}

// flush empties every node but keeps the configuration keys (see flush).
func (ns redisNodes) flush() error {
	for _, n := range ns {
		if err := n.flush(); err != nil {
			return fmt.Errorf("flush %s: %w", n.addr, err)
		}
	}
	return nil
}

// usedMemory is the sum of used_memory over the nodes.
func (ns redisNodes) usedMemory() (int64, error) {
	var sum int64
	for _, n := range ns {
		m, err := n.usedMemory()
		if err != nil {
			return 0, fmt.Errorf("%s: %w", n.addr, err)
		}
		sum += m
	}
	return sum, nil
}

// stop ends every node this program started.
func (ns redisNodes) stop() {
	for _, n := range ns {
		n.stop()
	}
}

// startCluster starts masters redis-server processes in cluster mode on free
// loopback ports (persistence off, each node's cluster config file in dir),
// gives each an even range of the slots (CLUSTER ADDSLOTSRANGE), joins them
// (CLUSTER MEET) and returns once every node reports cluster_state:ok with
// every slot served and every master known. On an error it stops the nodes
// it started.
func startCluster(ctx context.Context, dir string, masters int) (redisNodes, error) {
	if masters < 1 {
		return nil, fmt.Errorf("a cluster of %d masters", masters)
	}
	var ns redisNodes
	fail := func(err error) (redisNodes, error) { ns.stop(); return nil, err }
	for range masters {
		n, err := startClusterNode(ctx, dir)
		if err != nil {
			return fail(err)
		}
		ns = append(ns, n)
	}
	for i, r := range slotRanges(masters) {
		// A distinct config epoch per node spares the cluster resolving the
		// collision of all-zero epochs after the MEET, as redis-cli does.
		for _, cmd := range [][]string{
			{"CLUSTER", "ADDSLOTSRANGE", strconv.Itoa(r[0]), strconv.Itoa(r[1])},
			{"CLUSTER", "SET-CONFIG-EPOCH", strconv.Itoa(i + 1)},
		} {
			if _, err := ns[i].do(cmd...); err != nil {
				return fail(fmt.Errorf("%s %s: %w", ns[i].addr, strings.Join(cmd, " "), err))
			}
		}
	}
	for _, n := range ns[1:] {
		host, port, _ := net.SplitHostPort(n.addr)
		if _, err := ns[0].do("CLUSTER", "MEET", host, port); err != nil {
			return fail(fmt.Errorf("%s CLUSTER MEET %s: %w", ns[0].addr, n.addr, err))
		}
	}
	deadline := time.Now().Add(clusterReadyTimeout)
	for _, n := range ns {
		for {
			out, err := n.do("CLUSTER", "INFO")
			if err == nil {
				err = clusterReady(bulkBody(out), masters)
			}
			if err == nil {
				break
			}
			if time.Now().After(deadline) || ctx.Err() != nil {
				return fail(fmt.Errorf("cluster node %s not ready within %v: %w", n.addr, clusterReadyTimeout, err))
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return ns, nil
}

// startClusterNode starts one cluster node on a loopback port whose bus port
// (port + 10000) is free too; a port taken in between is tried again.
func startClusterNode(ctx context.Context, dir string) (*redisServer, error) {
	last := errors.New("no port below 55536 free")
	for range 20 {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		host, port, _ := net.SplitHostPort(addr)
		p, _ := strconv.Atoi(port)
		if p+clusterBusOffset > 65535 {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p+clusterBusOffset)))
		if err != nil {
			last = err
			continue
		}
		ln.Close()
		cmd := exec.Command("redis-server", "--port", port, "--bind", host, "--save", "", "--appendonly", "no", "--dir", dir,
			"--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, "nodes-"+port+".conf"))
		proc, err := startProcess(ctx, cmd, addr, filepath.Join(dir, "redis-"+port+".log"))
		if err == nil {
			return &redisServer{process: proc, addr: addr}, nil
		}
		last = err
		if ctx.Err() != nil {
			break
		}
	}
	return nil, fmt.Errorf("cluster node: %w", last)
}

// slotRanges divides the hash slots into masters even, contiguous, inclusive
// ranges [first, last].
func slotRanges(masters int) [][2]int {
	out := make([][2]int, masters)
	for i := range out {
		out[i] = [2]int{i * clusterSlots / masters, (i+1)*clusterSlots/masters - 1}
	}
	return out
}

// clusterReady reports, from a CLUSTER INFO reply, whether the node sees the
// cluster ok: every slot assigned and served, and masters masters known.
func clusterReady(info string, masters int) error {
	have := infoFields(info)
	want := [][2]string{
		{"cluster_state", "ok"},
		{"cluster_slots_assigned", strconv.Itoa(clusterSlots)},
		{"cluster_slots_ok", strconv.Itoa(clusterSlots)},
		{"cluster_known_nodes", strconv.Itoa(masters)},
		{"cluster_size", strconv.Itoa(masters)},
	}
	var missing []string
	for _, kv := range want {
		if have[kv[0]] != kv[1] {
			missing = append(missing, fmt.Sprintf("%s:%s (have %q)", kv[0], kv[1], have[kv[0]]))
		}
	}
	if len(missing) > 0 {
		return errors.New("CLUSTER INFO lacks " + strings.Join(missing, ", "))
	}
	return nil
}

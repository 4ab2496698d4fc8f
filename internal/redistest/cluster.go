package redistest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// clusterBusOffset is how far above its client port a cluster node listens
	// for its peers (the default cluster bus port).
	clusterBusOffset = 10000
	// clusterNodeTimeout is --cluster-node-timeout in ms: short, so a test that
	// kills a node sees the cluster react within seconds.
	clusterNodeTimeout = 2000
	// clusterCreateTimeout bounds redis-cli --cluster create.
	clusterCreateTimeout = 30 * time.Second
	// clusterReadyTimeout bounds the wait for cluster_state:ok on every node.
	clusterReadyTimeout = 15 * time.Second
	// pollInterval is how often the cluster and sentinel helpers poll.
	pollInterval = 50 * time.Millisecond

	// SentinelMaster is the master name the sentinel of StartSentinel monitors.
	SentinelMaster = "mymaster"
	// sentinelReadyTimeout bounds the wait for the replica's initial sync and
	// for the sentinel to see master and replica.
	sentinelReadyTimeout = 20 * time.Second
	sentinelLogName      = "sentinel.log"
	sentinelOutName      = "sentinel.stdout"
	sentinelConfName     = "sentinel.conf"
)

// Cluster is a Redis Cluster of masters without replicas, started by
// StartCluster for one test.
type Cluster struct {
	nodes []*Server
}

// StartCluster starts masters redis-server processes in cluster mode on free
// loopback ports (persistence off, --cluster-node-timeout 2000, each node's
// cluster config file in its own tb.TempDir()), joins them with redis-cli
// --cluster create (no replicas, 16384 slots spread evenly) and returns once
// every node reports cluster_state:ok. Each node is stopped in tb.Cleanup.
// masters must be at least 3, redis-cli's minimum. Without redis-server or
// redis-cli on PATH it skips the test, or fails it when CI=true.
func StartCluster(tb testing.TB, masters int) *Cluster {
	tb.Helper()
	if masters < 3 {
		tb.Fatalf("redistest: StartCluster(%d): a cluster needs at least 3 masters", masters)
	}
	bin := lookupServer(tb, exec.LookPath, os.Getenv)
	cli := lookupCLI(tb, exec.LookPath, os.Getenv)
	c := &Cluster{}
	for range masters {
		c.nodes = append(c.nodes, startClusterNode(tb, bin))
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateTimeout)
	defer cancel()
	args := append([]string{"--cluster", "create"}, c.Addrs()...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("redistest: redis-cli %s: %v\n%s\n%s", strings.Join(args, " "), err, out, c.logTails())
	}
	if err := c.waitReady(masters); err != nil {
		tb.Fatalf("redistest: cluster %s: %v\n%s", c.URL(), err, c.logTails())
	}
	return c
}

// startClusterNode starts one cluster node, as Start does a server, with its
// cluster config file named after its port, nodes-PORT.conf. The port is one
// whose bus port (port + 10000) is a valid, free port too.
func startClusterNode(tb testing.TB, bin string) *Server {
	tb.Helper()
	s := &Server{bin: bin, dir: tb.TempDir()}
	// Registered after TempDir so that it runs before the directory is removed.
	tb.Cleanup(s.shutdown)
	return s.startOn(tb, "cluster node", freeClusterPort, func(port int) []string {
		return []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(s.dir, "nodes-"+strconv.Itoa(port)+".conf"),
			"--cluster-node-timeout", strconv.Itoa(clusterNodeTimeout),
		}
	})
}

// freeClusterPort returns a loopback port that, like its bus port (port +
// 10000), was free a moment ago. Ports whose bus port would pass 65535 are
// skipped, so no Redis version needs --cluster-port.
func freeClusterPort() (int, error) {
	var last error
	for range 50 {
		port, err := freePort()
		if err != nil {
			return 0, err
		}
		if port+clusterBusOffset > 65535 {
			continue
		}
		l, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port+clusterBusOffset)))
		if err != nil {
			last = err
			continue
		}
		l.Close()
		return port, nil
	}
	return 0, fmt.Errorf("no port with a free bus port found (last: %v)", last)
}

// lookupCLI returns the path of redis-cli, or ends the test as lookupServer
// does.
func lookupCLI(tb testing.TB, lookPath func(string) (string, error), getenv func(string) string) string {
	tb.Helper()
	return lookupTool(tb, lookPath, getenv, "redis-cli", "redis-tools")
}

// waitReady polls CLUSTER INFO on every node until each reports
// cluster_state:ok, all slots served and every master known.
func (c *Cluster) waitReady(masters int) error {
	want := map[string]string{
		"cluster_state":          "ok",
		"cluster_slots_ok":       "16384",
		"cluster_known_nodes":    strconv.Itoa(masters),
		"cluster_size":           strconv.Itoa(masters),
		"cluster_slots_assigned": "16384",
	}
	deadline := time.Now().Add(clusterReadyTimeout)
	for _, n := range c.nodes {
		client := redis.NewClient(&redis.Options{Addr: n.Addr(), MaxRetries: -1})
		err := func() error {
			defer client.Close()
			for {
				ctx, cancel := context.WithTimeout(context.Background(), time.Second)
				text, err := client.ClusterInfo(ctx).Result()
				cancel()
				var missing []string
				if err == nil {
					info := parseInfo(text)
					for k, v := range want {
						if info[k] != v {
							missing = append(missing, fmt.Sprintf("%s:%s (have %q)", k, v, info[k]))
						}
					}
					if len(missing) == 0 {
						return nil
					}
					slices.Sort(missing)
					err = fmt.Errorf("CLUSTER INFO lacks %s", strings.Join(missing, ", "))
				}
				if time.Now().After(deadline) {
					return fmt.Errorf("node %s not ready within %v: %w", n.Addr(), clusterReadyTimeout, err)
				}
				time.Sleep(pollInterval)
			}
		}()
		if err != nil {
			return err
		}
	}
	return nil
}

// parseInfo reads the "key:value" lines of an INFO or CLUSTER INFO reply.
func parseInfo(text string) map[string]string {
	m := make(map[string]string)
	for line := range strings.SplitSeq(text, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			m[k] = v
		}
	}
	return m
}

// Addrs returns the address of every node, "127.0.0.1:PORT", in start order.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.Addr()
	}
	return out
}

// URL returns the nodes as VISITORD_REDIS_URL names a cluster: a comma list,
// "127.0.0.1:P1,127.0.0.1:P2,...".
func (c *Cluster) URL() string {
	return strings.Join(c.Addrs(), ",")
}

// Client returns a new cluster client of every node, closed in tb.Cleanup.
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	tb.Cleanup(func() { _ = cc.Close() })
	return cc
}

// logTails returns the tail of every node's logs.
func (c *Cluster) logTails() string {
	var b strings.Builder
	for _, n := range c.nodes {
		if tail := n.logTail(); tail != "" {
			fmt.Fprintf(&b, "=== node %s ===\n%s", n.Addr(), tail)
		}
	}
	return b.String()
}

// Sentinel is a master, its replica and one Redis Sentinel monitoring them
// under the name SentinelMaster, started by StartSentinel for one test. Its
// methods are safe for concurrent use.
type Sentinel struct {
	master, replica *Server
	bin, dir        string
	port            int

	mu   sync.Mutex
	proc *process // the sentinel; nil once stopped
}

// StartSentinel starts a master, a replica of it (--replicaof) and a sentinel
// (redis-server --sentinel with a config file in a tb.TempDir(): quorum 1,
// down-after-milliseconds 1000, failover-timeout 5000), all on free loopback
// ports with persistence off. It returns once the replica has synced and the
// sentinel sees the master up and the replica linked to it, so a failover
// can promote the replica. Everything is stopped in tb.Cleanup. Without
// redis-server on PATH it skips the test, or fails it when CI=true.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	// Without a delay the master serves the replica's first sync at once
	// (Redis 7 waits 5 s for more replicas to share a diskless transfer).
	master := Start(tb, "--repl-diskless-sync-delay", "0")
	replica := Start(tb, "--replicaof", "127.0.0.1", strconv.Itoa(master.port))
	s := &Sentinel{master: master, replica: replica, bin: master.bin, dir: tb.TempDir()}
	tb.Cleanup(s.stop)
	// The sentinel learns of the replica from the master's INFO, which it asks
	// for at once and then every 10 s: it must list the replica the first time.
	if err := waitSynced(replica.Addr()); err != nil {
		tb.Fatalf("redistest: replica %s of %s: %v\n%s", replica.Addr(), master.Addr(), err, replica.logTail())
	}
	var err error
	for range startAttempts {
		var port int
		if port, err = freePort(); err != nil {
			tb.Fatalf("redistest: pick a port: %v", err)
		}
		var p *process
		if p, err = s.launch(port); err == nil {
			s.port = port
			s.mu.Lock()
			s.proc = p
			s.mu.Unlock()
			break
		}
		if !errors.Is(err, errPortInUse) {
			break
		}
	}
	if err != nil {
		tb.Fatalf("redistest: start sentinel: %v\n%s", err, s.logTail())
	}
	if err := s.waitMonitoring(); err != nil {
		tb.Fatalf("redistest: sentinel %s: %v\n%s", s.Addr(), err, s.logTail())
	}
	return s
}

// waitSynced polls a replica until its link to the master is up.
func waitSynced(addr string) error {
	client := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1})
	defer client.Close()
	deadline := time.Now().Add(sentinelReadyTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		text, err := client.Info(ctx, "replication").Result()
		cancel()
		if err == nil {
			status := parseInfo(text)["master_link_status"]
			if status == "up" {
				return nil
			}
			err = fmt.Errorf("master_link_status %q", status)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not synced within %v: %w", sentinelReadyTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// launch writes the sentinel's config file for port and runs the sentinel,
// waiting until it answers PING. Sentinel mode wants its config file (which
// it rewrites) as the first argument, so Server.launch cannot run it.
func (s *Sentinel) launch(port int) (*process, error) {
	logPath := filepath.Join(s.dir, sentinelLogName)
	outPath := filepath.Join(s.dir, sentinelOutName)
	conf := strings.Join([]string{
		"port " + strconv.Itoa(port),
		"bind 127.0.0.1",
		"daemonize no",
		"dir " + strconv.Quote(s.dir),
		"logfile " + strconv.Quote(logPath),
		fmt.Sprintf("sentinel monitor %s 127.0.0.1 %d 1", SentinelMaster, s.master.port),
		"sentinel down-after-milliseconds " + SentinelMaster + " 1000",
		"sentinel failover-timeout " + SentinelMaster + " 5000",
	}, "\n") + "\n"
	confPath := filepath.Join(s.dir, sentinelConfName)
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	out, err := os.OpenFile(outPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer out.Close() // the child holds its own descriptor

	return startCmd(exec.Command(s.bin, confPath, "--sentinel"), s.dir, out, port, logPath, outPath)
}

// waitMonitoring polls the sentinel until it reports the master up (flags
// exactly "master") with one replica whose link to the master is ok.
func (s *Sentinel) waitMonitoring() error {
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer sc.Close()
	deadline := time.Now().Add(sentinelReadyTimeout)
	for {
		err := func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			m, err := sc.Master(ctx, SentinelMaster).Result()
			if err != nil {
				return err
			}
			if m["flags"] != "master" || m["num-slaves"] != "1" {
				return fmt.Errorf("master flags %q, %s replica(s)", m["flags"], m["num-slaves"])
			}
			replicas, err := sc.Replicas(ctx, SentinelMaster).Result()
			if err != nil {
				return err
			}
			for _, r := range replicas {
				if r["flags"] == "slave" && r["master-link-status"] == "ok" && r["port"] == strconv.Itoa(s.replica.port) {
					return nil
				}
			}
			return fmt.Errorf("no linked replica among %v", replicas)
		}()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("does not see master %s and replica %s within %v: %w", s.master.Addr(), s.replica.Addr(), sentinelReadyTimeout, err)
		}
		time.Sleep(pollInterval)
	}
}

// Addr returns the sentinel's address, "127.0.0.1:PORT".
func (s *Sentinel) Addr() string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port))
}

// URL returns the sentinel as VISITORD_REDIS_URL names it,
// "redis-sentinel://127.0.0.1:PORT/mymaster".
func (s *Sentinel) URL() string {
	return "redis-sentinel://" + s.Addr() + "/" + SentinelMaster
}

// MasterAddr returns the address of the master that StartSentinel started.
func (s *Sentinel) MasterAddr() string { return s.master.Addr() }

// ReplicaAddr returns the address of the replica that StartSentinel started,
// the master once a failover promoted it.
func (s *Sentinel) ReplicaAddr() string { return s.replica.Addr() }

// KillMaster ends the master that StartSentinel started with SIGKILL, as a
// crash would, and waits for it to exit; the sentinel then fails over to the
// replica. It does nothing if the master is not running.
func (s *Sentinel) KillMaster() {
	s.master.Kill()
}

// Client returns a new failover client that finds the master through the
// sentinel, closed in tb.Cleanup.
func (s *Sentinel) Client(tb testing.TB) *redis.Client {
	tb.Helper()
	c := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: SentinelMaster, SentinelAddrs: []string{s.Addr()}})
	tb.Cleanup(func() { _ = c.Close() })
	return c
}

// stop ends the sentinel gracefully; master and replica stop in their own
// cleanups, which run after this one.
func (s *Sentinel) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	s.proc.terminate()
	s.proc = nil
}

// logTail returns the last lines of the sentinel's log and of its output
// (where it reports configuration errors, before it opens its log).
func (s *Sentinel) logTail() string {
	var b strings.Builder
	for _, name := range []string{sentinelLogName, sentinelOutName} {
		data, err := os.ReadFile(filepath.Join(s.dir, name))
		text := strings.TrimSpace(string(data))
		if err != nil || text == "" {
			continue
		}
		lines := strings.Split(text, "\n")
		if len(lines) > tailLines {
			lines = lines[len(lines)-tailLines:]
		}
		fmt.Fprintf(&b, "--- tail of %s ---\n%s\n", name, strings.Join(lines, "\n"))
	}
	return b.String()
}

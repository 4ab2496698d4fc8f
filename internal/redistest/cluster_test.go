package redistest

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"
)

func TestStartCluster(t *testing.T) {
	t.Parallel()
	// A server of another test, which the cluster's cleanup must leave alone.
	bystander := Start(t)

	var addrs []string
	var nodes []*Server
	t.Run("cluster", func(t *testing.T) {
		c := StartCluster(t, 3)
		addrs, nodes = c.Addrs(), c.nodes
		if len(addrs) != 3 {
			t.Fatalf("Addrs() = %q, want 3 nodes", addrs)
		}
		for _, a := range addrs {
			if !strings.HasPrefix(a, "127.0.0.1:") {
				t.Errorf("node address %q, want 127.0.0.1:PORT", a)
			}
		}
		if got := slices.Compact(slices.Sorted(slices.Values(addrs))); len(got) != 3 {
			t.Fatalf("nodes share addresses: %q", addrs)
		}
		if got, want := c.URL(), strings.Join(addrs, ","); got != want {
			t.Fatalf("URL() = %q, want %q", got, want)
		}
		for _, n := range c.nodes {
			conf := filepath.Join(n.dir, "nodes-"+strconv.Itoa(n.port)+".conf")
			if _, err := os.Stat(conf); err != nil {
				t.Errorf("node %s: cluster config file: %v", n.Addr(), err)
			}
		}

		cc := c.Client(t)
		ctx := t.Context()
		// One key per master: the slots redis-cli gives 3 masters are
		// 0-5460, 5461-10922 and 10923-16383.
		keys := keysInThirds(t, cc)
		for i, k := range keys {
			if err := cc.Set(ctx, k, i, time.Hour).Err(); err != nil {
				t.Fatalf("SET %s: %v", k, err)
			}
		}
		var mu sync.Mutex
		var sizes []int64
		err := cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error {
			size, err := n.DBSize(ctx).Result()
			if err != nil {
				return err
			}
			for _, opt := range []string{"cluster-node-timeout", "appendonly", "save"} {
				got, err := n.ConfigGet(ctx, opt).Result()
				if err != nil {
					return err
				}
				if want := map[string]string{"cluster-node-timeout": "2000", "appendonly": "no", "save": ""}[opt]; got[opt] != want {
					return errors.New(n.Options().Addr + ": " + opt + " = " + got[opt] + ", want " + want)
				}
			}
			mu.Lock()
			sizes = append(sizes, size)
			mu.Unlock()
			return nil
		})
		if err != nil {
			t.Fatalf("ForEachMaster: %v", err)
		}
		if diff := cmp.Diff([]int64{1, 1, 1}, sizes); diff != "" {
			t.Errorf("keys per master (-want +got):\n%s", diff)
		}

		// A real cluster: multi-key commands across slots fail; a script may
		// reach undeclared keys of its declared key's slot, and only those.
		if err := cc.Do(ctx, "MSET", keys[0], "x", keys[1], "y").Err(); err == nil || !strings.Contains(err.Error(), "CROSSSLOT") {
			t.Errorf("MSET across slots: %v, want CROSSSLOT", err)
		}
		same := redis.NewScript(`redis.call('SET', KEYS[1] .. ':more', 'x', 'EX', 60) return redis.call('GET', KEYS[1] .. ':more')`)
		if got, err := same.Run(ctx, cc, []string{"{tag}key"}).Text(); err != nil || got != "x" {
			t.Errorf("script on an undeclared key of the same slot = %q, %v; want x", got, err)
		}
		other := redis.NewScript(`return redis.call('GET', ARGV[1])`)
		if err := other.Run(ctx, cc, []string{keys[0]}, keys[1]).Err(); err == nil {
			t.Error("script on an undeclared key of another master's slot succeeded")
		}

		// The inspection helpers see every master.
		want := append(slices.Clone(keys), "{tag}key:more")
		slices.Sort(want)
		if diff := cmp.Diff(want, Keys(t, cc)); diff != "" {
			t.Errorf("Keys() over the cluster (-want +got):\n%s", diff)
		}
		values := DumpValues(t, cc)
		for i, k := range keys {
			if got := values[k]; got != strconv.Itoa(i) {
				t.Errorf("DumpValues()[%s] = %q, want %d", k, got, i)
			}
		}
		if err := cc.Set(ctx, keys[2], "forever", 0).Err(); err != nil {
			t.Fatal(err)
		}
		fake := &recordingTB{TB: t}
		run(func() { AssertAllKeysHaveTTL(fake, cc, nil) })
		if msg := strings.Join(fake.messages, "\n"); !strings.Contains(msg, keys[2]) || strings.Contains(msg, keys[0]) {
			t.Errorf("AssertAllKeysHaveTTL over the cluster reported %q, want only %s", msg, keys[2])
		}
	})

	// Cleanup stopped the nodes, and only them.
	for i, a := range addrs {
		if _, err := probe(a); err == nil {
			t.Errorf("node %s still answers after cleanup", a)
		}
		if nodes[i].proc != nil {
			t.Errorf("node %s: process still recorded after cleanup", a)
		}
	}
	if len(addrs) == 0 {
		return // the subtest was skipped or failed early
	}
	if _, err := probe(bystander.Addr()); err != nil {
		t.Errorf("another test's server %s stopped with the cluster: %v", bystander.Addr(), err)
	}
}

// keysInThirds returns one key in each third of the slot space.
func keysInThirds(t *testing.T, cc *redis.ClusterClient) []string {
	t.Helper()
	keys := make([]string, 3)
	for i := 0; slices.Contains(keys, ""); i++ {
		k := "key-" + strconv.Itoa(i)
		slot, err := cc.ClusterKeySlot(t.Context(), k).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %s: %v", k, err)
		}
		if third := slot * 3 / 16384; keys[third] == "" {
			keys[third] = k
		}
	}
	return keys
}

func TestStartClusterTooSmall(t *testing.T) {
	t.Parallel()
	fake := &recordingTB{TB: t}
	run(func() { StartCluster(fake, 2) })
	if !fake.fatal {
		t.Fatalf("StartCluster(2) did not fail; messages %q", fake.messages)
	}
}

func TestClusterLookupCLIMissing(t *testing.T) {
	t.Parallel()
	checkLookupMissing(t, "redis-cli", "apt-get install -y redis-tools", lookupCLI)
}

func TestStartSentinelFailover(t *testing.T) {
	t.Parallel()
	s := StartSentinel(t)
	if got, want := s.URL(), "redis-sentinel://"+s.Addr()+"/mymaster"; got != want {
		t.Fatalf("URL() = %q, want %q", got, want)
	}
	if !strings.HasPrefix(s.Addr(), "127.0.0.1:") || s.MasterAddr() == s.ReplicaAddr() {
		t.Fatalf("sentinel %s, master %s, replica %s", s.Addr(), s.MasterAddr(), s.ReplicaAddr())
	}
	sc := redis.NewSentinelClient(&redis.Options{Addr: s.Addr()})
	t.Cleanup(func() { _ = sc.Close() })
	ctx := t.Context()
	masterAddr := func() string {
		a, err := sc.GetMasterAddrByName(ctx, SentinelMaster).Result()
		if err != nil || len(a) != 2 {
			t.Fatalf("SENTINEL get-master-addr-by-name: %q, %v", a, err)
		}
		return a[0] + ":" + a[1]
	}
	if got := masterAddr(); got != s.MasterAddr() {
		t.Fatalf("sentinel's master %s, want %s", got, s.MasterAddr())
	}

	c := s.Client(t)
	// WAIT counts the replicas that hold this connection's writes: a pipeline
	// sends SET and WAIT on one connection.
	pipe := c.Pipeline()
	pipe.Set(ctx, "kept", "v", time.Hour)
	acks := pipe.Do(ctx, "WAIT", 1, 5000)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatalf("SET and WAIT: %v", err)
	}
	if n, _ := acks.Int(); n != 1 {
		t.Fatalf("WAIT 1 = %d, want 1 replica", n)
	}

	killed := time.Now()
	s.KillMaster()
	s.KillMaster() // idempotent
	if _, err := probe(s.MasterAddr()); err == nil {
		t.Fatalf("master %s still answers after KillMaster", s.MasterAddr())
	}
	deadline := killed.Add(30 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		err := c.Set(cctx, "after", "w", time.Hour).Err()
		cancel()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no write succeeded within 30 s of the kill: %v\n%s", err, s.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("failover: writes succeed again %v after the kill", time.Since(killed).Round(time.Millisecond))
	if got := masterAddr(); got != s.ReplicaAddr() {
		t.Errorf("sentinel's master after the failover %s, want the replica %s", got, s.ReplicaAddr())
	}
	if got, err := c.Get(ctx, "kept").Result(); err != nil || got != "v" {
		t.Errorf("GET kept after the failover = %q, %v; want the replicated v", got, err)
	}
	AssertAllKeysHaveTTL(t, c, nil)
}

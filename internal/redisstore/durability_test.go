package redisstore

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// replicaSyncTimeout bounds how long a new replica may take to sync.
const replicaSyncTimeout = 10 * time.Second

// startReplicated starts a primary and a replica of it (with replicaArgs added
// to the replica's command line) and returns once the replica is in sync.
func startReplicated(tb testing.TB, replicaArgs ...string) (primary, replica *redistest.Server) {
	tb.Helper()
	// No 5 s wait for more replicas before a full sync.
	primary = redistest.Start(tb, "--repl-diskless-sync-delay", "0")
	host, port, err := net.SplitHostPort(primary.Addr())
	if err != nil {
		tb.Fatal(err)
	}
	replica = redistest.Start(tb, append([]string{"--replicaof", host, port}, replicaArgs...)...)
	waitInSync(tb, primary.Client(tb), replica.Client(tb), 1)
	return primary, replica
}

// waitInSync polls until the primary sees n online replicas and the replica's
// link to its primary is up.
func waitInSync(tb testing.TB, primary, replica *redis.Client, n int) {
	tb.Helper()
	ctx := context.Background()
	deadline := time.Now().Add(replicaSyncTimeout)
	for {
		p, perr := primary.Info(ctx, "replication").Result()
		r, rerr := replica.Info(ctx, "replication").Result()
		if perr == nil && rerr == nil && strings.Count(p, "state=online") == n && strings.Contains(r, "master_link_status:up") {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("replica not in sync within %s:\nprimary: %v %s\nreplica: %v %s", replicaSyncTimeout, perr, p, rerr, r)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// freeze blocks the replica's event loop for d (DEBUG SLEEP): it stays
// connected to its primary but neither applies nor acknowledges the stream, as
// a replica under load or behind a slow link does. It returns once the replica
// has stopped answering, and a channel closed when it answers again.
func freeze(tb testing.TB, replica *redistest.Server, d time.Duration) <-chan struct{} {
	tb.Helper()
	sleeper := replica.Client(tb)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = sleeper.Do(context.Background(), "DEBUG", "SLEEP", fmt.Sprintf("%.3f", d.Seconds())).Err()
	}()
	probe := redis.NewClient(&redis.Options{Addr: replica.Addr(), ReadTimeout: 50 * time.Millisecond, MaxRetries: -1})
	defer probe.Close()
	deadline := time.Now().Add(5 * time.Second)
	for probe.Ping(context.Background()).Err() == nil {
		if time.Now().After(deadline) {
			tb.Fatal("the replica still answers: DEBUG SLEEP did not start (is enable-debug-command on?)")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return done
}

// fifoClient is a client of addr whose pool hands out its idle connections in
// turn, with two of them open: a command sent through the pool after a write
// then runs on the other connection, as it does in a busy service.
func fifoClient(tb testing.TB, addr string) *redis.Client {
	tb.Helper()
	c := redis.NewClient(&redis.Options{Addr: addr, PoolFIFO: true})
	tb.Cleanup(func() { _ = c.Close() })
	ctx := context.Background()
	a, b := c.Conn(), c.Conn()
	for _, conn := range []*redis.Conn{a, b} {
		if err := conn.Ping(ctx).Err(); err != nil {
			tb.Fatal(err)
		}
	}
	_ = a.Close()
	_ = b.Close()
	return c
}

func durSite() *visitor.Site {
	return &visitor.Site{ID: "shop", SessionTimeout: 30 * time.Minute, SessionMax: 4 * time.Hour,
		ConsentValidDays: 180, PolicyVersion: "2026-11", Retention: rxOld}
}

func durConsent(site *visitor.Site, vkey string, at time.Time) visitor.ConsentWrite {
	return visitor.ConsentWrite{Site: site, Retention: rxOld, VisitorKey: vkey,
		Record: visitor.ConsentRecord{VisitorID: "vid-" + vkey, Time: at, Analytics: answered(true), PolicyVersion: "2026-11",
			TextSHA256: "ab12", Method: "banner", IP: "192.0.2.0", UserAgent: "Firefox"},
		Choice: visitor.Choice{Analytics: true, PolicyVersion: "2026-11", Given: at, ValidUntil: at.Add(180 * 24 * time.Hour)}}
}

func durChat(site *visitor.Site, id string, at time.Time) visitor.ChatWrite {
	return visitor.ChatWrite{Site: site, Retention: rxOld, ChatID: id, Start: at, URL: "https://shop.example/p",
		Name: "k1:sealed", Email: "k1:sealed"}
}

// A consent or chat write is acknowledged only once WithMinReplicas replicas
// hold it. WAIT counts the writes of the connection it runs on, so it must run
// on the connection that wrote: a replica that is connected but behind (here
// frozen by DEBUG SLEEP) must make the write fail, however the pool hands out
// its connections.
func TestMinReplicasWaitsOnTheWritingConnection(t *testing.T) {
	t.Parallel()
	primary, replica := startReplicated(t, "--enable-debug-command", "yes")
	site := durSite()
	s := New(fifoClient(t, primary.Addr()), WithMinReplicas(1), WithSites(site.ID))
	pc := primary.Client(t)
	ctx := context.Background()

	tests := []struct {
		name  string
		write func(at time.Time) error
		key   string // the key the write leaves on the primary
		// flush drops the primary's scripts first, as a restart or failover
		// does: the write then falls back to EVAL, which WAIT must cover too.
		flush bool
	}{
		{name: "consent", key: keysOf(site.ID, "frozen1").choice,
			write: func(at time.Time) error { _, err := s.SaveConsent(ctx, durConsent(site, "frozen1", at)); return err }},
		{name: "chat", key: chatKey(site.ID, "frozenchat1"),
			write: func(at time.Time) error { return s.SaveChat(ctx, durChat(site, "frozenchat1", at)) }},
		{name: "consent after NOSCRIPT", key: keysOf(site.ID, "frozen2").choice, flush: true,
			write: func(at time.Time) error { _, err := s.SaveConsent(ctx, durConsent(site, "frozen2", at)); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// A first write while the replica keeps up: acknowledged.
			if err := tt.write(rxNow()); err != nil {
				t.Fatalf("write with the replica in sync: %v", err)
			}
			if tt.flush {
				if err := pc.ScriptFlush(ctx).Err(); err != nil {
					t.Fatal(err)
				}
			}
			awake := freeze(t, replica, 2*time.Second)
			start := time.Now()
			err := tt.write(rxNow())
			elapsed := time.Since(start)
			if !errors.Is(err, visitor.ErrStoreUnavailable) {
				t.Errorf("write while the only replica is frozen = %v after %s, want ErrStoreUnavailable once WAIT times out "+
					"(a nil answer acknowledges a write no replica holds: WAIT ran on a connection that did not write)", err, elapsed)
			}
			// Generous: WAIT's timeout is 1 s; a hang would be the read timeout or worse.
			if elapsed > 5*time.Second {
				t.Errorf("the failed write took %s", elapsed)
			}
			// Acknowledgement semantics: a write that was not acknowledged may
			// still be on the primary (and reach the replica later); the caller
			// was told it failed and may retry. Nothing is rolled back.
			if n, err := pc.Exists(ctx, tt.key).Result(); err != nil || n != 1 {
				t.Errorf("EXISTS %s on the primary = %d, %v; want 1 (the unacknowledged write stays on the primary)", tt.key, n, err)
			}
			<-awake
		})
	}
}

// With a healthy replica, every acknowledged consent and chat write can be read
// from the replica at once (WAIT returned only after the replica applied it),
// under concurrent writers sharing the pool.
func TestMinReplicasAcknowledgedWritesAreOnTheReplica(t *testing.T) {
	t.Parallel()
	primary, replica := startReplicated(t)
	site := durSite()
	s := New(fifoClient(t, primary.Addr()), WithMinReplicas(1), WithSites(site.ID))
	rc := replica.Client(t)
	ctx := context.Background()

	const writers, perWriter = 8, 20
	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter*2)
	for w := range writers {
		wg.Go(func() {
			for i := range perWriter {
				vkey, chat := fmt.Sprintf("w%dv%d", w, i), fmt.Sprintf("w%dc%d", w, i)
				if _, err := s.SaveConsent(ctx, durConsent(site, vkey, rxNow())); err != nil {
					errs <- fmt.Errorf("consent %s: %w", vkey, err)
					continue
				}
				if n, err := rc.Exists(ctx, keysOf(site.ID, vkey).choice, keysOf(site.ID, vkey).records).Result(); err != nil || n != 2 {
					errs <- fmt.Errorf("consent %s acknowledged, but the replica holds %d of its 2 keys (%v)", vkey, n, err)
				}
				if err := s.SaveChat(ctx, durChat(site, chat, rxNow())); err != nil {
					errs <- fmt.Errorf("chat %s: %w", chat, err)
					continue
				}
				if n, err := rc.Exists(ctx, chatKey(site.ID, chat)).Result(); err != nil || n != 1 {
					errs <- fmt.Errorf("chat %s acknowledged, but the replica does not hold it (%v)", chat, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

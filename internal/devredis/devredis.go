// Package devredis runs an embedded in-memory Redis (miniredis) for development:
// `make run` without a Redis of its own. Nothing survives a restart.
package devredis

import (
	"context"
	"time"

	"github.com/alicebob/miniredis/v2"
)

// Server is an embedded Redis whose keys expire as time passes.
type Server struct {
	m    *miniredis.Miniredis
	stop context.CancelFunc
	done chan struct{}
}

// Start runs an embedded Redis on a free loopback port. miniredis only expires
// keys when told that time passed, so a ticker moves its clock with the wall clock.
func Start() (*Server, error) {
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{m: m, stop: cancel, done: make(chan struct{})}
	last := time.Now()
	m.SetTime(last)
	go func() {
		defer close(s.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case now := <-t.C:
				m.SetTime(now)
				m.FastForward(now.Sub(last))
				last = now
			}
		}
	}()
	return s, nil
}

// Addr is the server's host:port.
func (s *Server) Addr() string { return s.m.Addr() }

// URL is the server as a redis:// URL, the form redisstore.Connect takes, so
// that the development client is built like any other.
func (s *Server) URL() string { return "redis://" + s.m.Addr() }

// Close stops the server.
func (s *Server) Close() {
	s.stop()
	<-s.done
	s.m.Close()
}

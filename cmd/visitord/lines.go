package main

import (
	"io"
	"sync"
	"time"
)

// pipeBuf is the most a write(2) to a pipe may carry and stay whole when
// other writers share the pipe (PIPE_BUF on Linux): the container runtime
// reads stderr through one.
const pipeBuf = 4096

// lineBatcher takes the access log's lines (each Write one whole line) and
// writes them to w in batches: whole lines only, at most pipeBuf bytes a
// write, at most every later. A page view's line cost a write(2) of its own,
// about 3% of the service's CPU under load (issue 20); batched, one write
// carries twenty-odd lines. A line is never cut in two nor interleaved with
// the other log lines, which may precede it by up to every. Close writes what
// is left; serve closes it after the last request has drained.
type lineBatcher struct {
	mu   sync.Mutex
	w    io.Writer
	buf  []byte
	stop chan struct{}
	done chan struct{}
}

func newLineBatcher(w io.Writer, every time.Duration) *lineBatcher {
	b := &lineBatcher{w: w, buf: make([]byte, 0, pipeBuf), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(b.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				b.mu.Lock()
				b.flush()
				b.mu.Unlock()
			case <-b.stop:
				return
			}
		}
	}()
	return b
}

// Write takes one whole line. A failed write of the batch is dropped as
// slog's handler drops a line it cannot write: a log has no log to report to.
func (b *lineBatcher) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.buf)+len(p) > pipeBuf {
		b.flush()
	}
	if len(p) >= pipeBuf {
		_, _ = b.w.Write(p)
		return len(p), nil
	}
	b.buf = append(b.buf, p...)
	return len(p), nil
}

func (b *lineBatcher) flush() {
	if len(b.buf) == 0 {
		return
	}
	_, _ = b.w.Write(b.buf)
	b.buf = b.buf[:0]
}

// Close stops the periodic writes and writes what is left.
func (b *lineBatcher) Close() {
	close(b.stop)
	<-b.done
	b.mu.Lock()
	b.flush()
	b.mu.Unlock()
}

package main

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

// writesRecorder records each Write it is given.
type writesRecorder struct {
	mu     sync.Mutex
	writes []string
}

func (r *writesRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *writesRecorder) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

// The batcher writes every line once, in order, whole, in writes of whole
// lines of at most pipeBuf bytes; a line longer than that goes alone.
func TestLineBatcherWritesWholeLinesInOrder(t *testing.T) {
	var rec writesRecorder
	b := newLineBatcher(&rec, time.Hour)
	var want bytes.Buffer
	for i := range 500 {
		line := fmt.Sprintf("{\"n\":%d,\"pad\":%q}\n", i, strings.Repeat("x", i%300))
		if i == 250 {
			line = "{\"long\":\"" + strings.Repeat("y", 2*pipeBuf) + "\"}\n"
		}
		want.WriteString(line)
		if _, err := b.Write([]byte(line)); err != nil {
			t.Fatal(err)
		}
	}
	b.Close()
	writes := rec.all()
	if got := strings.Join(writes, ""); got != want.String() {
		t.Fatalf("the writes carry %d bytes, want the %d bytes of the lines in order", len(got), want.Len())
	}
	if len(writes) > 500/10 {
		t.Errorf("%d writes for 500 lines, want them batched", len(writes))
	}
	for i, w := range writes {
		if !strings.HasSuffix(w, "\n") {
			t.Errorf("write %d does not end a line: %.40q…", i, w)
		}
		if len(w) > pipeBuf && strings.Count(w, "\n") != 1 {
			t.Errorf("write %d of %d bytes carries %d lines, want at most %d bytes or one line", i, len(w), strings.Count(w, "\n"), pipeBuf)
		}
	}
}

// A line waits at most about the batcher's interval before it is written.
func TestLineBatcherWritesWithinItsInterval(t *testing.T) {
	var rec writesRecorder
	b := newLineBatcher(&rec, 10*time.Millisecond)
	defer b.Close()
	if _, err := b.Write([]byte("{\"msg\":\"request\"}\n")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(rec.all()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the line was not written within 5 s with a 10 ms interval")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if got := rec.all(); len(got) != 1 || got[0] != "{\"msg\":\"request\"}\n" {
		t.Errorf("writes %q, want the one line", got)
	}
}

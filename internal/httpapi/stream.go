package httpapi

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/visitord/visitord/internal/visitor"
)

// The live list as Server-Sent Events (GET /v1/sites/{site}/visitors/live/stream).
//
// While at least one stream of a site is open on this pod, one feed per site
// reads the live list every StreamOptions.Poll through Service.Live, the same
// read as GET visitors/live (same rows, same pseudonyms), and hands each changed
// list to the site's streams; each stream sends what changed since its last
// event. A page view on any pod reaches the live set in Redis, so it shows on
// every pod's streams within one poll and a read, and the page view itself pays
// no extra round trip. A stream reads nothing that reveals a subject beyond the
// live list, and writes no audit entry.

// Defaults of StreamOptions.
const (
	DefaultStreamsPerKey   = 4
	DefaultStreamHeartbeat = 15 * time.Second
	DefaultStreamPoll      = time.Second
)

// streamWriteTimeout bounds each write of a stream, so that a client that reads
// nothing releases its stream.
const streamWriteTimeout = 10 * time.Second

// StreamOptions tune the live streams; zero fields take the defaults.
type StreamOptions struct {
	// PerKey is how many streams one API key may hold open on a site, across
	// every pod; one more is 429 rate_limited.
	PerKey int
	// Heartbeat is how often a comment line is sent while nothing changes, so that
	// proxies and clients see the stream alive.
	Heartbeat time.Duration
	// Poll is how often a site's live list is read while a stream of it is open.
	Poll time.Duration
}

// Streams holds this process's open live streams. Close ends them all, for
// shutdown (http.Server.RegisterOnShutdown).
type Streams struct {
	opts StreamOptions
	done chan struct{}

	mu     sync.Mutex
	closed bool
	perKey map[string]int
	feeds  map[string]*feed

	// Set by New.
	svc          Operators
	storeTimeout time.Duration
	log          *slog.Logger
	open         prometheus.Gauge
	refused      prometheus.Counter
	errors       prometheus.Counter
}

// NewStreams returns an empty set of live streams.
func NewStreams(o StreamOptions) *Streams {
	if o.PerKey <= 0 {
		o.PerKey = DefaultStreamsPerKey
	}
	if o.Heartbeat <= 0 {
		o.Heartbeat = DefaultStreamHeartbeat
	}
	if o.Poll <= 0 {
		o.Poll = DefaultStreamPoll
	}
	return &Streams{opts: o, done: make(chan struct{}), perKey: map[string]int{}, feeds: map[string]*feed{}}
}

// Close ends every open stream and refuses new ones. It does not wait: each
// stream's handler returns as soon as it sees the close.
func (s *Streams) Close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
	}
}

func (s *Streams) attach(svc Operators, log *slog.Logger, reg prometheus.Registerer, storeTimeout time.Duration) {
	s.svc, s.log, s.storeTimeout = svc, log, storeTimeout
	s.open = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "visitord_live_streams", Help: "Live-list streams open on this pod.",
	})
	s.refused = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "visitord_live_streams_refused_total", Help: "Live-list streams refused: the key held its limit, or the pod was shutting down.",
	})
	s.errors = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "visitord_live_stream_errors_total", Help: "Store calls of live streams that failed: reads of the live list (the streams keep their last list), renewals and releases of their places.",
	})
	reg.MustRegister(s.open, s.refused, s.errors)
}

// feed is one site's live list, read for the streams of that site.
type feed struct {
	subs map[*subscriber]struct{}
	last []liveVisitorJSON
	stop context.CancelFunc
}

// subscriber is one open stream: it receives the latest list, older ones
// replaced when it has not taken them yet.
type subscriber struct {
	id   string
	key  string
	site string
	ch   chan []liveVisitorJSON
}

// streamID is a random id of one stream (its place in Redis).
func streamID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b) // never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b)
}

var errStreamsClosed = errors.Join(visitor.ErrStoreUnavailable, errors.New("the server is shutting down"))

// subscribe opens a stream of the actor's site, within the key's limit.
func (s *Streams) subscribe(a visitor.Actor) (*subscriber, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		s.refused.Inc()
		return nil, errStreamsClosed
	}
	key := a.Site.ID + "\x00" + a.KeyID
	if s.perKey[key] >= s.opts.PerKey {
		s.refused.Inc()
		return nil, &visitor.RateLimitError{RetryAfter: s.opts.Heartbeat}
	}
	s.perKey[key]++
	sub := &subscriber{id: streamID(), key: key, site: a.Site.ID, ch: make(chan []liveVisitorJSON, 1)}
	f := s.feeds[a.Site.ID]
	if f == nil {
		ctx, stop := context.WithCancel(context.Background())
		f = &feed{subs: map[*subscriber]struct{}{}, stop: stop}
		s.feeds[a.Site.ID] = f
		go s.poll(ctx, f, a.Site)
	} else if f.last != nil {
		sub.ch <- f.last
	}
	f.subs[sub] = struct{}{}
	s.open.Inc()
	return sub, nil
}

func (s *Streams) unsubscribe(sub *subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perKey[sub.key]--; s.perKey[sub.key] <= 0 {
		delete(s.perKey, sub.key)
	}
	f := s.feeds[sub.site]
	delete(f.subs, sub)
	if len(f.subs) == 0 {
		f.stop()
		delete(s.feeds, sub.site)
	}
	s.open.Dec()
}

// poll reads site's live list every Poll until ctx ends, and hands a changed
// list to the feed's streams.
func (s *Streams) poll(ctx context.Context, f *feed, site *visitor.Site) {
	t := time.NewTicker(s.opts.Poll)
	defer t.Stop()
	var last []byte
	for {
		rctx, cancel := context.WithTimeout(ctx, s.storeTimeout)
		page, err := s.svc.Live(rctx, visitor.Actor{Site: site}, 0, "", visitor.MaxLiveLimit)
		cancel()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			s.failed(ctx, site.ID, "live stream read", err)
		default:
			rows := liveRowsOf(page.Visitors)
			b, _ := json.Marshal(rows)
			if !bytes.Equal(b, last) {
				last = b
				s.publish(f, rows)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-s.done:
			return
		case <-t.C:
		}
	}
}

// failed logs and counts a store call of the streams that failed.
func (s *Streams) failed(ctx context.Context, site, what string, err error) {
	s.errors.Inc()
	s.log.LogAttrs(ctx, slog.LevelWarn, what, slog.String("site", site), slog.String("error", err.Error()))
}

func (s *Streams) publish(f *feed, rows []liveVisitorJSON) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f.last = rows
	for sub := range f.subs {
		select {
		case <-sub.ch: // not taken yet: the newer list replaces it
		default:
		}
		sub.ch <- rows
	}
}

// liveChange is the data of a "change" event: rows new or changed, in the
// list's order (most recent first), and the pseudonyms of rows gone.
type liveChange struct {
	Upsert []liveVisitorJSON `json:"upsert"`
	Remove []string          `json:"remove"`
}

// liveStream serves the live list of the key's site as Server-Sent Events: a
// "snapshot" event with the whole list ({"visitors":[…]}), then a "change"
// event whenever it changes, and a comment every heartbeat, which also renews
// the stream's place.
func (a *api) liveStream(c *gin.Context) {
	actor := actorOf(c)
	sub, err := a.streams.subscribe(actor)
	if err != nil {
		a.fail(c, err)
		return
	}
	defer a.streams.unsubscribe(sub)
	s := &liveStreamer{a: a, actor: actor, sub: sub, ctx: c.Request.Context()}
	if err := s.hold(); err != nil {
		if errors.Is(err, visitor.ErrRateLimited) {
			a.streams.refused.Inc()
		}
		a.fail(c, err)
		return
	}
	defer s.release()
	s.start(c.Writer)
	if !s.send([]byte(": live list of " + sub.site + "\n\n")) {
		return
	}
	s.serve()
}

// liveStreamer is one open live stream: its place in Redis and its writes.
type liveStreamer struct {
	a     *api
	actor visitor.Actor
	sub   *subscriber
	ctx   context.Context // the request's
	w     http.ResponseWriter
	rc    *http.ResponseController
}

// hold takes or renews the stream's place. The bound per key holds across
// pods: each stream holds a place in Redis, renewed every heartbeat, given back
// at its end, lapsing if its pod dies.
func (s *liveStreamer) hold() error {
	ctx, cancel := context.WithTimeout(s.ctx, s.a.storeTimeout)
	defer cancel()
	lease := 3 * s.a.streams.opts.Heartbeat
	return s.a.svc.HoldStream(ctx, s.actor, s.sub.id, s.a.streams.opts.PerKey, lease)
}

// release gives the stream's place back.
func (s *liveStreamer) release() {
	ctx, cancel := context.WithTimeout(context.Background(), s.a.storeTimeout)
	defer cancel()
	if err := s.a.svc.ReleaseStream(ctx, s.actor, s.sub.id); err != nil {
		s.a.streams.failed(ctx, s.actor.Site.ID, "live stream release", err)
	}
}

// start answers 200 as an event stream.
func (s *liveStreamer) start(w http.ResponseWriter) {
	s.w, s.rc = w, http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}

// send writes and flushes b; false when the client is gone.
func (s *liveStreamer) send(b []byte) bool {
	// The server's WriteTimeout would end a long stream: each write has its own.
	_ = s.rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
	if _, err := s.w.Write(b); err != nil {
		return false
	}
	return s.rc.Flush() == nil
}

// serve sends the site's list as it changes, and a heartbeat, until the client
// leaves or the server closes the streams.
func (s *liveStreamer) serve() {
	heartbeat := time.NewTicker(s.a.streams.opts.Heartbeat)
	defer heartbeat.Stop()
	var sent map[string][]byte
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-s.a.streams.done:
			return
		case <-heartbeat.C:
			if err := s.hold(); err != nil && s.ctx.Err() == nil {
				s.a.streams.failed(s.ctx, s.actor.Site.ID, "live stream renewal", err)
			}
			if !s.send([]byte(": heartbeat\n\n")) {
				return
			}
		case rows := <-s.sub.ch:
			ev, next := liveEvent(sent, rows)
			sent = next
			if ev == nil {
				continue
			}
			// The heartbeat keeps its beat (it renews the stream's place too).
			if !s.send(ev) {
				return
			}
		}
	}
}

// liveEvent is the event that takes a client from the rows in sent (nil before
// the first event) to rows, and the rows now sent; nil when nothing changed.
func liveEvent(sent map[string][]byte, rows []liveVisitorJSON) ([]byte, map[string][]byte) {
	next := make(map[string][]byte, len(rows))
	var ch liveChange
	ch.Upsert, ch.Remove = []liveVisitorJSON{}, []string{}
	for _, r := range rows {
		b, _ := json.Marshal(r)
		next[r.Pseudonym] = b
		if old, ok := sent[r.Pseudonym]; !ok || !bytes.Equal(old, b) {
			ch.Upsert = append(ch.Upsert, r)
		}
	}
	for p := range sent {
		if _, ok := next[p]; !ok {
			ch.Remove = append(ch.Remove, p)
		}
	}
	var name string
	var data any
	switch {
	case sent == nil:
		name, data = "snapshot", liveResponse{Visitors: rows}
	case len(ch.Upsert) == 0 && len(ch.Remove) == 0:
		return nil, next
	default:
		name, data = "change", ch
	}
	b, _ := json.Marshal(data)
	ev := make([]byte, 0, len(b)+32)
	ev = append(ev, "event: "...)
	ev = append(ev, name...)
	ev = append(ev, "\ndata: "...)
	ev = append(ev, b...)
	ev = append(ev, "\n\n"...)
	return ev, next
}

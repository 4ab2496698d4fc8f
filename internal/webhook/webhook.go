// Package webhook delivers visitord's webhooks (the events of
// visitor.WebhookEvents) to each site's configured URL, signed with the site's
// secret, from a durable queue that another package keeps. It follows no
// redirects, sends only over https (http only to a loopback host, for
// development), retries with exponential back-off and gives up after a bounded
// number of attempts. A delivery that cannot be opened or sent is logged and
// counted, never dropped in silence.
package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/visitord/visitord/internal/visitor"
)

// Defaults of the Dispatcher's tunables.
const (
	// DefaultInterval is how often Run polls the queue.
	DefaultInterval = time.Second
	// DefaultMaxAttempts is how many attempts a delivery gets before it is abandoned.
	DefaultMaxAttempts = 12
	// DefaultBackoffBase is the delay after the first failed attempt.
	DefaultBackoffBase = 5 * time.Second
	// DefaultBackoffMax is the longest delay between two attempts.
	DefaultBackoffMax = time.Hour
	// RequestTimeout bounds one delivery attempt, response included.
	RequestTimeout = 10 * time.Second
)

const (
	// batchSize bounds the deliveries claimed per site and tick, so a tick's work
	// is bounded by len(targets) × batchSize requests.
	batchSize = 10
	// lease covers a whole batch sent one request after another, with room to spare;
	// a delivery whose pod dies mid-batch is claimed again once it runs out.
	lease = batchSize*RequestTimeout + 30*time.Second
	// bookkeepingTimeout bounds Done and Retry, which still run when ctx is cancelled
	// after a request went out, so a delivered webhook is not sent again needlessly.
	bookkeepingTimeout = 5 * time.Second
	// maxDrain is how much of a response body is read so the connection is reused.
	maxDrain = 64 << 10
	// jitter is the fraction by which a back-off delay varies either way.
	jitter    = 0.2
	userAgent = "visitord-webhook/1"
)

// Results of a delivery attempt, the "result" label of the deliveries metric.
const (
	resultDelivered = "delivered"
	resultFailed    = "failed"
	resultAbandoned = "abandoned"
	// resultUnreadable counts deliveries whose body cannot be opened.
	resultUnreadable = "unreadable"
	// resultExpired counts deliveries that were gone (expired) before they were sent.
	resultExpired = "expired"
)

// Why a queued delivery cannot be sent (Delivery.Err).
var (
	// ErrGone reports a delivery whose record is gone: it expired unsent.
	ErrGone = errors.New("webhook delivery expired before it was sent")
	// ErrUnreadable reports a delivery whose body cannot be opened (sealed
	// under a data key no longer configured, or damaged).
	ErrUnreadable = errors.New("webhook delivery cannot be opened")
)

// Delivery is one queued webhook delivery.
type Delivery struct {
	// ID is unique and random; receivers use it (Visitord-Delivery) to drop duplicates.
	ID string
	// Site is the id of the site whose webhook receives the delivery.
	Site string
	// Event is one of visitor.WebhookEvents ("" when the delivery is gone).
	Event string
	// Body is the JSON body to POST, already decrypted by the queue's owner.
	Body []byte
	// Attempts is the number of attempts made so far.
	Attempts int
	// Ref is the queue's own reference to the delivery (it may name the subject
	// the delivery belongs to): passed back to Done and Retry, never sent or logged.
	Ref string
	// Err, when set, says why the delivery cannot be sent (wrapping ErrGone or
	// ErrUnreadable): the dispatcher logs and counts it, then removes it with Done.
	Err error
}

// Queue is the durable queue the Dispatcher drains. Implementations return
// visitor.ErrStoreUnavailable (wrapped) when the store cannot be reached.
type Queue interface {
	// Due claims up to n deliveries of site whose next attempt is due at now,
	// leasing them for lease: no other Due returns them until the lease runs out
	// or Retry reschedules them. A claimed delivery that cannot be sent is
	// returned with Err set, never left out. It returns
	// visitor.ErrStoreUnavailable (wrapped).
	Due(ctx context.Context, site string, now time.Time, n int, lease time.Duration) ([]Delivery, error)
	// Done removes a delivered (or abandoned) delivery. Removing one that is gone
	// is not an error. It returns visitor.ErrStoreUnavailable (wrapped).
	Done(ctx context.Context, d Delivery) error
	// Retry schedules the next attempt of d at next, recording d.Attempts as the
	// attempt count and ending the lease. It returns visitor.ErrStoreUnavailable (wrapped).
	Retry(ctx context.Context, d Delivery, next time.Time) error
}

// Target is where a site's webhooks go and the secret that signs them.
type Target struct {
	URL    string
	Secret []byte
}

// Option tunes a Dispatcher.
type Option func(*Dispatcher)

// WithClient sends with client instead of the default one (tests use the
// httptest server's). Redirects are never followed whatever the client says.
func WithClient(client *http.Client) Option {
	return func(d *Dispatcher) {
		if client != nil {
			c := *client
			c.CheckRedirect = noRedirect
			d.client = &c
		}
	}
}

// WithClock sets the clock that schedules retries and timestamps signatures.
func WithClock(now func() time.Time) Option {
	return func(d *Dispatcher) {
		if now != nil {
			d.now = now
		}
	}
}

// WithInterval sets how often Run polls the queue (default 1s); non-positive
// values keep the default.
func WithInterval(interval time.Duration) Option {
	return func(d *Dispatcher) {
		if interval > 0 {
			d.interval = interval
		}
	}
}

// WithMaxAttempts sets how many attempts a delivery gets before it is abandoned
// (default 12); values below 1 keep the default.
func WithMaxAttempts(n int) Option {
	return func(d *Dispatcher) {
		if n >= 1 {
			d.maxAttempts = n
		}
	}
}

// WithBackoff sets the delay after the first failed attempt (base, default 5s),
// doubled after each further failure up to maxDelay (default 1h), each delay varied
// by ±20% and never above maxDelay. Non-positive values, or maxDelay below base,
// keep the defaults.
func WithBackoff(base, maxDelay time.Duration) Option {
	return func(d *Dispatcher) {
		if base > 0 && maxDelay >= base {
			d.backoffBase, d.backoffMax = base, maxDelay
		}
	}
}

// target is a Target whose URL was checked once, at construction.
type target struct {
	site    string
	url     string
	secret  []byte
	refused error // why nothing may be sent to url, or nil
}

// Dispatcher drains the Queue, delivering each site's webhooks to its Target.
type Dispatcher struct {
	queue       Queue
	targets     []target
	log         *slog.Logger
	client      *http.Client
	now         func() time.Time
	interval    time.Duration
	maxAttempts int
	backoffBase time.Duration
	backoffMax  time.Duration

	deliveries *prometheus.CounterVec
	duration   prometheus.Histogram
}

// NewDispatcher returns a Dispatcher that delivers the deliveries q holds for the
// sites of targets, logging to log and registering its metrics on reg (when not nil).
func NewDispatcher(q Queue, targets map[string]Target, log *slog.Logger, reg prometheus.Registerer, opts ...Option) *Dispatcher {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Dispatcher{
		queue:       q,
		log:         log,
		client:      defaultClient(),
		now:         func() time.Time { return time.Now().UTC() },
		interval:    DefaultInterval,
		maxAttempts: DefaultMaxAttempts,
		backoffBase: DefaultBackoffBase,
		backoffMax:  DefaultBackoffMax,
	}
	for _, opt := range opts {
		opt(d)
	}
	for site, t := range targets {
		d.targets = append(d.targets, target{
			site:    site,
			url:     t.URL,
			secret:  slices.Clone(t.Secret),
			refused: checkTarget(t),
		})
	}
	slices.SortFunc(d.targets, func(a, b target) int { return strings.Compare(a.site, b.site) })

	d.deliveries = register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "visitord_webhook_deliveries_total",
		Help: "Webhook deliveries by event and result (delivered, failed and to be retried, abandoned, unreadable, expired).",
	}, []string{"event", "result"}))
	d.duration = register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "visitord_webhook_delivery_duration_seconds",
		Help:    "Time taken by one webhook delivery attempt, response included.",
		Buckets: prometheus.DefBuckets,
	}))
	for _, event := range append(slices.Clone(visitor.WebhookEvents), "other") {
		for _, result := range []string{resultDelivered, resultFailed, resultAbandoned, resultUnreadable, resultExpired} {
			d.deliveries.WithLabelValues(event, result)
		}
	}
	return d
}

// register registers c on reg, or reuses the collector already registered under
// the same name, so two Dispatchers may share a registry.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(fmt.Sprintf("register webhook metrics: %v", err))
	}
	return c
}

// defaultClient follows no redirects and bounds each request; URLs are checked
// by checkURL before any request is made.
func defaultClient() *http.Client {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.ResponseHeaderTimeout = RequestTimeout
	return &http.Client{
		Transport:     transport,
		Timeout:       RequestTimeout,
		CheckRedirect: noRedirect,
	}
}

// noRedirect makes the client return a 3xx as it is, which counts as a failure:
// a redirect could lead a signed body with personal data anywhere.
func noRedirect(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// checkTarget reports why nothing may be sent to t, or nil.
func checkTarget(t Target) error {
	if len(t.Secret) == 0 {
		return errors.New("webhook has no secret")
	}
	u, err := url.Parse(t.URL)
	if err != nil {
		return errors.New("webhook url does not parse")
	}
	return checkURL(u)
}

// checkURL allows https, and http only to a loopback host (development). The
// error never repeats the URL, whose query may hold a credential.
func checkURL(u *url.URL) error {
	if u.Host == "" || u.Opaque != "" {
		return errors.New("webhook url is not absolute")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		if isLoopback(u.Hostname()) {
			return nil
		}
		return errors.New("webhook url is http to a host that is not loopback")
	}
	return errors.New("webhook url is neither https nor http")
}

// isLoopback reports whether host is localhost, in 127.0.0.0/8 or ::1.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Run polls the queue every interval and delivers what is due, in the calling
// goroutine, until ctx is done.
func (d *Dispatcher) Run(ctx context.Context) {
	timer := time.NewTimer(d.interval)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		d.Tick(ctx)
		// The interval runs from the end of a tick, so slow receivers never make
		// ticks pile up.
		timer.Reset(d.interval)
	}
}

// Tick makes one pass over all sites, claiming and sending at most a bounded
// batch of due deliveries per site, and returns the number of deliveries
// attempted (requests sent). Queue errors are logged; the next tick tries again.
func (d *Dispatcher) Tick(ctx context.Context) int {
	attempted := 0
	for _, t := range d.targets {
		if ctx.Err() != nil {
			break
		}
		due, err := d.queue.Due(ctx, t.site, d.now(), batchSize, lease)
		if err != nil {
			if ctx.Err() == nil {
				d.log.Warn("webhook queue", "site", t.site, "error", err)
			}
			continue
		}
		for _, del := range due {
			if ctx.Err() != nil {
				// Unsent deliveries stay leased and are claimed again when it runs out.
				break
			}
			if d.deliver(ctx, t, del) {
				attempted++
			}
		}
	}
	return attempted
}

// deliver sends del to t, then removes or reschedules it, and reports whether a
// request was sent.
func (d *Dispatcher) deliver(ctx context.Context, t target, del Delivery) bool {
	attempt := del.Attempts + 1
	log := d.log.With("site", t.site, "event", del.Event, "delivery_id", del.ID, "attempt", attempt)
	event := eventLabel(del.Event)

	if del.Err != nil {
		result := resultUnreadable
		if errors.Is(del.Err, ErrGone) {
			result = resultExpired
		}
		d.deliveries.WithLabelValues(event, result).Inc()
		log.Warn("webhook not sent", "result", result, "reason", del.Err.Error())
		d.done(ctx, log, del)
		return false
	}
	refused := t.refused
	if refused == nil && del.Site != t.site {
		// Tenant isolation: a queue bug must never send site A's data to site B.
		refused = errors.New("delivery belongs to another site")
	}
	if refused != nil {
		d.deliveries.WithLabelValues(event, resultAbandoned).Inc()
		log.Warn("webhook abandoned", "reason", refused.Error())
		d.done(ctx, log, del)
		return false
	}

	start := time.Now()
	status, err := d.post(ctx, t, del)
	d.duration.Observe(time.Since(start).Seconds())
	if err != nil && ctx.Err() != nil {
		// Shutting down: not the receiver's fault, so not an attempt; the lease
		// runs out and another tick (or pod) sends it again.
		return true
	}
	if err == nil && status >= 200 && status < 300 {
		d.deliveries.WithLabelValues(event, resultDelivered).Inc()
		log.Info("webhook delivered", "status_code", status)
		d.done(ctx, log, del)
		return true
	}

	if err == nil {
		err = fmt.Errorf("status %d", status)
	}
	if attempt >= d.maxAttempts {
		d.deliveries.WithLabelValues(event, resultAbandoned).Inc()
		log.Warn("webhook abandoned", "status_code", status, "reason", "max attempts", "error", err)
		d.done(ctx, log, del)
		return true
	}
	d.deliveries.WithLabelValues(event, resultFailed).Inc()
	next := d.now().Add(d.backoff(attempt))
	log.Warn("webhook failed", "status_code", status, "error", err, "next_attempt", next)
	del.Attempts = attempt
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	if err := d.queue.Retry(bctx, del, next); err != nil {
		log.Warn("webhook queue retry", "error", err)
	}
	return true
}

// done removes del from the queue, even when ctx was cancelled after its request.
func (d *Dispatcher) done(ctx context.Context, log *slog.Logger, del Delivery) {
	bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), bookkeepingTimeout)
	defer cancel()
	if err := d.queue.Done(bctx, del); err != nil {
		log.Warn("webhook queue done", "error", err)
	}
}

// post sends one attempt of del to t and returns the response's status code. Its
// error never holds the URL, whose query may hold a credential.
func (d *Dispatcher) post(ctx context.Context, t target, del Delivery) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, RequestTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.url, bytes.NewReader(del.Body))
	if err != nil {
		return 0, errors.New("build request")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set("Visitord-Event", del.Event)
	req.Header.Set("Visitord-Delivery", del.ID)
	req.Header.Set("Visitord-Signature", Sign(t.secret, d.now(), del.ID, del.Body))
	resp, err := d.client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // url.Error repeats the whole URL
		}
		return 0, fmt.Errorf("post: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	return resp.StatusCode, nil
}

// backoff is the delay after the attempt-th failed attempt: base doubled
// attempt-1 times, capped at max, varied by ±20%, never above max.
func (d *Dispatcher) backoff(attempt int) time.Duration {
	delay := d.backoffBase
	for i := 1; i < attempt && delay < d.backoffMax; i++ {
		delay *= 2
	}
	delay = min(delay, d.backoffMax)
	delay = time.Duration(float64(delay) * (1 - jitter + 2*jitter*rand.Float64()))
	return min(delay, d.backoffMax)
}

// eventLabel keeps the event label's values to the known events.
func eventLabel(event string) string {
	if slices.Contains(visitor.WebhookEvents, event) {
		return event
	}
	return "other"
}

package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
	"github.com/visitord/visitord/internal/webhook"
)

// WebhookQueue is the durable webhook queue the dispatcher drains: per site a
// zset of delivery keys scored by next attempt, each delivery a hash under its
// subject's hash tag holding the sealed body, so an erasure deletes it with the
// subject and the queue entry is dropped when next met.
type WebhookQueue struct {
	s      *Store
	sealer *visitor.Sealer
}

// NewWebhookQueue returns the queue of s; bodies are opened with sealer.
func NewWebhookQueue(s *Store, sealer *visitor.Sealer) *WebhookQueue {
	return &WebhookQueue{s: s, sealer: sealer}
}

// deliveryID is the id of a delivery written before its hash held it (field
// i): the key ends with it, ch:{site:chat}:w:<id> or wh:{site:<id>}.
func deliveryID(key string) string {
	key = strings.TrimSuffix(key, "}")
	return key[strings.LastIndex(key, ":")+1:]
}

// Due claims up to n due deliveries of site for lease and returns them opened.
// A delivery that is gone (expired) or cannot be opened is returned with Err
// set, so the dispatcher logs, counts and removes it: none is dropped in silence.
func (q *WebhookQueue) Due(ctx context.Context, site string, now time.Time, n int, lease time.Duration) ([]webhook.Delivery, error) {
	qk := queueKey(site)
	keys, err := claimScript.Run(ctx, q.s.c, []string{qk}, ms(now), lease.Milliseconds(), n).StringSlice()
	if err != nil {
		return nil, fmt.Errorf("webhook due: %w", translate(err))
	}
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := q.s.c.Pipeline()
	cmds := make([]*redis.SliceCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HMGet(ctx, k, "p", "e", "n", "i")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("webhook due: %w", translate(err))
	}
	out := make([]webhook.Delivery, 0, len(keys))
	for i, cmd := range cmds {
		v := cmd.Val()
		str := func(j int) string { s, _ := v[j].(string); return s }
		d := webhook.Delivery{ID: str(3), Site: site, Event: str(1), Ref: keys[i]}
		if d.ID == "" {
			d.ID = deliveryID(keys[i])
		}
		d.Attempts, _ = strconv.Atoi(str(2))
		sealed := str(0)
		if sealed == "" {
			d.Err = webhook.ErrGone
			out = append(out, d)
			continue
		}
		body, err := q.sealer.Open(site, "webhook", d.ID, sealed)
		if err != nil {
			d.Err = fmt.Errorf("%w: %v", webhook.ErrUnreadable, err)
		}
		d.Body = []byte(body)
		out = append(out, d)
	}
	return out, nil
}

// Done removes a delivered, abandoned or unreadable delivery.
func (q *WebhookQueue) Done(ctx context.Context, d webhook.Delivery) error {
	pipe := q.s.c.Pipeline()
	pipe.ZRem(ctx, queueKey(d.Site), d.Ref)
	pipe.Del(ctx, d.Ref)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("webhook done: %w", translate(err))
	}
	return nil
}

// Retry schedules the next attempt of d at next.
func (q *WebhookQueue) Retry(ctx context.Context, d webhook.Delivery, next time.Time) error {
	pipe := q.s.c.Pipeline()
	pipe.ZAddXX(ctx, queueKey(d.Site), redis.Z{Score: float64(ms(next)), Member: d.Ref})
	retryScript.Eval(ctx, pipe, []string{d.Ref}, d.Attempts)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("webhook retry: %w", translate(err))
	}
	return nil
}

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

// deliveryID is the id a delivery key ends with: ch:{site:chat}:w:<id>.
func deliveryID(key string) string {
	return key[strings.LastIndex(key, ":")+1:]
}

// Due claims up to n due deliveries of site for lease and returns them opened.
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
		cmds[i] = pipe.HMGet(ctx, k, "p", "e", "n")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("webhook due: %w", translate(err))
	}
	var out []webhook.Delivery
	var gone []any
	for i, cmd := range cmds {
		v := cmd.Val()
		sealed, _ := v[0].(string)
		if sealed == "" {
			gone = append(gone, keys[i]) // erased with its subject, or expired
			continue
		}
		id := deliveryID(keys[i])
		body, err := q.sealer.Open(site, "webhook", id, sealed)
		if err != nil {
			gone = append(gone, keys[i]) // sealed under a key no longer configured
			continue
		}
		event, _ := v[1].(string)
		attempts, _ := strconv.Atoi(fmt.Sprint(v[2]))
		out = append(out, webhook.Delivery{ID: id, Site: site, Event: event, Body: []byte(body), Attempts: attempts, Ref: keys[i]})
	}
	if len(gone) > 0 {
		if err := q.s.c.ZRem(ctx, qk, gone...).Err(); err != nil {
			return nil, fmt.Errorf("webhook due: %w", translate(err))
		}
	}
	return out, nil
}

// Done removes a delivered or abandoned delivery.
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

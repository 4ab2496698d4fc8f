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

// enqueueScript writes a queued delivery and, for one kept with a visitor,
// enters it in the visitor's delivery set (enqueue.lua).
var enqueueScript = declare("enqueue.lua")

// enqueueArgs are enqueue.lua's KEYS and ARGV by name.
type enqueueArgs struct {
	delivery string
	set      string // the visitor's delivery set; "" for a delivery of ids only
	expireAt time.Time
	fields   []any // field, value pairs
}

func (a enqueueArgs) call() *call {
	keys := []string{a.delivery}
	if a.set != "" {
		keys = append(keys, a.set)
	}
	args := make([]any, 0, 1+len(a.fields))
	args = append(args, ms(a.expireAt))
	return &call{script: enqueueScript, keys: keys, args: append(args, a.fields...)}
}

// queueScript schedules a webhook delivery on the site's queue (queue.lua).
var queueScript = declare("queue.lua")

// queueArgs are queue.lua's KEYS and ARGV by name.
type queueArgs struct {
	key      string // wq:{site}
	delivery string
	due      time.Time
	ttl      time.Duration
}

func (a queueArgs) call() *call {
	return &call{script: queueScript, keys: []string{a.key}, args: []any{a.delivery, ms(a.due), a.ttl.Milliseconds()}}
}

// claimScript claims the due deliveries of a queue for a lease (claim.lua).
var claimScript = declare("claim.lua")

// claimArgs are claim.lua's KEYS and ARGV by name.
type claimArgs struct {
	key   string // wq:{site}
	now   time.Time
	lease time.Duration
	max   int
}

func (a claimArgs) call() *call {
	return &call{script: claimScript, keys: []string{a.key}, args: []any{ms(a.now), a.lease.Milliseconds(), a.max}}
}

// decodeKeys reads a reply that lists keys (claim.lua, purge.lua, purge_chat.lua).
func decodeKeys(c *call) ([]string, error) {
	keys, err := c.cmd.StringSlice()
	if err != nil {
		return nil, translate(err)
	}
	return keys, nil
}

// retryScript records a delivery's attempts unless it was erased meanwhile (retry.lua).
var retryScript = declare("retry.lua")

// retryArgs are retry.lua's KEYS and ARGV by name.
type retryArgs struct {
	delivery string
	attempts int
}

func (a retryArgs) call() *call {
	return &call{script: retryScript, keys: []string{a.delivery}, args: []any{a.attempts}}
}

// purgeScript deletes the deliveries a visitor's delivery set names and the
// set (purge.lua).
var purgeScript = declare("purge.lua")

// purgeArgs are purge.lua's KEYS by name; it takes no ARGV.
type purgeArgs struct{ set string }

func (a purgeArgs) call() *call { return &call{script: purgeScript, keys: []string{a.set}} }

// purgeChatScript deletes the deliveries of a visitor's delivery set that name
// a chat (purge_chat.lua).
var purgeChatScript = declare("purge_chat.lua")

// purgeChatArgs are purge_chat.lua's KEYS and ARGV by name.
type purgeChatArgs struct{ set, chatID string }

func (a purgeChatArgs) call() *call {
	return &call{script: purgeChatScript, keys: []string{a.set}, args: []any{a.chatID}}
}

// Enqueue queues a sealed webhook delivery: one carrying a visitor's contact
// details (d.VisitorKey) under the visitor's hash tag and in its delivery set,
// so an erasure purges it; one of ids only under its own key.
func (s *Store) Enqueue(ctx context.Context, site *visitor.Site, d visitor.Delivery, now time.Time) error {
	dk, set := hookKey(site.ID, d.ID), ""
	if d.VisitorKey != "" {
		k := keysOf(site.ID, d.VisitorKey)
		dk, set = k.profile+":w:"+d.ID, k.deliveries
	}
	fields := []any{"i", d.ID, "p", d.Sealed, "e", d.Event, "n", 0, "s", site.ID}
	if d.VisitorKey != "" {
		fields = append(fields, "c", strings.Join(d.ChatIDs, ","))
	}
	err := s.run(ctx,
		enqueueArgs{delivery: dk, set: set, expireAt: now.Add(visitor.WebhookTTL), fields: fields}.call(),
		queueArgs{key: queueKey(site.ID), delivery: dk, due: now, ttl: visitor.WebhookTTL}.call())
	if err != nil {
		return fmt.Errorf("enqueue webhook: %w", err)
	}
	return nil
}

// QueuedContacts returns the queued deliveries kept with a visitor (those
// carrying its contact details), sealed; one gone meanwhile is left out.
func (s *Store) QueuedContacts(ctx context.Context, site *visitor.Site, vkey string) ([]visitor.Delivery, error) {
	keys, err := s.c.SMembers(ctx, keysOf(site.ID, vkey).deliveries).Result()
	if err != nil {
		return nil, fmt.Errorf("queued contacts: %w", translate(err))
	}
	if len(keys) == 0 {
		return nil, nil
	}
	pipe := s.c.Pipeline()
	cmds := make([]*redis.SliceCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HMGet(ctx, k, "i", "e", "p", "c")
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("queued contacts: %w", translate(err))
	}
	var out []visitor.Delivery
	for _, cmd := range cmds {
		v := cmd.Val()
		str := func(j int) string { s, _ := v[j].(string); return s }
		if str(0) == "" || str(2) == "" {
			continue
		}
		d := visitor.Delivery{ID: str(0), Event: str(1), Sealed: str(2), VisitorKey: vkey}
		if c := str(3); c != "" {
			d.ChatIDs = strings.Split(c, ",")
		}
		out = append(out, d)
	}
	return out, nil
}

// dequeue takes deleted deliveries off the site's queue.
func (s *Store) dequeue(ctx context.Context, site *visitor.Site, keys []string) error {
	if len(keys) == 0 {
		return nil
	}
	members := make([]any, len(keys))
	for i, k := range keys {
		members[i] = k
	}
	if err := s.c.ZRem(ctx, queueKey(site.ID), members...).Err(); err != nil {
		return fmt.Errorf("dequeue webhooks: %w", translate(err))
	}
	return nil
}

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
	claim := claimArgs{key: qk, now: now, lease: lease, max: n}.call()
	if err := q.s.run(ctx, claim); err != nil {
		return nil, fmt.Errorf("webhook due: %w", err)
	}
	keys, err := decodeKeys(claim)
	if err != nil {
		return nil, fmt.Errorf("webhook due: %w", err)
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
	// One round trip: the queue's score and the script; a node that lost the
	// script (NOSCRIPT) gets it whole once, as run does.
	retry := retryArgs{delivery: d.Ref, attempts: d.Attempts}.call()
	pipe := q.s.c.Pipeline()
	zadd := pipe.ZAddXX(ctx, queueKey(d.Site), redis.Z{Score: float64(ms(next)), Member: d.Ref})
	retry.cmd = retry.script.EvalSha(ctx, pipe, retry.keys, retry.args...)
	_, _ = pipe.Exec(ctx) // each command's error is read below
	if err := zadd.Err(); err != nil {
		return fmt.Errorf("webhook retry: %w", translate(err))
	}
	if err := retry.cmd.Err(); err != nil {
		if !redis.HasErrorPrefix(err, "NOSCRIPT") {
			return fmt.Errorf("webhook retry: %w", translate(err))
		}
		if err := q.s.run(ctx, retry); err != nil {
			return fmt.Errorf("webhook retry: %w", err)
		}
	}
	return nil
}

package visitor

import "time"

// Fixed windows of data whose lifetime no site configures, as the record of
// processing states them (record.go); the store applies them as TTLs.
const (
	// TombstoneTTL is how long an erased visitor's tombstone is kept: the
	// longest an identity token lives.
	TombstoneTTL = tombstoneDays * 24 * time.Hour
	// WebhookTTL is how long an undelivered webhook is kept.
	WebhookTTL = webhookQueueDays * 24 * time.Hour
	// StatsTTL is how long per-day counters are kept.
	StatsTTL = counterDays * 24 * time.Hour
)

// MaxSessionPages is how many pages a session stores (DESIGN.md invariant 5):
// later page views are counted, not stored.
const MaxSessionPages = 500

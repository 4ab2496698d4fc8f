// Package redisstore keeps visitord's data in Redis through go-redis v9's
// UniversalClient, so one code path serves a single Redis, Sentinel and Cluster.
//
// # Key schema
//
// Every key of one visitor shares the hash tag {<site>:<vkey>}, where vkey is a
// keyed hash of the visitor id (visitor.Hasher.VisitorKey): no key name holds a
// visitor id, and all of a visitor's keys live on one Cluster slot, so a page view
// is one script on that slot.
//
//	v:{shop:Q2x8Yk1vZjRrS3pN}           hash    profile, identity-level facts only (invariant 5):
//	                                             vid, fs (first seen ms), ns (sessions), sid (current
//	                                             session), w (write time ms: the visitor's TTLs were
//	                                             set then), ix (score of the visitor's subject-index
//	                                             entry, ms)
//	v:{shop:Q2x8Yk1vZjRrS3pN}:s:<sid>   list    one session's record, then its pages. The first item is
//	                                             "#r" and, each after a tab: ss/sl (start, last activity
//	                                             ms), ps/pc (current page start ms, closed by a leave), np
//	                                             (page views, counted past the cap), cu/ct (current page's
//	                                             URL and title, for the live view), rf (referrer),
//	                                             br/bv/os/mob (device), co/rg/ci/tz (geo), ip
//	                                             (recordFields). Then a page per item: "<start
//	                                             ms>\t<duration ms>\t<url>\t<title>"; at most
//	                                             MaxSessionPages pages (later ones only counted)
//	v:{shop:Q2x8Yk1vZjRrS3pN}:s:<sid>:m hash    a session written before its record moved into its
//	                                             list: the same fields (its list starts with "#<start
//	                                             ms>\t<referrer>"); the readers read it, the next hit on
//	                                             the session moves it into the list and deletes it
//	v:{shop:Q2x8Yk1vZjRrS3pN}:S         zset    the visitor's earlier session ids, scored by the
//	                                             session's opening (ms; its last write is its record's sl):
//	                                             a session enters it when a later one replaces it as the
//	                                             profile's sid, so a one-session visitor has none; readers
//	                                             take the union with sid
//	v:{shop:Q2x8Yk1vZjRrS3pN}:c         hash    current consent choice: a, m (0|1), pv, t (given ms),
//	                                             u (valid until ms)
//	v:{shop:Q2x8Yk1vZjRrS3pN}:r         zset    consent records (JSON), scored by their expiry (ms)
//	v:{shop:Q2x8Yk1vZjRrS3pN}:t         string  tombstone of an erased visitor: the keyed hash
//
//	v:{shop:Q2x8Yk1vZjRrS3pN}:C         zset    the visitor's chat ids, scored by start (ms)
//	v:{shop:Q2x8Yk1vZjRrS3pN}:I         set     the blind-index keys the visitor is entered in
//	v:{shop:Q2x8Yk1vZjRrS3pN}:M         set     chat ids whose marketing opt-in the visitor withdrew
//	                                             (expires with the chat index)
//	v:{shop:Q2x8Yk1vZjRrS3pN}:O         set     of those, the chat ids whose marketing.withdrawn is not
//	                                             queued yet (written with :M, expires with it)
//	v:{shop:Q2x8Yk1vZjRrS3pN}:w:<id>    hash    a queued delivery carrying the visitor's contact details
//	                                             (subject.rectified): i (id), p, e, n, s, c (the chat ids it
//	                                             names: erasing one of them drops it)
//	v:{shop:Q2x8Yk1vZjRrS3pN}:W         set     the keys of those deliveries, purged by an erasure
//
// A chat has its own hash tag, so an operator reaches it by its id alone, and a
// chat without identity is a subject of its own:
//
//	ch:{shop:3q2Yx…}                    hash    t (start ms), sid (bound session), vk/vid (the
//	                                             visitor, empty without identity), url, mk (marketing
//	                                             0|1), name/email/phone (AES-256-GCM "kid:base64",
//	                                             additional data site|field|chat id), pc (earlier chat
//	                                             ids, comma list), br/bv/os/mob/co/rg/ci/tz/rf (device,
//	                                             geo and referrer at the start), wd (queued delivery), w
//	ch:{shop:3q2Yx…}:r                  zset    marketing consent record of a chat without identity
//	ch:{shop:3q2Yx…}:w:<id>             hash    the chat's queued chat.started delivery: i (delivery id), p (sealed
//	                                             body), e (event), n (attempts), s (site)
//	pf:{shop:<keyed hash of subject>}   zset    consent proof of an erased visitor or chat, cut (subject
//	                                             hash, time, choices, policy, text hash, method), scored
//	                                             by expiry; in the subject index as "p:<keyed hash>"
//	e:{shop:<keyed hash of e-mail>}     zset    blind index: "v:<visitor id>" or "c:<chat id>", scored by expiry
//
// Site-level indexes are derived data. The two written on every hit are cut into
// SiteShards shards, each under the hash tag {<site>:<shard>}, so that no Cluster
// node is hot for a busy site (a visitor's live entry is in the shard of its
// vkey; a counter is added to any shard and read as the sum of all):
//
//	lv:{shop:07}                        zset    live set shard: vkey scored by last activity (ms)
//	st:{shop:07}:2026-11-23             hash    per-day anonymous counters shard: tracked, dnt, gpc,
//	                                             bot, no_consent, refusal
//	er:{shop:07}:x                      zset    the shard's recent erasures: SHA-1 (hex) of the vkeys
//	                                             erased within erasedWindow, scored by the erasure (ms), so
//	                                             that no pod's late flush re-adds them to lv:{shop:07}
//	                                             (aggregate.go); TTL erasedWindow
//	fl:{shop:07}:<pod>:<batch>          string  receipt of a pod's counters batch (while RunFlusher
//	                                             runs): a retried batch counts once; TTL receiptTTL
//
// Page views reach these (and sj:{shop} below) through a pod's buffer, flushed
// at least every second (aggregate.go): a page view's own script writes only
// the visitor's slot.
//
// The others share the hash tag {<site>}:
//
//	cfg:retention:{shop}                hash    the site's retention override: sessions, profiles,
//	                                             chats, consents, audit (days), t (saved ms); no TTL
//	cfg:reexpire:{shop}                 string  flag: a window shrank (ms it was set); the re-expiry
//	                                             job applies it and clears it; no TTL
//	cfg:retention:sites                 set     the site ids with a retention override, so that
//	                                             every pod finds them all (no hash tag: one key of
//	                                             all sites, written apart from the site's); no TTL
//	cfg:schema:{shop}                   string  layout version of the site's stored data; when it is
//	                                             older than the code's, the re-expiry job runs one pass
//	                                             that migrates every subject; the job's check of a site
//	                                             without subjects sets it to the code's (no TTL: cfg:)
//
//	sj:{shop}                           zset    subject index the retention job walks: vkeys, "c:<chat
//	                                             id>" of chats without identity and "p:<keyed hash>" of
//	                                             erased subjects' proof, scored by when their data expires
//	                                             (a visitor's ahead by subjectSlack; its profile's ix keeps
//	                                             the score last written); trimmed on write and by the job,
//	                                             expiring with its highest score
//	er:{shop}                           zset    erasures started and not finished (the sweeper's list),
//	                                             ErasureTTL
//	er:{shop}:x                         zset    the site's recent erasures: SHA-1 (hex) of the vkeys
//	                                             erased within erasedWindow, scored by the erasure (ms), so
//	                                             that no pod's late flush re-enters them in sj:{shop}; TTL
//	                                             erasedWindow
//	er:{shop}:o                         hash    what an erasure asked by an actor still owes once its keys
//	                                             are gone, by marker: {"a": actor key id, "c": [chat ids]}
//	                                             (its audit entry and subject.erased), ErasureTTL
//	lk:{shop}:reexpire                  string  the re-expiry job's lock: the owner's token, a lease of
//	                                             reexpireLease renewed every batch
//	ck:{shop}:reexpire                  hash    the job's checkpoint: s, m (score and member of the
//	                                             last subject done), f (the flag's value the pass
//	                                             started under), r (the windows it applies), t0 (its
//	                                             start, Redis time ms); TTL LockTTL, renewed every batch
//	wq:{shop}                           zset    webhook queue: delivery keys scored by next attempt (ms)
//	wh:{shop:<id>}                      hash    a queued delivery of ids only (subject.erased, marketing.withdrawn),
//	                                             which outlives the subject: i, p, e, n, s
//	au:{shop}                           stream  audit trail, ids "<last write ms>-<seq>": t, l (first
//	                                             and last time ms), n (count of folded reads), actor,
//	                                             action, target (keyed hash), ro/rn (a retention
//	                                             change's old and new windows)
//	au:{shop}:f:agent-1|chat.read|<hash> string  the id of the entry the next read of that target by
//	                                             that key folds into (visitor.AuditFold)
//	ls:{shop}:agent-1                   zset    the open live streams of API key agent-1 (its id in the
//	                                             sites file), scored by the end of their lease (ms);
//	                                             expires with the last lease
//	rate:rl:{shop}:chat:<hash>          string  rate-limit counter (redis_rate's GCRA, which adds
//	                                             "rate:"): kinds chat, consent, me, api; hash is the
//	                                             keyed hash of what is counted: the truncated IP, the
//	                                             identity or the API key id (visitor.RateLimitKey)
//
// TTLs (invariant 3): profile and session index `profiles` retention and
// sessions (list and hash) `sessions` retention, from the last write (a hit
// within a session refreshes them, and writes the profile's w, only once the
// last refresh is more than ttlSlackOf ago, at most an hour: data may expire
// that much early, never late); the consent choice until
// it lapses; consent records until the newest record's expiry (older ones are
// trimmed on read and write); tombstones 13 months; the live set 2 ×
// session_timeout; counters 400 days; the records of recent erasures
// erasedWindow and counter receipts receiptTTL; chats `chats` retention from their start;
// the blind index its highest score; webhook deliveries and queue 3 days; the
// audit stream `audit` retention, refreshed on write, and its fold keys
// visitor.AuditFold; rate-limit counters until
// their bucket is full again (at most a minute, set by redis_rate). Only keys
// under cfg: have none.
package redisstore

import (
	"strconv"
	"strings"
	"time"

	"github.com/visitord/visitord/internal/visitor"
)

// TombstoneTTL is visitor.TombstoneTTL, the domain's window of an erased
// visitor's tombstone, under the name tools and tests of the schema use.
const TombstoneTTL = visitor.TombstoneTTL

func visitorPrefix(site, vkey string) string {
	var b strings.Builder
	b.Grow(len(site) + len(vkey) + 5)
	b.WriteString("v:{")
	b.WriteString(site)
	b.WriteByte(':')
	b.WriteString(vkey)
	b.WriteByte('}')
	return b.String()
}

// visitorKeys names the declared keys of one visitor.
type visitorKeys struct {
	profile, sessions, choice, records, tombstone, chats, indexes, withdrawn, deliveries string
	// owed holds the withdrawn chats whose marketing.withdrawn is not queued yet.
	owed string
}

func keysOf(site, vkey string) visitorKeys {
	p := visitorPrefix(site, vkey)
	return visitorKeys{profile: p, sessions: p + ":S", choice: p + ":c", records: p + ":r", tombstone: p + ":t", chats: p + ":C", indexes: p + ":I",
		withdrawn: p + ":M", deliveries: p + ":W", owed: p + ":O"}
}

// hitKeysOf names the four keys hit.lua declares: a page view builds no name
// it does not send (keysOf builds ten).
func hitKeysOf(site, vkey string) visitorKeys {
	p := visitorPrefix(site, vkey)
	return visitorKeys{profile: p, sessions: p + ":S", choice: p + ":c", tombstone: p + ":t"}
}

func sessionKey(profile, sid string) string { return profile + ":s:" + sid }

// sessionMetaKey names the hash of a session record.
func sessionMetaKey(profile, sid string) string { return profile + ":s:" + sid + ":m" }

// SiteShards is how many shards a site's live set and per-day counters are cut
// into: they are written on every hit, so one key each would make one Cluster
// node hot. A visitor's live entry lives in the shard of its key; a counter is
// added to any shard and read as the sum.
const SiteShards = 16

// shardTag is the hash tag of a site's shard: {shop:07}.
func shardTag(site string, shard int) string {
	return "{" + site + ":" + strconv.Itoa(shard/10) + strconv.Itoa(shard%10) + "}"
}

// shardOf is the shard of a visitor key (FNV-1a).
func shardOf(vkey string) int {
	h := uint32(2166136261)
	for i := 0; i < len(vkey); i++ {
		h ^= uint32(vkey[i])
		h *= 16777619
	}
	return int(h % SiteShards)
}

func liveKey(site string, shard int) string { return "lv:" + shardTag(site, shard) }

func statsKey(site string, shard int, day time.Time) string {
	return "st:" + shardTag(site, shard) + ":" + day.UTC().Format(time.DateOnly)
}

// MaxLive bounds a site's live set: past it, the least recently active go.
const MaxLive = 1_000_000

func chatKey(site, chatID string) string { return "ch:{" + site + ":" + chatID + "}" }

func emailKey(site, hash string) string { return "e:{" + site + ":" + hash + "}" }

func queueKey(site string) string { return "wq:{" + site + "}" }

func auditKey(site string) string { return "au:{" + site + "}" }

// auditFoldKey names the entry that repeated reads of target by actor fold into.
func auditFoldKey(site, actor, action, target string) string {
	return auditKey(site) + ":f:" + actor + "|" + action + "|" + target
}

// LockTTL is the lifetime of locks and job checkpoints.
const LockTTL = 10 * time.Minute

// ErasureTTL is the lifetime of the markers of unfinished erasures: one owes a
// subject.erased delivery, so it lasts as long as a queued delivery would.
const ErasureTTL = visitor.WebhookTTL

func subjectsKey(site string) string { return "sj:{" + site + "}" }

func erasuresKey(site string) string { return "er:{" + site + "}" }

// erasedKey names the site's recent erasures, beside the subject index.
func erasedKey(site string) string { return "er:{" + site + "}:x" }

// erasedShardKey names a shard's recent erasures, beside its live set.
func erasedShardKey(site string, shard int) string { return "er:" + shardTag(site, shard) + ":x" }

// receiptKey names the receipt of a pod's counters batch on a shard.
func receiptKey(site string, shard int, pod string, batch uint64) string {
	return "fl:" + shardTag(site, shard) + ":" + pod + ":" + strconv.FormatUint(batch, 10)
}

func erasuresOwedKey(site string) string { return "er:{" + site + "}:o" }

// proofKey names the cut consent proof of an erased chat by its keyed hash.
func proofKey(site, subject string) string { return "pf:{" + site + ":" + subject + "}" }

func hookKey(site, id string) string { return "wh:{" + site + ":" + id + "}" }

func retentionKey(site string) string { return "cfg:retention:{" + site + "}" }

// reexpireKey flags a site whose retention shrank: the re-expiry job applies the
// new windows to data already stored. A cfg: key: no TTL, no personal data.
func reexpireKey(site string) string { return "cfg:reexpire:{" + site + "}" }

// retentionSitesKey names the set of the sites with a retention override
// (SaveRetention adds to it), so that Retentions finds every override. A cfg:
// key: no TTL, no personal data.
const retentionSitesKey = "cfg:retention:sites"

func reexpireLockKey(site string) string { return "lk:{" + site + "}:reexpire" }

func reexpireCheckpointKey(site string) string { return "ck:{" + site + "}:reexpire" }

// streamsKey names the places of one API key's open live streams on a site.
func streamsKey(site, keyID string) string { return "ls:{" + site + "}:" + keyID }

// schemaKey holds the layout version of a site's stored data (schemaVersion).
// A cfg: key: no TTL, no personal data.
func schemaKey(site string) string { return "cfg:schema:{" + site + "}" }

// LiveKeyOf names the live-set shard that holds a visitor's entry (for tests and
// tools that read the schema).
func LiveKeyOf(site, vkey string) string { return liveKey(site, shardOf(vkey)) }

// StatsKeys names every shard of a site's counters of day.
func StatsKeys(site string, day time.Time) []string {
	keys := make([]string, SiteShards)
	for i := range keys {
		keys[i] = statsKey(site, i, day)
	}
	return keys
}

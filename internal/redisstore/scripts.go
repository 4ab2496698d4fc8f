package redisstore

import (
	"embed"
	"strings"

	"github.com/redis/go-redis/v9"
)

// luaFiles holds every script (one per file) and the libraries they share
// (lib_*.lua). Each file opens with a header listing its KEYS, ARGV and reply.
//
//go:embed *.lua
var luaFiles embed.FS

// script is a declared Lua script: its file's source after its libraries'.
type script struct {
	file string
	*redis.Script
}

// declared lists every script declare made, in order: LoadScripts loads them
// all, so no script can be declared and not preloaded.
var declared []*script

// declare returns the script of file, the libraries libs put before it, and
// registers it for LoadScripts. A missing file is a build mistake (the files
// are embedded), so it panics at start.
func declare(file string, libs ...string) *script {
	var b strings.Builder
	for _, name := range append(libs, file) {
		src, err := luaFiles.ReadFile(name)
		if err != nil {
			panic("redisstore: " + err.Error())
		}
		b.Write(src)
		b.WriteByte('\n')
	}
	s := &script{file: file, Script: redis.NewScript(b.String())}
	declared = append(declared, s)
	return s
}

// sessionFields are the fields of a session hash: ss (start ms), sl (last
// activity ms), ps (current page start ms), pc (1: current page closed by a
// leave), np (page views of the session, counted past MaxSessionPages), cu/ct
// (current page's URL and title, for the live view), rf (referrer), br/bv/os/mob
// (device), co/rg/ci/tz (location), ip (as the site's ip mode keeps it).
var sessionFields = []string{"ss", "sl", "ps", "pc", "np", "cu", "ct", "rf", "br", "bv", "os", "mob", "co", "rg", "ci", "tz", "ip"}

// MaxSessionPages is how many pages a session stores (DESIGN.md invariant 5):
// later page views are counted in np, not stored.
const MaxSessionPages = 500

// hitScript records a page view, heartbeat or leave on the visitor's slot. It is
// the source of truth: it refuses an erased visitor and a missing grant, opens a
// session after session_timeout of inactivity or session_max, and closes the time
// on the current page (capped at session_timeout). What the session observes
// goes to the session record; the profile gets only vid, sid, ns, fs and w.
var hitScript = declare("hit.lua", "lib_session.lua")

// siteScript updates the site-level indexes of one hit in one command on one
// shard: the live set (add, or remove) and a per-day counter (add and, for a
// correction, take back another).
var siteScript = declare("site_index.lua")

// forgetScript deletes a visitor's behaviour data: every session, the session
// index and the profile. Consent records and the choice stay as proof.
var forgetScript = declare("forget.lua", "lib_forget.lua")

// consentScript writes a consent record and the choice it makes; with forget it
// deletes the visitor's behaviour data too; with withdraw it withdraws the
// marketing permission of every chat of the visitor (adds the chat ids to the
// withdrawn set, which expires with the chat index, and to the set of those
// whose marketing.withdrawn is owed). Refuses an erased visitor.
var consentScript = declare("consent.lua", "lib_forget.lua")

// bindChatScript reads what a chat of the visitor binds to: the open session,
// the device, location and referrer of the current session's record, and the
// earlier chats.
var bindChatScript = declare("bind_chat.lua", "lib_session.lua")

// liveScript reads a live visitor's current session: the profile's current
// session id and that session's hash.
var liveScript = declare("live.lua", "lib_session.lua")

// migrateScript moves what a profile written before the session record held
// the session's data into that record (sessionLua's migrate).
var migrateScript = declare("migrate.lua", "lib_session.lua")

// putHashScript writes a hash whole and its absolute expiry.
var putHashScript = declare("put_hash.lua")

// chatIndexScript adds a chat to its visitor's chat index and, for a marketing
// opt-in, the consent record and the marketing flag of the current choice.
var chatIndexScript = declare("chat_index.lua", "lib_record.lua")

// recordScript adds a consent record to a subject's records.
var recordScript = declare("record.lua", "lib_record.lua")

// blindIndexScript adds a subject to an e-mail's blind index: a zset of subject
// ids scored by expiry, trimmed on write, expiring with its highest score.
var blindIndexScript = declare("blind_index.lua")

// queueScript schedules a webhook delivery on the site's queue.
var queueScript = declare("queue.lua")

// claimScript claims the due deliveries of a queue: it leases each by moving its
// score to now + lease, so another pod does not send it at the same time.
var claimScript = declare("claim.lua")

// retryScript records a delivery's attempts, unless it was erased meanwhile.
var retryScript = declare("retry.lua")

// subjectScript enters a subject in the site's subject index, scored by the
// expiry of its data (a score only ever grows), or removes it; it trims the
// subjects whose data has expired and expires the index with its highest score.
var subjectScript = declare("subject.lua")

// eraseChatScript deletes a chat and its queued delivery; the caller cuts its
// consent records first. The delivery key (wd) shares the chat's hash tag.
var eraseChatScript = declare("erase_chat.lua")

// enqueueScript writes a queued delivery whole with its absolute expiry and,
// for one kept with a visitor, enters it in the visitor's delivery set (same
// hash tag), which lasts as long as its newest delivery.
var enqueueScript = declare("enqueue.lua")

// purgeScript deletes the deliveries a visitor's delivery set names (keys of the
// set's hash tag) and the set.
var purgeScript = declare("purge.lua")

// purgeChatScript deletes the deliveries of a visitor's delivery set that name
// a chat (field c, a comma list of chat ids; one without it, written before
// the field was, goes too: it may) and takes them out of the set.
var purgeChatScript = declare("purge_chat.lua")

// replaceRecordsScript replaces a records zset whole (consent records cut to
// their proof after an erasure), expiring it with its newest record.
var replaceRecordsScript = declare("replace_records.lua")

// rectifyScript rewrites fields of a chat that still exists.
var rectifyScript = declare("rectify.lua")

// replaceSetScript replaces a set whole and sets its absolute expiry.
var replaceSetScript = declare("replace_set.lua")

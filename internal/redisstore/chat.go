package redisstore

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/visitord/visitord/internal/visitor"
)

// bindChatScript reads what a chat of the visitor binds to: the open session,
// the current session's device, location and referrer, and the earlier chats
// (bind_chat.lua).
var bindChatScript = declare("bind_chat.lua", "lib_session.lua")

// bindChatArgs are bind_chat.lua's KEYS and ARGV by name.
type bindChatArgs struct {
	keys           visitorKeys
	now            time.Time
	sessionTimeout time.Duration
}

func (a bindChatArgs) call() *call {
	return &call{script: bindChatScript, keys: []string{a.keys.profile, a.keys.tombstone, a.keys.chats},
		args: []any{ms(a.now), a.sessionTimeout.Milliseconds()}}
}

// bindChatReply is bind_chat.lua's reply.
type bindChatReply struct {
	erased  bool
	binding visitor.ChatBinding
}

// decodeBindChat reads bind_chat.lua's reply.
func decodeBindChat(c *call) (bindChatReply, error) {
	v := c.cmd.Val()
	if s, ok := v.(string); ok && s == "erased" {
		return bindChatReply{erased: true}, nil
	}
	items, ok := v.([]any)
	if !ok || len(items) < 10 {
		return bindChatReply{}, fmt.Errorf("unexpected bind chat script answer %T", v)
	}
	str := func(i int) string { s, _ := items[i].(string); return s }
	b := visitor.ChatBinding{
		SessionID: str(0),
		Device:    visitor.Device{Browser: str(1), Version: str(2), OS: str(3), Mobile: str(4) == "1"},
		Location:  visitor.Location{Country: str(5), Region: str(6), City: str(7), TimeZone: str(8)},
		Referrer:  str(9),
	}
	for i := 10; i < len(items); i++ {
		b.Previous = append(b.Previous, str(i))
	}
	return bindChatReply{binding: b}, nil
}

// putHashScript writes a hash whole and its absolute expiry (put_hash.lua).
var putHashScript = declare("put_hash.lua")

// putHashArgs are put_hash.lua's KEYS and ARGV by name.
type putHashArgs struct {
	key      string
	expireAt time.Time
	fields   []any // field, value pairs
}

func (a putHashArgs) call() *call {
	args := make([]any, 0, 1+len(a.fields))
	args = append(args, ms(a.expireAt))
	return &call{script: putHashScript, keys: []string{a.key}, args: append(args, a.fields...)}
}

// chatIndexScript adds a chat to its visitor's chat index with, for a
// marketing opt-in, the consent record (chat_index.lua).
var chatIndexScript = declare("chat_index.lua", "lib_record.lua")

// chatIndexArgs are chat_index.lua's KEYS and ARGV by name.
type chatIndexArgs struct {
	keys          visitorKeys
	chatID        string
	start         time.Time
	indexExpireAt time.Time
	record        string // JSON; "" for none
	recordExpiry  time.Time
	now           time.Time
	blindIndex    string // the e-mail's blind-index key the visitor enters; "" for none
}

func (a chatIndexArgs) call() *call {
	return &call{script: chatIndexScript, keys: []string{a.keys.chats, a.keys.records, a.keys.choice, a.keys.indexes},
		args: []any{a.chatID, ms(a.start), ms(a.indexExpireAt), a.record, ms(a.recordExpiry), ms(a.now), a.blindIndex}}
}

// recordScript adds a consent record to a subject's records (record.lua).
var recordScript = declare("record.lua", "lib_record.lua")

// recordArgs are record.lua's KEYS and ARGV by name.
type recordArgs struct {
	key         string
	record      string // JSON
	expiry, now time.Time
}

func (a recordArgs) call() *call {
	return &call{script: recordScript, keys: []string{a.key}, args: []any{a.record, ms(a.expiry), ms(a.now)}}
}

// blindIndexScript adds a subject to an e-mail's blind index (blind_index.lua).
var blindIndexScript = declare("blind_index.lua")

// blindIndexArgs are blind_index.lua's KEYS and ARGV by name.
type blindIndexArgs struct {
	key         string
	member      string // "v:<visitor id>" or "c:<chat id>"
	expiry, now time.Time
}

func (a blindIndexArgs) call() *call {
	return &call{script: blindIndexScript, keys: []string{a.key}, args: []any{a.member, ms(a.expiry), ms(a.now)}}
}

// BindChat reads the visitor's open session and earlier chats in one script.
func (s *Store) BindChat(ctx context.Context, site *visitor.Site, vkey string, now time.Time) (visitor.ChatBinding, error) {
	c := bindChatArgs{keys: keysOf(site.ID, vkey), now: now, sessionTimeout: site.SessionTimeout}.call()
	if err := s.run(ctx, c); err != nil {
		return visitor.ChatBinding{}, fmt.Errorf("bind chat: %w", err)
	}
	res, err := decodeBindChat(c)
	if err != nil {
		return visitor.ChatBinding{}, fmt.Errorf("bind chat: %w", err)
	}
	if res.erased {
		return visitor.ChatBinding{}, fmt.Errorf("bind chat: %w", visitor.ErrErased)
	}
	return res.binding, nil
}

// SaveChat writes a chat, its visitor's chat index (with a marketing consent
// record), its e-mail's blind index entry and its queued webhook in one
// pipeline: one command per slot involved.
func (s *Store) SaveChat(ctx context.Context, w visitor.ChatWrite) error {
	site, b := w.Site, w.Binding
	ck := chatKey(site.ID, w.ChatID)
	chatsUntil := w.Start.Add(days(w.Retention.Chats))
	fields := []any{
		"t", ms(w.Start), "sid", b.SessionID, "vk", w.VisitorKey, "vid", w.VisitorID, "url", w.URL,
		"mk", bit(w.Marketing), "name", w.Name, "email", w.Email, "phone", w.Phone,
		"pc", strings.Join(b.Previous, ","), "br", b.Device.Browser, "bv", b.Device.Version, "os", b.Device.OS,
		"mob", bit(b.Device.Mobile), "co", b.Location.Country, "rg", b.Location.Region, "ci", b.Location.City,
		"tz", b.Location.TimeZone, "rf", b.Referrer, "w", ms(w.Start),
	}
	var record string
	if w.MarketingRecord != nil {
		var err error
		if record, err = recordJSON(*w.MarketingRecord); err != nil {
			return fmt.Errorf("save chat: %w", err)
		}
	}
	recordUntil := w.Start.Add(days(w.Retention.Consents))
	var calls []*call
	if w.Webhook != nil {
		dkey := ck + ":w:" + w.Webhook.ID
		fields = append(fields, "wd", dkey)
		calls = append(calls,
			putHashArgs{key: dkey, expireAt: w.Start.Add(visitor.WebhookTTL),
				fields: []any{"i", w.Webhook.ID, "p", w.Webhook.Sealed, "e", w.Webhook.Event, "n", 0, "s", site.ID}}.call(),
			queueArgs{key: queueKey(site.ID), delivery: dkey, due: w.Start, ttl: visitor.WebhookTTL}.call())
	}
	var ekey string
	if w.EmailIndex != "" {
		ekey = emailKey(site.ID, w.EmailIndex)
		fields = append(fields, "ei", ekey)
	}
	calls = append(calls, putHashArgs{key: ck, expireAt: chatsUntil, fields: fields}.call())
	member, subject := "c:"+w.ChatID, "c:"+w.ChatID
	if w.VisitorKey != "" {
		member, subject = "v:"+w.VisitorID, w.VisitorKey
		calls = append(calls, chatIndexArgs{keys: keysOf(site.ID, w.VisitorKey), chatID: w.ChatID, start: w.Start,
			indexExpireAt: chatsUntil, record: record, recordExpiry: recordUntil, now: w.Start, blindIndex: ekey}.call())
	} else if record != "" {
		calls = append(calls, recordArgs{key: ck + ":r", record: record, expiry: recordUntil, now: w.Start}.call())
	}
	// The subject (a visitor, or a chat without identity, a subject of its own)
	// enters the index the retention job walks.
	until := chatsUntil
	if record != "" {
		until = w.Start.Add(days(max(w.Retention.Chats, w.Retention.Consents)))
	}
	calls = append(calls, subjectCall(site.ID, subject, until, w.Start))
	if ekey != "" {
		calls = append(calls, blindIndexArgs{key: ekey, member: member, expiry: chatsUntil, now: w.Start}.call())
	}
	on, release := s.durable()
	defer release()
	if err := runOn(ctx, on, calls...); err != nil {
		return fmt.Errorf("save chat: %w", err)
	}
	return s.waitReplicas(ctx, on)
}

// Chat returns a stored chat, its contacts still sealed.
func (s *Store) Chat(ctx context.Context, site *visitor.Site, chatID string) (visitor.StoredChat, error) {
	m, err := s.c.HGetAll(ctx, chatKey(site.ID, chatID)).Result()
	if err != nil {
		return visitor.StoredChat{}, fmt.Errorf("chat: %w", translate(err))
	}
	if len(m) == 0 {
		return visitor.StoredChat{}, fmt.Errorf("chat: %w", visitor.ErrNotFound)
	}
	c := storedChat(chatID, m)
	if c.Marketing && c.VisitorKey != "" {
		// The visitor may have withdrawn the opt-in since (SaveConsent).
		withdrawn, err := s.c.SIsMember(ctx, keysOf(site.ID, c.VisitorKey).withdrawn, chatID).Result()
		if err != nil {
			return visitor.StoredChat{}, fmt.Errorf("chat: %w", translate(err))
		}
		c.Marketing = !withdrawn
	}
	return c, nil
}

// storedChat decodes a chat hash.
func storedChat(chatID string, m map[string]string) visitor.StoredChat {
	c := visitor.StoredChat{
		ID: chatID, VisitorID: m["vid"], VisitorKey: m["vk"], Start: msTime(m["t"]), SessionID: m["sid"],
		URL: m["url"], Marketing: m["mk"] == "1", Name: m["name"], Email: m["email"], Phone: m["phone"],
		Device:   visitor.Device{Browser: m["br"], Version: m["bv"], OS: m["os"], Mobile: m["mob"] == "1"},
		Location: visitor.Location{Country: m["co"], Region: m["rg"], City: m["ci"], TimeZone: m["tz"]},
		Referrer: m["rf"],
	}
	if m["pc"] != "" {
		c.Previous = strings.Split(m["pc"], ",")
	}
	return c
}

// Trail returns a session's pages, oldest first: at most MaxSessionPages (a list
// written before the cap may hold more; the first are shown).
func (s *Store) Trail(ctx context.Context, site *visitor.Site, vkey, sid string) ([]visitor.PageVisit, error) {
	// The list's first item is its header.
	items, err := s.c.LRange(ctx, sessionKey(keysOf(site.ID, vkey).profile, sid), 0, MaxSessionPages).Result()
	if err != nil {
		return nil, fmt.Errorf("trail: %w", translate(err))
	}
	out := parseTrail(items)
	if len(out) > MaxSessionPages {
		out = out[:MaxSessionPages]
	}
	return out, nil
}

// parseTrail decodes a session list: the record ("#" first), then "start\tduration\turl\ttitle" items.
func parseTrail(items []string) []visitor.PageVisit {
	var out []visitor.PageVisit
	for _, it := range items {
		if strings.HasPrefix(it, "#") {
			continue
		}
		f := strings.SplitN(it, "\t", 4)
		if len(f) != 4 {
			continue
		}
		d, _ := strconv.ParseInt(f[1], 10, 64)
		out = append(out, visitor.PageVisit{Start: msTime(f[0]), Duration: time.Duration(d) * time.Millisecond, URL: f[2], Title: f[3]})
	}
	return out
}

package redisstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
)

// BindChat reads the visitor's open session and earlier chats in one script.
func (s *Store) BindChat(ctx context.Context, site *visitor.Site, vkey string, now time.Time) (visitor.ChatBinding, error) {
	k := keysOf(site.ID, vkey)
	v, err := bindChatScript.Run(ctx, s.c, []string{k.profile, k.tombstone, k.chats}, ms(now), site.SessionTimeout.Milliseconds()).Result()
	if err != nil {
		return visitor.ChatBinding{}, fmt.Errorf("bind chat: %w", translate(err))
	}
	if str, ok := v.(string); ok && str == "erased" {
		return visitor.ChatBinding{}, fmt.Errorf("bind chat: %w", visitor.ErrErased)
	}
	items, ok := v.([]any)
	if !ok || len(items) < 10 {
		return visitor.ChatBinding{}, fmt.Errorf("bind chat: unexpected script answer %T", v)
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
	return b, nil
}

func recordJSON(r visitor.ConsentRecord) (string, error) {
	b, err := json.Marshal(consentRecordJSON{
		VisitorID: r.VisitorID, Time: r.Time, Analytics: r.Analytics, Marketing: r.Marketing,
		PolicyVersion: r.PolicyVersion, TextSHA256: r.TextSHA256, Method: r.Method, IP: r.IP, UserAgent: r.UserAgent,
	})
	return string(b), err
}

// SaveChat writes a chat, its visitor's chat index (with a marketing consent
// record), its e-mail's blind index entry and its queued webhook in one
// pipeline: one command per slot involved.
func (s *Store) SaveChat(ctx context.Context, w visitor.ChatWrite) error {
	site, b := w.Site, w.Binding
	ck := chatKey(site.ID, w.ChatID)
	chatsUntil := w.Start.Add(days(w.Retention.Chats))
	fields := []any{ms(chatsUntil),
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
	recordUntil := ms(w.Start.Add(days(w.Retention.Consents)))
	var calls []*call
	var dkey string
	if w.Webhook != nil {
		dkey = ck + ":w:" + w.Webhook.ID
		fields = append(fields, "wd", dkey)
		calls = append(calls,
			&call{script: putHashScript, keys: []string{dkey}, args: []any{ms(w.Start.Add(WebhookTTL)),
				"i", w.Webhook.ID, "p", w.Webhook.Sealed, "e", w.Webhook.Event, "n", 0, "s", site.ID}},
			&call{script: queueScript, keys: []string{queueKey(site.ID)}, args: []any{dkey, ms(w.Start), WebhookTTL.Milliseconds()}})
	}
	var ekey string
	if w.EmailIndex != "" {
		ekey = emailKey(site.ID, w.EmailIndex)
		fields = append(fields, "ei", ekey)
	}
	calls = append(calls, &call{script: putHashScript, keys: []string{ck}, args: fields})
	member, subject := "c:"+w.ChatID, "c:"+w.ChatID
	if w.VisitorKey != "" {
		k := keysOf(site.ID, w.VisitorKey)
		member, subject = "v:"+w.VisitorID, w.VisitorKey
		calls = append(calls, &call{script: chatIndexScript, keys: []string{k.chats, k.records, k.choice, k.indexes},
			args: []any{w.ChatID, ms(w.Start), ms(chatsUntil), record, recordUntil, ms(w.Start), ekey}})
	} else if record != "" {
		calls = append(calls, &call{script: recordScript, keys: []string{ck + ":r"}, args: []any{record, recordUntil, ms(w.Start)}})
	}
	// The subject (a visitor, or a chat without identity, a subject of its own)
	// enters the index the retention job walks.
	until := chatsUntil
	if record != "" {
		until = w.Start.Add(days(max(w.Retention.Chats, w.Retention.Consents)))
	}
	calls = append(calls, subjectCall(site.ID, subject, until, w.Start))
	if ekey != "" {
		calls = append(calls, &call{script: blindIndexScript, keys: []string{ekey},
			args: []any{member, ms(chatsUntil), ms(w.Start)}})
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

// parseTrail decodes a session list: a "#" header, then "start\tduration\turl\ttitle" items.
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

// Live returns the sessions active since, most recent first, from pos on,
// merged across the live set's shards. Entries whose visitor has gone are
// dropped from the live set as they are met (read repair).
func (s *Store) Live(ctx context.Context, site *visitor.Site, since time.Time, pos visitor.LivePos, limit int) ([]visitor.LiveEntry, *visitor.LivePos, error) {
	max := "+inf"
	if pos.Before > 0 {
		max = strconv.FormatInt(pos.Before, 10)
	}
	pipe := s.c.Pipeline()
	shards := make([]*redis.ZSliceCmd, SiteShards)
	for i := range shards {
		shards[i] = pipe.ZRevRangeByScoreWithScores(ctx, liveKey(site.ID, i), &redis.ZRangeBy{
			Min: strconv.FormatInt(ms(since), 10), Max: max, Count: int64(limit + pos.Skip + 1),
		})
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, nil, fmt.Errorf("live: %w", translate(err))
	}
	type entry struct {
		score int64
		vkey  string
		shard int
	}
	var all []entry
	for i, cmd := range shards {
		for _, z := range cmd.Val() {
			m, _ := z.Member.(string)
			all = append(all, entry{score: int64(z.Score), vkey: m, shard: i})
		}
	}
	// Most recent first; ties in a fixed order, so that a position can skip them.
	sort.Slice(all, func(a, b int) bool {
		if all[a].score != all[b].score {
			return all[a].score > all[b].score
		}
		return all[a].vkey > all[b].vkey
	})
	skip := 0
	for skip < pos.Skip && skip < len(all) && all[skip].score == pos.Before {
		skip++
	}
	all = all[skip:]
	var next *visitor.LivePos
	if len(all) > limit {
		all = all[:limit]
		last := all[len(all)-1].score
		n := 0
		for _, e := range all {
			if e.score == last {
				n++
			}
		}
		if last == pos.Before {
			n += skip
		}
		next = &visitor.LivePos{Before: last, Skip: n}
	}
	calls := make([]*call, len(all))
	for i, e := range all {
		calls[i] = &call{script: liveScript, keys: []string{keysOf(site.ID, e.vkey).profile}}
	}
	if err := s.run(ctx, calls...); err != nil {
		return nil, nil, fmt.Errorf("live: %w", err)
	}
	repair := s.c.Pipeline()
	rows := make([]visitor.LiveEntry, 0, len(all))
	for i, c := range calls {
		v, _ := c.cmd.Slice()
		str := func(j int) string { s, _ := v[j].(string); return s }
		if len(v) != 15 || str(0) == "" {
			repair.ZRem(ctx, liveKey(site.ID, all[i].shard), all[i].vkey)
			continue
		}
		last := msTime(str(2))
		if last.Before(since) {
			continue // the session went quiet since the live entry was written
		}
		np, _ := strconv.Atoi(str(3))
		rows = append(rows, visitor.LiveEntry{
			SessionID: str(0), SessionStart: msTime(str(1)), LastSeen: last, Pages: np,
			CurrentURL: str(4), CurrentTitle: str(5),
			Location: visitor.Location{Country: str(6), Region: str(7), City: str(8), TimeZone: str(9)},
			Device:   visitor.Device{Browser: str(10), Version: str(11), OS: str(12), Mobile: str(13) == "1"},
			Referrer: str(14),
		})
	}
	if repair.Len() > 0 {
		if _, err := repair.Exec(ctx); err != nil {
			return nil, nil, fmt.Errorf("live repair: %w", translate(err))
		}
	}
	return rows, next, nil
}

// Stats returns a site's per-day counters: the sum of its shards.
func (s *Store) Stats(ctx context.Context, site *visitor.Site, day time.Time) (map[string]int64, error) {
	pipe := s.c.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, SiteShards)
	for i := range cmds {
		cmds[i] = pipe.HGetAll(ctx, statsKey(site.ID, i, day))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("stats: %w", translate(err))
	}
	out := map[string]int64{}
	for _, cmd := range cmds {
		for k, v := range cmd.Val() {
			n, _ := strconv.ParseInt(v, 10, 64)
			out[k] += n
		}
	}
	return out, nil
}

// StatsDays returns a site's per-day counters of each of days, in their order:
// every shard of every day in one pipeline.
func (s *Store) StatsDays(ctx context.Context, site *visitor.Site, days []time.Time) ([]map[string]int64, error) {
	pipe := s.c.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, 0, len(days)*SiteShards)
	for _, day := range days {
		for i := range SiteShards {
			cmds = append(cmds, pipe.HGetAll(ctx, statsKey(site.ID, i, day)))
		}
	}
	if len(cmds) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("stats: %w", translate(err))
		}
	}
	out := make([]map[string]int64, len(days))
	for d := range days {
		m := map[string]int64{}
		for _, cmd := range cmds[d*SiteShards : (d+1)*SiteShards] {
			for k, v := range cmd.Val() {
				n, _ := strconv.ParseInt(v, 10, 64)
				m[k] += n
			}
		}
		out[d] = m
	}
	return out, nil
}

package redisstore

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/visitord/visitord/internal/visitor"
)

// consentScript writes a consent record and the choice it makes, forgetting
// behaviour data and withdrawing chats' marketing permission when asked
// (consent.lua).
var consentScript = declare("consent.lua", "lib_forget.lua")

// consentArgs are consent.lua's KEYS and ARGV by name.
type consentArgs struct {
	keys         visitorKeys
	choice       visitor.Choice
	record       string // JSON (recordJSON)
	recordExpiry time.Time
	now          time.Time
	// choiceExpiry is when the choice's key goes (choiceExpiry).
	choiceExpiry      time.Time
	forget            bool
	withdrawMarketing bool
	unlessChanged     bool
}

func (a consentArgs) call() *call {
	k, c := a.keys, a.choice
	return &call{script: consentScript,
		keys: []string{k.choice, k.records, k.tombstone, k.profile, k.sessions, k.chats, k.withdrawn, k.owed},
		args: []any{
			bit(c.Analytics), bit(c.Marketing), c.PolicyVersion, ms(c.Given), ms(c.ValidUntil),
			a.record, ms(a.recordExpiry), ms(a.now), bit(a.forget), ms(a.choiceExpiry),
			bit(a.withdrawMarketing), bit(a.unlessChanged),
		}}
}

// consentReply is consent.lua's reply: the visitor is erased, the choice in
// force was the same (nothing written), or the written choice left owed the
// marketing.withdrawn of these chats (sorted).
type consentReply struct {
	erased, same bool
	owed         []string
}

// decodeConsent reads consent.lua's reply.
func decodeConsent(c *call) (consentReply, error) {
	switch v := c.cmd.Val().(type) {
	case string:
		switch v {
		case "erased":
			return consentReply{erased: true}, nil
		case "same":
			return consentReply{same: true}, nil
		}
		return consentReply{}, fmt.Errorf("unexpected consent script answer %q", v)
	case []any:
		owed := make([]string, 0, len(v))
		for _, id := range v {
			s, ok := id.(string)
			if !ok {
				return consentReply{}, fmt.Errorf("unexpected consent script answer item %T", id)
			}
			owed = append(owed, s)
		}
		sort.Strings(owed)
		return consentReply{owed: owed}, nil
	}
	return consentReply{}, fmt.Errorf("unexpected consent script answer %T", c.cmd.Val())
}

// forgetScript deletes a visitor's behaviour data; consent records and the
// choice stay as proof (forget.lua).
var forgetScript = declare("forget.lua", "lib_forget.lua")

// forgetArgs are forget.lua's KEYS by name; it takes no ARGV.
type forgetArgs struct{ keys visitorKeys }

func (a forgetArgs) call() *call {
	return &call{script: forgetScript, keys: []string{a.keys.profile, a.keys.sessions}}
}

// ConsentChoice returns the visitor's current consent choice.
func (s *Store) ConsentChoice(ctx context.Context, site *visitor.Site, vkey string) (visitor.Choice, bool, error) {
	v, err := s.c.HMGet(ctx, keysOf(site.ID, vkey).choice, "a", "m", "pv", "t", "u").Result()
	if err != nil {
		return visitor.Choice{}, false, fmt.Errorf("consent choice: %w", translate(err))
	}
	if v[0] == nil {
		return visitor.Choice{}, false, nil
	}
	str := func(i int) string { s, _ := v[i].(string); return s }
	return visitor.Choice{
		Analytics: str(0) == "1", Marketing: str(1) == "1", PolicyVersion: str(2),
		Given: msTime(str(3)), ValidUntil: msTime(str(4)),
	}, true, nil
}

// consentRecordJSON is how a consent record is kept (and exported).
type consentRecordJSON struct {
	VisitorID     string    `json:"visitor_id,omitempty"`
	Subject       string    `json:"subject,omitempty"` // keyed hash, after an erasure
	Time          time.Time `json:"time"`
	Analytics     *bool     `json:"analytics,omitempty"` // absent: not asked
	Marketing     *bool     `json:"marketing,omitempty"`
	PolicyVersion string    `json:"policy_version"`
	TextSHA256    string    `json:"text_sha256"`
	Method        string    `json:"method"`
	IP            string    `json:"ip,omitempty"`
	UserAgent     string    `json:"user_agent,omitempty"`
}

// recordJSON is how r is kept.
func recordJSON(r visitor.ConsentRecord) (string, error) {
	b, err := json.Marshal(consentRecordJSON{
		VisitorID: r.VisitorID, Subject: r.Subject, Time: r.Time, Analytics: r.Analytics, Marketing: r.Marketing,
		PolicyVersion: r.PolicyVersion, TextSHA256: r.TextSHA256, Method: r.Method, IP: r.IP, UserAgent: r.UserAgent,
	})
	return string(b), err
}

// parseRecord reads a kept consent record.
func parseRecord(member string) (visitor.ConsentRecord, bool) {
	var r consentRecordJSON
	if err := json.Unmarshal([]byte(member), &r); err != nil {
		return visitor.ConsentRecord{}, false
	}
	return visitor.ConsentRecord{
		VisitorID: r.VisitorID, Subject: r.Subject, Time: r.Time, Analytics: r.Analytics, Marketing: r.Marketing,
		PolicyVersion: r.PolicyVersion, TextSHA256: r.TextSHA256, Method: r.Method, IP: r.IP, UserAgent: r.UserAgent,
	}, true
}

// SaveConsent writes a consent record and the choice it makes in one script on
// the visitor's slot; a refusal also deletes behaviour data and the live entry,
// a marketing withdrawal withdraws the permission of the visitor's chats (the
// ids returned) in the same script. With WithMinReplicas it returns once that
// many replicas hold the write.
func (s *Store) SaveConsent(ctx context.Context, w visitor.ConsentWrite) ([]string, error) {
	r := w.Record
	rec, err := recordJSON(r)
	if err != nil {
		return nil, fmt.Errorf("save consent: %w", err)
	}
	recordExpiry := r.Time.Add(days(w.Retention.Consents))
	save := consentArgs{
		keys: keysOf(w.Site.ID, w.VisitorKey), choice: w.Choice, record: rec, recordExpiry: recordExpiry,
		now: r.Time, choiceExpiry: choiceExpiry(w), forget: w.Forget,
		withdrawMarketing: w.WithdrawMarketing, unlessChanged: w.UnlessChanged,
	}.call()
	calls := []*call{save, subjectCall(w.Site.ID, w.VisitorKey, recordExpiry, r.Time)}
	if w.Forget {
		// The live entry goes from this pod's buffer too; another pod's late
		// flush is dropped when the live view reads it (read repair).
		s.forgetBuffered(w.Site.ID, w.VisitorKey)
		calls = append(calls, s.siteCall(w.Site, w.VisitorKey, r.Time, liveRemove, w.Count, ""))
	} else if w.Count != "" {
		calls = append(calls, s.siteCall(w.Site, "", r.Time, liveNone, w.Count, ""))
	}
	on, release := s.durable()
	defer release()
	if err := runOn(ctx, on, calls...); err != nil {
		return nil, fmt.Errorf("save consent: %w", err)
	}
	res, err := decodeConsent(save)
	switch {
	case err != nil:
		return nil, fmt.Errorf("save consent: %w", err)
	case res.erased:
		return nil, fmt.Errorf("save consent: %w", visitor.ErrErased)
	case res.same:
		return nil, fmt.Errorf("save consent: %w", visitor.ErrUnchanged)
	}
	return res.owed, s.waitReplicas(ctx, on)
}

// choiceExpiry is when a choice's key goes: a grant when it lapses; a refusal
// not before every identity it replaced has expired, so a replayed old token
// stays refused.
func choiceExpiry(w visitor.ConsentWrite) time.Time {
	until := w.Choice.ValidUntil
	if !w.Choice.Analytics {
		if idEnd := w.Record.Time.Add(visitor.MaxCookieLifetime); idEnd.After(until) {
			until = idEnd
		}
	}
	return until
}

// OwedWithdrawals returns the chats of a visitor whose marketing.withdrawn is
// owed (a withdrawal written, its delivery not queued), sorted.
func (s *Store) OwedWithdrawals(ctx context.Context, site *visitor.Site, vkey string) ([]string, error) {
	ids, err := s.c.SMembers(ctx, keysOf(site.ID, vkey).owed).Result()
	if err != nil {
		return nil, fmt.Errorf("owed withdrawals: %w", translate(err))
	}
	sort.Strings(ids)
	return ids, nil
}

// SettleWithdrawals records that the marketing.withdrawn of chatIDs is queued.
func (s *Store) SettleWithdrawals(ctx context.Context, site *visitor.Site, vkey string, chatIDs []string) error {
	if len(chatIDs) == 0 {
		return nil
	}
	members := make([]any, len(chatIDs))
	for i, id := range chatIDs {
		members[i] = id
	}
	if err := s.c.SRem(ctx, keysOf(site.ID, vkey).owed, members...).Err(); err != nil {
		return fmt.Errorf("settle withdrawals: %w", translate(err))
	}
	return nil
}

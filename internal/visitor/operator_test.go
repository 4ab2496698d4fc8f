package visitor_test

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// Invariant 7: a key is authenticated against the requested site's keys only
// and acts with the role given there; one listed on several sites acts on each.
func TestAuthenticateAgainstTheRequestedSite(t *testing.T) {
	t.Parallel()
	hash := func(key string) [32]byte { return sha256.Sum256([]byte(key)) }
	shop := &visitor.Site{ID: "shop", Keys: []visitor.APIKey{{ID: "agency-ops", Role: visitor.RoleOperator, SHA256: hash("agency")}, {ID: "dpo", Role: visitor.RolePrivacy, SHA256: hash("shop-dpo")}}}
	blog := &visitor.Site{ID: "blog", Keys: []visitor.APIKey{{ID: "agency-dpo", Role: visitor.RolePrivacy, SHA256: hash("agency")}}}
	wiki := &visitor.Site{ID: "wiki", Keys: []visitor.APIKey{{ID: "wiki-agent", Role: visitor.RoleOperator, SHA256: hash("wiki")}}}
	sites, err := visitor.NewSites([]*visitor.Site{shop, blog, wiki})
	if err != nil {
		t.Fatal(err)
	}
	svc := visitor.NewService(visitor.Deps{Sites: sites})
	tests := []struct {
		name    string
		site    string
		key     string
		roles   []visitor.Role
		want    visitor.Actor
		wantErr error
	}{
		{name: "agency key as operator on shop", site: "shop", key: "agency", roles: []visitor.Role{visitor.RoleOperator, visitor.RolePrivacy}, want: visitor.Actor{Site: shop, KeyID: "agency-ops", Role: visitor.RoleOperator}},
		{name: "agency key as privacy on blog", site: "blog", key: "agency", roles: []visitor.Role{visitor.RolePrivacy}, want: visitor.Actor{Site: blog, KeyID: "agency-dpo", Role: visitor.RolePrivacy}},
		{name: "agency key's shop role is not privacy", site: "shop", key: "agency", roles: []visitor.Role{visitor.RolePrivacy}, wantErr: visitor.ErrForbidden},
		{name: "a site that does not list the key", site: "wiki", key: "agency", roles: []visitor.Role{visitor.RoleOperator}, wantErr: visitor.ErrForbidden},
		{name: "shop's key on blog", site: "blog", key: "shop-dpo", roles: []visitor.Role{visitor.RolePrivacy}, wantErr: visitor.ErrForbidden},
		{name: "a key no site lists", site: "shop", key: "nobody", roles: []visitor.Role{visitor.RoleOperator}, wantErr: visitor.ErrUnauthorized},
		{name: "no key", site: "shop", key: "", roles: []visitor.Role{visitor.RoleOperator}, wantErr: visitor.ErrUnauthorized},
		{name: "unknown site", site: "nope", key: "agency", roles: []visitor.Role{visitor.RoleOperator}, wantErr: visitor.ErrUnknownSite},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := svc.Authenticate(tt.site, tt.key, tt.roles...)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Authenticate = %+v, %v; want %v", got, err, tt.wantErr)
				}
				for _, leak := range []string{"another site", "elsewhere", "agency-", "blog", "shop-dpo"} {
					if tt.site != leak && strings.Contains(err.Error(), leak) {
						t.Errorf("error %q tells %q", err, leak)
					}
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("Authenticate = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

// The live view lists the sessions seen within the window asked, most recent
// first, under pseudonyms, a page at a time.
func TestLive(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name   string
		seen   []time.Duration // how long ago each visitor was last seen, longest first
		within time.Duration
		limit  int
		pages  []int // rows on each page
	}{
		{name: "default window", seen: []time.Duration{10 * time.Minute, 4 * time.Minute, time.Minute}, pages: []int{2}},
		{name: "wider window", seen: []time.Duration{10 * time.Minute, 4 * time.Minute, time.Minute}, within: 15 * time.Minute, pages: []int{3}},
		{name: "narrowest window", seen: []time.Duration{2 * time.Minute, 0}, within: time.Minute, pages: []int{1}},
		{name: "pages", seen: []time.Duration{3 * time.Minute, 2 * time.Minute, time.Minute, 0, 0}, limit: 2, pages: []int{2, 2, 1}},
		{name: "nobody", within: 5 * time.Minute, pages: []int{0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDomain(t, nil)
			for i, ago := range tt.seen {
				if i > 0 {
					d.clock.Advance(tt.seen[i-1] - ago)
				}
				d.pageview(t, "", fmt.Sprintf("/v/%d", i), "", "")
			}
			if n := len(tt.seen); n > 0 {
				d.clock.Advance(tt.seen[n-1])
			}
			var got []int
			seen := map[string]bool{}
			cursor := ""
			for {
				page, err := d.svc.Live(d.ctx, d.operator, tt.within, cursor, tt.limit)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, len(page.Visitors))
				for i, v := range page.Visitors {
					if seen[v.Pseudonym] || v.Pseudonym == "" {
						t.Errorf("pseudonym %q repeats or is empty", v.Pseudonym)
					}
					seen[v.Pseudonym] = true
					if i > 0 && v.LastSeen.After(page.Visitors[i-1].LastSeen) {
						t.Errorf("row %d seen after the row before it", i)
					}
				}
				if cursor = page.Next; cursor == "" || len(got) > len(tt.pages) {
					break
				}
			}
			if !slices.Equal(got, tt.pages) {
				t.Errorf("pages of %v rows, want %v", got, tt.pages)
			}
		})
	}
}

// The day's counters count tracked page views and each reason a page view was
// not tracked; a range of days lists every day, oldest first.
func TestStats(t *testing.T) {
	t.Parallel()
	d := newDomain(t, nil)
	tok := d.pageview(t, "", "/a", "", "")
	d.pageview(t, tok, "/b", "", "")
	for _, h := range []visitor.Hit{
		{Site: d.site, Type: visitor.HitPageview, DNT: true},
		{Site: d.site, Type: visitor.HitPageview, GPC: true},
		{Site: d.site, Type: visitor.HitPageview, URL: domainOrigin + "/", UserAgent: "a crawler bot"},
		{Site: d.site, Type: visitor.HitHeartbeat, UserAgent: domainUA}, // no session: not a page view, not counted
	} {
		if _, err := d.svc.Track(d.ctx, h); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]int64{"tracked": 2, "dnt": 1, "gpc": 1, "bot": 1}
	today, err := d.svc.Stats(d.ctx, d.operator, d.svc.Today())
	if err != nil {
		t.Fatal(err)
	}
	for k, n := range want {
		if today[k] != n {
			t.Errorf("Stats[%s] = %d, want %d (%v)", k, today[k], n, today)
		}
	}
	if today["no_session"] != 0 {
		t.Errorf("a heartbeat was counted: %v", today)
	}
	days, err := d.svc.StatsRange(d.ctx, d.operator, d.svc.Today().AddDate(0, 0, -2), d.svc.Today())
	if err != nil {
		t.Fatal(err)
	}
	if len(days) != 3 || !days[2].Day.Equal(d.svc.Today()) || days[0].Counts["tracked"] != 0 || days[2].Counts["tracked"] != 2 {
		t.Errorf("StatsRange = %+v; want three days, today's last with its counts", days)
	}
}

// An operator sees a chat with its visitor's trail of the session it started
// in and the visitor's earlier chats; the consent records of a chat without
// identity only the privacy role sees. Each read is audited under every subject it reveals.
func TestChatContext(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name     string
		actor    func(*domain) visitor.Actor
		consents bool
	}{
		{name: "operator", actor: func(d *domain) visitor.Actor { return d.operator }},
		{name: "privacy", actor: func(d *domain) visitor.Actor { return d.privacy }, consents: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d := newDomain(t, nil)
			tok := d.pageview(t, "", "/a", "A", "")
			tok = d.pageview(t, tok, "/b", "B", "")
			first := d.startChat(t, tok, false, false)
			res, err := d.svc.StartChat(d.ctx, visitor.ChatRequest{Site: d.site, Contact: visitor.Contact{Name: "Ada"}, MarketingOptIn: true,
				Token: tok, UserAgent: domainUA, IP: domainIP})
			if err != nil {
				t.Fatal(err)
			}
			a := tt.actor(d)
			v, err := d.svc.ChatContext(d.ctx, a, res.ChatID)
			if err != nil {
				t.Fatal(err)
			}
			var trail []string
			for _, p := range v.Trail {
				trail = append(trail, p.Title)
			}
			if !slices.Equal(trail, []string{"A", "B"}) || v.Contact.Name != "Ada" || !v.Marketing {
				t.Errorf("chat = trail %v, contact %+v, marketing %v; want A, B, Ada, true", trail, v.Contact, v.Marketing)
			}
			if len(v.Previous) != 1 || v.Previous[0].ID != first.ChatID || v.Previous[0].Contact.Email != "ada@example.org" {
				t.Errorf("previous chats = %+v; want the first chat with its contact", v.Previous)
			}
			// A chat without identity keeps its own consent records.
			anon, err := d.svc.StartChat(d.ctx, visitor.ChatRequest{Site: d.site, Contact: visitor.Contact{Name: "Bo"}, MarketingOptIn: true,
				UserAgent: domainUA, IP: domainIP})
			if err != nil {
				t.Fatal(err)
			}
			av, err := d.svc.ChatContext(d.ctx, a, anon.ChatID)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(av.Consents) == 1 && av.Consents[0].Method == visitor.MethodChatStart; got != tt.consents {
				t.Errorf("consent records shown = %+v, want them: %v", av.Consents, tt.consents)
			}
			entries, _, err := d.store.AuditLog(d.ctx, d.site, "", 100)
			if err != nil {
				t.Fatal(err)
			}
			targets := map[string]bool{}
			for _, e := range entries {
				if e.Action == "chat.read" && e.Actor == a.KeyID {
					targets[e.Target] = true
				}
			}
			for _, sj := range [][2]string{{"chat", res.ChatID}, {"chat", first.ChatID}, {"visitor", d.visitorID(t, tok)}} {
				if !targets[d.svc.AuditTarget(d.site.ID, sj[0], sj[1])] {
					t.Errorf("the read is not audited under %s %s", sj[0], sj[1])
				}
			}
		})
	}
}

// The live view's window is 1m..30m (default 5m), its page 1..200 rows
// (default 50).
func TestLiveBounds(t *testing.T) {
	t.Parallel()
	d := newDomain(t, nil)
	d.pageview(t, "", "/", "", "")
	for _, tt := range []struct {
		name   string
		within time.Duration
		limit  int
		ok     bool
	}{
		{name: "defaults", ok: true},
		{name: "within 1m", within: time.Minute, ok: true},
		{name: "within 30m", within: 30 * time.Minute, ok: true},
		{name: "within 30s", within: 30 * time.Second},
		{name: "within 31m", within: 31 * time.Minute},
		{name: "within negative", within: -5 * time.Minute},
		{name: "limit 1", limit: 1, ok: true},
		{name: "limit 200", limit: 200, ok: true},
		{name: "limit 201", limit: 201},
		{name: "limit negative", limit: -1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			page, err := d.svc.Live(d.ctx, d.operator, tt.within, "", tt.limit)
			if tt.ok {
				if err != nil || len(page.Visitors) != 1 {
					t.Errorf("Live = %+v, %v; want the one visitor", page.Visitors, err)
				}
				return
			}
			if code := visitor.ErrorCode(err); code != visitor.EInvalid {
				t.Errorf("Live = %v, want code %q", err, visitor.EInvalid)
			}
		})
	}
}

// A heartbeat keeps a session in the live view; a session idle longer than
// the window leaves it.
func TestLiveHeartbeatKeepsSessionLive(t *testing.T) {
	t.Parallel()
	d := newDomain(t, nil)
	early := d.pageview(t, "", "/early", "", "")
	d.clock.Advance(2 * time.Minute)
	d.pageview(t, "", "/late", "", "")
	d.clock.Advance(4 * time.Minute) // early idle 6m, late idle 4m
	urls := func(within time.Duration) []string {
		t.Helper()
		page, err := d.svc.Live(d.ctx, d.operator, within, "", 0)
		if err != nil {
			t.Fatal(err)
		}
		out := []string{}
		for _, v := range page.Visitors {
			out = append(out, strings.TrimPrefix(v.CurrentURL, domainOrigin))
		}
		return out
	}
	if got := urls(5 * time.Minute); !slices.Equal(got, []string{"/late"}) {
		t.Errorf("live within 5m = %q, want /late", got)
	}
	res, err := d.svc.Track(d.ctx, visitor.Hit{Site: d.site, Type: visitor.HitHeartbeat, Token: early, UserAgent: domainUA, IP: domainIP})
	if err != nil || !res.Tracked {
		t.Fatalf("heartbeat = %+v, %v", res, err)
	}
	if got := urls(time.Minute); !slices.Equal(got, []string{"/early"}) {
		t.Errorf("live within 1m after the heartbeat = %q, want /early", got)
	}
}

// A live cursor is signed for its site: an edited, cut, forged or foreign one
// is refused; a privacy key of the same site may follow it; an old one never
// reaches further back than the live view may (30m).
func TestLiveCursor(t *testing.T) {
	t.Parallel()
	shop, blog := domainSite(), domainSite()
	blog.ID, blog.Origins = "blog", []string{"https://blog.example"}
	st := newStack(t, []*visitor.Site{shop, blog}, domainDevices{}, domainLocator{})
	ctx := context.Background()
	for _, site := range []*visitor.Site{shop, shop, shop, blog, blog} {
		if res, err := st.svc.Track(ctx, visitor.Hit{Site: site, Type: visitor.HitPageview, URL: site.Origins[0] + "/", UserAgent: domainUA, IP: domainIP}); err != nil || !res.Tracked {
			t.Fatalf("Track: %+v, %v", res, err)
		}
		st.clock.Advance(time.Second)
	}
	operator := func(s *visitor.Site) visitor.Actor {
		return visitor.Actor{Site: s, KeyID: "agent-1", Role: visitor.RoleOperator}
	}
	first, err := st.svc.Live(ctx, operator(shop), 0, "", 1)
	if err != nil || first.Next == "" {
		t.Fatalf("Live = %+v, %v; want a next cursor", first, err)
	}
	other, err := st.svc.Live(ctx, operator(blog), 0, "", 1)
	if err != nil || other.Next == "" {
		t.Fatalf("blog's Live = %+v, %v; want a next cursor", other, err)
	}
	cursor := first.Next
	payload, sig, _ := strings.Cut(cursor, ".")
	plain, _ := base64.RawURLEncoding.DecodeString(payload)
	f := strings.Split(string(plain), ".")
	edited := base64.RawURLEncoding.EncodeToString([]byte(f[0] + "." + f[1] + ".0"))
	flipped := []byte(sig)
	flipped[0] ^= 0x01
	for _, tt := range []struct {
		name   string
		cursor string
	}{
		{name: "offset edited", cursor: edited + "." + sig},
		{name: "signature flipped", cursor: payload + "." + string(flipped)},
		{name: "signature cut", cursor: payload + "."},
		{name: "no signature", cursor: payload},
		{name: "garbage", cursor: "not-a-cursor"},
		{name: "over long", cursor: strings.Repeat("A", 300) + "." + sig},
		{name: "another site's", cursor: other.Next},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := st.svc.Live(ctx, operator(shop), 0, tt.cursor, 1); visitor.ErrorCode(err) != visitor.EInvalid {
				t.Errorf("Live = %v, want code %q", err, visitor.EInvalid)
			}
		})
	}
	privacy := visitor.Actor{Site: shop, KeyID: "dpo", Role: visitor.RolePrivacy}
	if page, err := st.svc.Live(ctx, privacy, 0, cursor, 1); err != nil || len(page.Visitors) != 1 {
		t.Errorf("the privacy key following the cursor: %+v, %v; want the next row", page.Visitors, err)
	}

	// 45 minutes on, with traffic, the first sessions are idle for 45m: the
	// old cursor lists none of them.
	st.clock.Advance(45 * time.Minute)
	if res, err := st.svc.Track(ctx, visitor.Hit{Site: shop, Type: visitor.HitPageview, URL: domainOrigin + "/now", UserAgent: domainUA, IP: domainIP}); err != nil || !res.Tracked {
		t.Fatalf("Track: %+v, %v", res, err)
	}
	page, err := st.svc.Live(ctx, operator(shop), 0, cursor, 10)
	if err != nil {
		t.Fatal(err)
	}
	for _, v := range page.Visitors {
		if idle := st.clock.Now().Sub(v.LastSeen); idle > visitor.MaxLiveWithin {
			t.Errorf("a 45m-old cursor lists a session idle for %v, past the live view's %v", idle, visitor.MaxLiveWithin)
		}
	}
}

// A live entry whose profile is gone (expired before its entry) is left out of
// the live view and dropped from the live set when read: afterwards no key
// holds the visitor.
func TestLiveRepairsGoneEntries(t *testing.T) {
	t.Parallel()
	d := newDomain(t, nil)
	gone := d.pageview(t, "", "/gone", "", "")
	d.pageview(t, "", "/kept", "", "")
	goneKey := d.vkey(d.visitorID(t, gone))
	// The profile's TTL ran out before the live entry's.
	if err := d.rdb.Del(d.ctx, "v:{shop:"+goneKey+"}").Err(); err != nil {
		t.Fatal(err)
	}
	page, err := d.svc.Live(d.ctx, d.operator, 0, "", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Visitors) != 1 || page.Visitors[0].CurrentURL != domainOrigin+"/kept" {
		t.Errorf("Live = %+v; want the kept visitor alone", page.Visitors)
	}
	for k, v := range redistest.DumpValues(t, d.rdb) {
		if strings.HasPrefix(k, "lv:") && strings.Contains(v, goneKey) {
			t.Errorf("live set %s still holds the gone visitor", k)
		}
	}
}

package visitor_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

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

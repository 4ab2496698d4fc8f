package httpapi

import (
	"context"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/redisstore"
	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// The flows of the API end to end on a real Redis Cluster of three masters
// (DESIGN.md, Storage: one visitor's keys share a hash tag, site indexes have
// their own, and a request touches several slots in one pipeline). Any
// CROSSSLOT or "non local key" error of the store fails these tests.
func TestClusterFlows(t *testing.T) {
	t.Parallel()
	cluster := redistest.StartCluster(t, 3)
	// Through VISITORD_REDIS_URL's parser, as the service connects.
	rdb, err := redisstore.Connect(cluster.URL())
	if err != nil {
		t.Fatalf("Connect(%q): %v", cluster.URL(), err)
	}
	t.Cleanup(func() { _ = rdb.Close() })
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("Connect(%q) = %T, want a cluster client", cluster.URL(), rdb)
	}
	// clusterEnv builds a fresh stack on the emptied cluster.
	clusterEnv := func(t *testing.T) *env {
		t.Helper()
		err := cc.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
			return n.FlushAll(ctx).Err()
		})
		if err != nil {
			t.Fatalf("FLUSHALL: %v", err)
		}
		return newEnvOnClient(t, cc, envOptions{sites: testSites, secrets: [][]byte{testSecret}, trackTimeout: 2 * time.Second})
	}

	t.Run("ingest", func(t *testing.T) { clusterIngest(t, clusterEnv(t), cc) })
	t.Run("consent", func(t *testing.T) { clusterConsent(t, clusterEnv(t)) })
	t.Run("chat", func(t *testing.T) { clusterChat(t, clusterEnv(t)) })
	t.Run("privacy", func(t *testing.T) { clusterPrivacy(t, clusterEnv(t)) })
	t.Run("retention", func(t *testing.T) { clusterRetention(t, clusterEnv(t)) })
}

// keysPerMaster lists the keys of each master that holds any, by address.
func keysPerMaster(t testing.TB, cc *redis.ClusterClient) map[string][]string {
	t.Helper()
	var mu sync.Mutex
	out := map[string][]string{}
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
		keys, err := n.Keys(ctx, "*").Result()
		if err != nil || len(keys) == 0 {
			return err
		}
		slices.Sort(keys)
		mu.Lock()
		out[n.Options().Addr] = keys
		mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatalf("list keys per master: %v", err)
	}
	return out
}

// Page views, sessions, heartbeat and leave, and the anonymous counters of
// DNT, GPC and bots, on two sites whose indexes live on different masters.
func clusterIngest(t *testing.T, e *env, cc *redis.ClusterClient) {
	a := e.mustTrack("shop", shopOrigin+"/pricing", "")
	e.clock.Advance(time.Minute)
	if got := e.mustTrack("shop", shopOrigin+"/checkout", a); got != a {
		t.Fatalf("second page view answered token %q, want %q", got, a)
	}
	e.clock.Advance(20 * time.Second)
	for _, typ := range []string{"heartbeat", "leave"} {
		if r := e.hit("shop", typ, a); r.status != http.StatusOK || r.json(t)["tracked"] != true {
			t.Fatalf("%s: %d %s", typ, r.status, r.body)
		}
	}
	id := e.visitorID("shop", a)
	x := e.export("shop", id)
	if x.Profile == nil || x.Profile.Sessions != 1 || len(x.Sessions) != 1 {
		t.Fatalf("export after two pages and a leave: profile %+v, %d sessions; want one", x.Profile, len(x.Sessions))
	}
	if s := x.Sessions[0]; len(s.Pages) != 2 || s.Pages[0].URL != shopOrigin+"/pricing" || s.Pages[0].Duration != time.Minute ||
		s.Pages[1].URL != shopOrigin+"/checkout" || s.Pages[1].Duration != 20*time.Second || !s.CurrentClosed {
		t.Errorf("first session %+v, want /pricing for 60 s and /checkout for 20 s, closed", s)
	}

	// Past session_timeout: a second session.
	e.clock.Advance(31 * time.Minute)
	e.mustTrack("shop", shopOrigin+"/again", a)
	x = e.export("shop", id)
	if x.Profile == nil || x.Profile.Sessions != 2 || len(x.Sessions) != 2 {
		t.Errorf("export after a new session: profile %+v, %d sessions; want 2", x.Profile, len(x.Sessions))
	}
	if cur := slices.IndexFunc(x.Sessions, func(s visitor.SessionData) bool { return s.ID == x.Profile.CurrentSession }); cur < 0 ||
		x.Sessions[cur].CurrentURL != shopOrigin+"/again" || x.Sessions[cur].PageViews != 1 {
		t.Errorf("second session, want /again alone: %+v", x.Sessions)
	}

	blog := e.mustTrack("blog", blogOrigin+"/post", "")
	for _, h := range []map[string]string{{"DNT": "1"}, {"Sec-GPC": "1"}, {"User-Agent": googlebotUA}} {
		r := e.pageview("shop", shopOrigin+"/refused", "", h)
		if m := r.json(t); r.status != http.StatusOK || m["tracked"] != false || r.cookie("vt_shop") != nil {
			t.Errorf("page view with %v: %d %s, want untracked without a cookie", h, r.status, r.body)
		}
	}
	want := map[string]any{
		"day": e.clock.Now().UTC().Format(time.DateOnly), "tracked": float64(3), "consent_refusals": float64(0),
		"refused": map[string]any{"dnt": float64(1), "gpc": float64(1), "bot": float64(1), "no_consent": float64(0)},
	}
	r := e.operatorGet("/v1/sites/shop/stats", shopOperatorKey)
	if diff := cmp.Diff(want, r.json(t)); r.status != http.StatusOK || diff != "" {
		t.Errorf("stats %d (-want +got):\n%s", r.status, diff)
	}
	if got := e.stats("blog")["tracked"]; got != "1" {
		t.Errorf("blog's tracked counter %q, want 1", got)
	}
	blogID := e.visitorID("blog", blog)
	if got := e.live("blog"); len(got) != 1 {
		t.Errorf("blog's live view %q, want its visitor", got)
	}
	// GPC with an identity objects: the visitor's behaviour data and live
	// entry go (its slot and the site's, in one pipeline); the refused choice
	// and the consent records (with the gpc withdrawal) stay as proof.
	wantRefused(t, e.pageview("blog", blogOrigin+"/gpc", blog, map[string]string{"Sec-GPC": "1"}), "gpc")
	if x := e.export("blog", blogID); x.Profile != nil || len(x.Sessions) != 0 || x.Choice == nil || x.Choice.Analytics ||
		len(x.Consents) != 1 || x.Consents[0].Method != visitor.MethodGPC {
		t.Errorf("blog's visitor after a GPC page view: profile %+v, %d sessions, choice %+v, records %+v; want the refusal and the gpc record alone",
			x.Profile, len(x.Sessions), x.Choice, x.Consents)
	}
	if got := e.live("blog"); len(got) != 0 {
		t.Errorf("blog's visitor is still live after a GPC page view: %q", got)
	}

	// {shop} and {blog} hash to slots of different masters: the run really
	// spread over the cluster.
	per := keysPerMaster(t, cc)
	if len(per) < 2 {
		t.Errorf("keys on %d master(s), want at least 2: %q", len(per), per)
	}
	for addr, keys := range per {
		t.Logf("master %s holds %d keys", addr, len(keys))
	}
	e.assertTTLs()
}

// Invariant 2 on an opt-in site: nothing before the grant; page views after
// it; a withdrawal deletes the behaviour data and keeps the proof.
func clusterConsent(t *testing.T, e *env) {
	wantRefused(t, trackWith(e, "optin", originOptin+"/", map[string]string{"Origin": originOptin}), "no_consent")
	for _, k := range e.keys() {
		if !strings.HasPrefix(k, "st:") {
			t.Errorf("key written before the grant: %s", k)
		}
	}
	token := mustGrant(e)
	id := e.visitorID("optin", token)
	e.mustTrack("optin", originOptin+"/a", token)
	e.clock.Advance(time.Minute)
	e.mustTrack("optin", originOptin+"/b", token)
	if x := e.export("optin", id); len(x.Sessions) != 1 || x.Sessions[0].PageViews != 2 {
		t.Errorf("sessions %+v, want one of 2 pages", x.Sessions)
	}
	if m := getConsent(e, "optin", token).json(t); m["analytics"] != true || m["policy_version"] != "v2" {
		t.Errorf("consent after the grant: %v", m)
	}

	e.clock.Advance(time.Minute)
	r := putConsent(e, "optin", false, false, "v2", map[string]string{"Origin": originOptin, tokenHeader: token})
	refusal, _ := r.json(t)["token"].(string)
	if r.status != http.StatusOK || refusal == "" {
		t.Fatalf("withdrawal: %d %s", r.status, r.body)
	}
	x := e.export("optin", id)
	if x.Profile != nil || len(x.Sessions) != 0 {
		t.Errorf("behaviour data after the withdrawal: profile %+v, %d sessions", x.Profile, len(x.Sessions))
	}
	if recs := x.Consents; len(recs) != 2 || recs[0].Analytics == nil || !*recs[0].Analytics || recs[1].Analytics == nil || *recs[1].Analytics {
		t.Errorf("consent records %+v, want the grant and the withdrawal", recs)
	}
	if got := e.live("optin"); len(got) != 0 {
		t.Errorf("the visitor is still live after the withdrawal: %q", got)
	}
	wantRefused(t, e.pageview("optin", originOptin+"/c", token, nil), "no_consent")
	wantRefused(t, e.pageview("optin", originOptin+"/d", refusal, nil), "no_consent")
	if got := e.stats("optin"); got["tracked"] != "2" || got["no_consent"] != "3" {
		t.Errorf("optin counters %v, want tracked 2 and no_consent 3", got)
	}
	e.assertTTLs()
}

// Invariant 4's basics: the live view shows the current session under a
// pseudonym; a chat is bound to the session current at its start and does not
// grow with a later one; only a new chat attributes the earlier chat.
func clusterChat(t *testing.T, e *env) {
	token := e.mustTrack("shop", shopOrigin+"/first/a", "")
	e.clock.Advance(time.Minute)
	e.mustTrack("shop", shopOrigin+"/first/b", token)
	id := e.visitorID("shop", token)

	r := e.startChat("shop", token, "Ada Lovelace", "ada@math.example", shopOrigin+"/first/b", nil)
	if r.status != http.StatusCreated || r.json(t)["returning"] != false || r.json(t)["previous_chats"] != float64(0) {
		t.Fatalf("first chat: %d %s", r.status, r.body)
	}
	chat1 := r.json(t)["chat_id"].(string)

	lr := e.operatorGet("/v1/sites/shop/visitors/live", shopOperatorKey)
	live := decode[liveView](t, lr)
	if len(live.Visitors) != 1 || live.Visitors[0].Pages != 2 || live.Visitors[0].CurrentPage.URL != shopOrigin+"/first/b" {
		t.Fatalf("live during session 1: %s", lr.body)
	}
	pseudonym1 := live.Visitors[0].Pseudonym
	if pseudonym1 != opPseudonymOf(e, token) || strings.Contains(string(lr.body), id) {
		t.Errorf("live row %s, want the session's pseudonym and no visitor id", lr.body)
	}
	cv := decode[chatView](t, e.operatorGet("/v1/sites/shop/chats/"+chat1, shopOperatorKey))
	if got := trailURLs(cv); !slices.Equal(got, []string{shopOrigin + "/first/a", shopOrigin + "/first/b"}) ||
		cv.Contact.Name != "Ada Lovelace" || len(cv.PreviousChats) != 0 {
		t.Errorf("first chat's context: trail %q, contact %+v, %d previous chats", got, cv.Contact, len(cv.PreviousChats))
	}

	// Idle past session_timeout, then a new session.
	e.clock.Advance(31 * time.Minute)
	e.mustTrack("shop", shopOrigin+"/second/x", token)
	live = decode[liveView](t, e.operatorGet("/v1/sites/shop/visitors/live", shopOperatorKey))
	if len(live.Visitors) != 1 || live.Visitors[0].Pages != 1 || live.Visitors[0].Pseudonym == pseudonym1 {
		t.Errorf("live during session 2: %+v, want one page under a new pseudonym", live)
	}
	cv = decode[chatView](t, e.operatorGet("/v1/sites/shop/chats/"+chat1, shopOperatorKey))
	if got := trailURLs(cv); len(got) != 2 {
		t.Errorf("first chat's trail grew with the new session: %q", got)
	}

	r = e.startChat("shop", token, "Ada Lovelace", "ada@math.example", shopOrigin+"/second/x", nil)
	if r.status != http.StatusCreated || r.json(t)["returning"] != true || r.json(t)["previous_chats"] != float64(1) {
		t.Fatalf("second chat: %d %s", r.status, r.body)
	}
	chat2 := r.json(t)["chat_id"].(string)
	cv = decode[chatView](t, e.operatorGet("/v1/sites/shop/chats/"+chat2, shopOperatorKey))
	if got := trailURLs(cv); !slices.Equal(got, []string{shopOrigin + "/second/x"}) {
		t.Errorf("second chat's trail %q, want the current session only", got)
	}
	if len(cv.PreviousChats) != 1 || cv.PreviousChats[0].ChatID != chat1 || cv.PreviousChats[0].Contact.Email != "ada@math.example" {
		t.Errorf("second chat's previous chats %+v, want the first with its contact", cv.PreviousChats)
	}
	e.assertTTLs()
}

func trailURLs(cv chatView) []string {
	out := []string{}
	for _, p := range cv.Trail {
		out = append(out, p.URL)
	}
	return out
}

// Data-subject requests: search, export, rectification, erasure of a visitor
// and of an identity-less chat; afterwards no key on any master holds them.
func clusterPrivacy(t *testing.T, e *env) {
	v := subjGrace(e)
	anon := subjChat(e, "", "Anonymous Admiral", graceEmail, "", true, shopOrigin+"/contact")
	if diff := cmp.Diff(searchResponse{Visitors: []string{v.id}, Chats: []string{anon}}, subjSearch(e, "Grace@Navy.example ")); diff != "" {
		t.Fatalf("search (-want +got):\n%s", diff)
	}

	x := subjExportOf(e, v.id)
	if x.VisitorID != v.id || len(x.Sessions) != 2 || len(x.ConsentRecords) != 2 {
		t.Errorf("export: visitor %q, %d sessions, %d consent records; want 2 and 2", x.VisitorID, len(x.Sessions), len(x.ConsentRecords))
	}
	if got, want := x.chatIDs(), slices.Sorted(slices.Values(v.chats)); !slices.Equal(got, want) {
		t.Errorf("export chats %q, want %q", got, want)
	}
	for _, c := range x.Chats {
		if c.Contact.Email != graceEmail || c.Contact.Phone != gracePhone {
			t.Errorf("exported chat %s contact %+v, want it decrypted", c.ChatID, c.Contact)
		}
	}

	e.clock.Advance(time.Minute)
	r := privacyDo(e, http.MethodPatch, "/v1/sites/shop/visitors/"+v.id, map[string]any{"contact": map[string]string{"email": graceNewEmail}})
	wantStatus(t, r, http.StatusOK, "")
	for _, c := range subjExportOf(e, v.id).Chats {
		if c.Contact.Email != graceNewEmail {
			t.Errorf("chat %s after rectification has e-mail %q, want %q", c.ChatID, c.Contact.Email, graceNewEmail)
		}
	}
	if diff := cmp.Diff(searchResponse{Visitors: []string{v.id}, Chats: []string{}}, subjSearch(e, graceNewEmail)); diff != "" {
		t.Errorf("search by the new e-mail (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(searchResponse{Visitors: []string{}, Chats: []string{anon}}, subjSearch(e, graceEmail)); diff != "" {
		t.Errorf("search by the old e-mail (-want +got):\n%s", diff)
	}

	e.clock.Advance(time.Minute)
	wantStatus(t, privacyDo(e, http.MethodDelete, "/v1/sites/shop/visitors/"+v.id, nil), http.StatusNoContent, "")
	assertVisitorErased(t, e, v, 2)
	wantStatus(t, privacyDo(e, http.MethodDelete, "/v1/sites/shop/chats/"+anon, nil), http.StatusNoContent, "")
	checkStatus(t, privacyDo(e, http.MethodGet, "/v1/sites/shop/chats/"+anon, nil), http.StatusNotFound, "not_found")

	// Every master, every key name and value: neither subject is left.
	values := redistest.DumpValues(t, e.rdb)
	for _, k := range redistest.Keys(t, e.rdb) {
		for _, needle := range []string{v.id, anon, graceEmail, graceNewEmail, graceName, gracePhone, "Anonymous Admiral"} {
			if strings.Contains(k, needle) || strings.Contains(values[k], needle) {
				t.Errorf("after the erasures key %s holds %q: %s", k, needle, values[k])
			}
		}
	}
	if got := subjSearch(e, graceEmail); len(got.Visitors)+len(got.Chats) != 0 {
		t.Errorf("search after the erasures: %+v", got)
	}
	e.assertTTLs()
}

// A shorter retention window reaches the data already stored through the
// re-expiry job, whose batches touch the subject's slot, its chats' slots, the
// blind index's slot and the site's.
func clusterRetention(t *testing.T, e *env) {
	ctx := context.Background()
	token := e.mustTrack("shop", shopOrigin+"/retention/a", "")
	id := e.visitorID("shop", token)
	chat := subjChat(e, token, graceName, graceEmail, gracePhone, true, shopOrigin+"/retention/a")
	anon := subjChat(e, "", "Anonymous Admiral", graceEmail, "", true, shopOrigin+"/contact")
	// subject lists when each key holding the visitor or the chats expires: a
	// scan over every key of every master.
	vkey := e.hasher.VisitorKey("shop", id)
	subject := func() map[string]time.Time {
		t.Helper()
		values := redistest.DumpValues(t, e.rdb)
		out := map[string]time.Time{}
		for k, at := range expiries(e) {
			// Site-wide keys (audit, counters, configuration, the live and
			// subject indexes) are shared by every subject.
			if strings.HasPrefix(k, "au:") || strings.HasPrefix(k, "st:") || strings.HasPrefix(k, "cfg:") || strings.HasPrefix(k, "lv:") || strings.HasPrefix(k, "sj:") {
				continue
			}
			for _, n := range []string{vkey, chat, anon} {
				if strings.Contains(k, n) || strings.Contains(values[k], n) {
					out[k] = at
				}
			}
		}
		return out
	}
	for k, at := range subject() {
		if at.Sub(e.clock.Now()) < 89*day {
			t.Fatalf("%s expires at %v before the change, want the defaults (90 days and more)", k, at)
		}
	}

	// 40 days on, the windows shrink: sessions (30 days) are past.
	e.clock.Advance(40 * day)
	putRetention(t, e, shorterRetention)
	site, err := e.sites.Get("shop")
	if err != nil {
		t.Fatal(err)
	}
	store := redisstore.New(e.rdb)
	if pending, err := store.PendingReexpiry(ctx, site); err != nil || !pending {
		t.Fatalf("PendingReexpiry = %v, %v; want a job asked for", pending, err)
	}
	// What RunRetentionJobs does on every pod, with the windows in force.
	r := e.svc.Retention(site)
	if r.Sessions != shorterRetention["sessions"] {
		t.Fatalf("retention in force %+v, want %v", r, shorterRetention)
	}
	// Batches of one subject, so the job moves its checkpoint too.
	for i := 0; ; i++ {
		done, err := store.ReexpireBatch(ctx, site, r, e.clock.Now(), "cluster-test", 1)
		if err != nil {
			t.Fatalf("ReexpireBatch #%d: %v", i, err)
		}
		if done {
			break
		}
		if i > 10 {
			t.Fatal("the re-expiry job does not end")
		}
	}

	// The session past its 30 days is gone; the rest is kept, expiring by
	// the shorter windows, and still found (the subject index holds it).
	x := e.export("shop", id)
	if x.Profile == nil || len(x.Sessions) != 0 || len(x.Chats) != 1 || len(x.Consents) != 1 {
		t.Errorf("export after the job: profile %+v, %d sessions, %d chats, %d records; want the session alone gone",
			x.Profile, len(x.Sessions), len(x.Chats), len(x.Consents))
	}
	limit := e.clock.Now().Add(time.Duration(shorterRetention["consents"])*day + time.Second)
	for k, at := range subject() {
		if at.IsZero() || at.After(limit) {
			t.Errorf("%s expires at %v after the job, past the shorter windows' %v", k, at, limit)
		}
	}
	if diff := cmp.Diff(searchResponse{Visitors: []string{id}, Chats: []string{anon}}, subjSearch(e, graceEmail)); diff != "" {
		t.Errorf("search after the job (-want +got):\n%s", diff)
	}
	e.assertTTLs()
}

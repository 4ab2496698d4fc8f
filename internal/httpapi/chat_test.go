package httpapi

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/redistest"
)

type liveView struct {
	Visitors []struct {
		Pseudonym   string `json:"pseudonym"`
		CurrentPage struct {
			URL string `json:"url"`
		} `json:"current_page"`
		Pages int `json:"pages"`
	} `json:"visitors"`
}

type chatView struct {
	ChatID  string `json:"chat_id"`
	Contact struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	} `json:"contact"`
	Trail []struct {
		URL string `json:"url"`
	} `json:"trail"`
	PreviousChats []struct {
		ChatID  string `json:"chat_id"`
		Contact struct {
			Email string `json:"email"`
		} `json:"contact"`
	} `json:"previous_chats"`
}

func decode[T any](t testing.TB, r resp) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// Invariant 4 end to end: session → chat → idle timeout → new session. The live
// view shows nothing of the first session or chat; the first chat's context does
// not grow with the new session; a new chat attributes the earlier chat and the
// current session only.
func TestReturningVisitorIsAnonymousUntilNewChat(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := e.mustTrack("shop", shopOrigin+"/first-visit/a", "")
	e.clock.Advance(time.Minute)
	e.mustTrack("shop", shopOrigin+"/first-visit/b", token)

	r := e.startChat("shop", token, "Ada Lovelace", "ada@math.example", shopOrigin+"/first-visit/b", nil)
	if r.status != http.StatusCreated {
		t.Fatalf("chat 1: %d %s", r.status, r.body)
	}
	chat1 := r.json(t)["chat_id"].(string)
	if r.json(t)["returning"] != false || r.json(t)["previous_chats"] != float64(0) {
		t.Errorf("first chat answered %s", r.body)
	}

	live := decode[liveView](t, e.operatorGet("/v1/sites/shop/visitors/live", shopOperatorKey))
	if len(live.Visitors) != 1 || live.Visitors[0].Pages != 2 {
		t.Fatalf("live during session 1: %+v", live)
	}
	pseudonym1 := live.Visitors[0].Pseudonym

	// Idle past session_timeout, then a new session.
	e.clock.Advance(31 * time.Minute)
	e.mustTrack("shop", shopOrigin+"/second-visit/x", token)

	r = e.operatorGet("/v1/sites/shop/visitors/live", shopOperatorKey)
	live = decode[liveView](t, r)
	if len(live.Visitors) != 1 {
		t.Fatalf("live during session 2: %s", r.body)
	}
	v := live.Visitors[0]
	if v.Pseudonym == pseudonym1 || v.Pages != 1 || v.CurrentPage.URL != shopOrigin+"/second-visit/x" {
		t.Errorf("live row of session 2 links to session 1: %s", r.body)
	}
	for _, leak := range []string{"first-visit", "Ada", "ada@", chat1, e.visitorID("shop", token), "returning", "first_seen", "visits"} {
		if strings.Contains(string(r.body), leak) {
			t.Errorf("live view contains %q: %s", leak, r.body)
		}
	}

	// The first chat's context is its own session only, and does not grow.
	c1 := decode[chatView](t, e.operatorGet("/v1/sites/shop/chats/"+chat1, shopOperatorKey))
	if len(c1.Trail) != 2 || c1.Contact.Email != "ada@math.example" {
		t.Fatalf("chat 1 context: %+v", c1)
	}
	for _, p := range c1.Trail {
		if strings.Contains(p.URL, "second-visit") {
			t.Errorf("chat 1 shows the later session: %+v", c1.Trail)
		}
	}

	// A new chat attributes the earlier chat and the current session only.
	e.clock.Advance(time.Minute)
	r = e.startChat("shop", token, "Ada L.", "ada@math.example", shopOrigin+"/second-visit/x", nil)
	if r.status != http.StatusCreated || r.json(t)["returning"] != true || r.json(t)["previous_chats"] != float64(1) {
		t.Fatalf("chat 2: %d %s", r.status, r.body)
	}
	chat2 := r.json(t)["chat_id"].(string)
	c2 := decode[chatView](t, e.operatorGet("/v1/sites/shop/chats/"+chat2, shopOperatorKey))
	if len(c2.PreviousChats) != 1 || c2.PreviousChats[0].ChatID != chat1 || c2.PreviousChats[0].Contact.Email != "ada@math.example" {
		t.Errorf("chat 2 previous chats: %+v", c2.PreviousChats)
	}
	if len(c2.Trail) != 1 || c2.Trail[0].URL != shopOrigin+"/second-visit/x" {
		t.Errorf("chat 2 trail: %+v (earlier sessions are never attributed)", c2.Trail)
	}
	e.assertLogsClean("Ada", "ada@math.example", "first-visit", token)
}

// Previous chats are found through the identity only, never by e-mail: a
// stranger typing someone's e-mail links nothing.
func TestEmailTypedByStrangerLinksNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	victim := e.mustTrack("shop", shopOrigin+"/", "")
	if r := e.startChat("shop", victim, "Victim", "victim@mail.example", shopOrigin+"/", nil); r.status != http.StatusCreated {
		t.Fatal(r.status)
	}
	stranger := e.mustTrack("shop", shopOrigin+"/", "")
	r := e.startChat("shop", stranger, "Stranger", "victim@mail.example", shopOrigin+"/", nil)
	if r.json(t)["returning"] != false || r.json(t)["previous_chats"] != float64(0) {
		t.Fatalf("stranger's chat linked: %s", r.body)
	}
	c := decode[chatView](t, e.operatorGet("/v1/sites/shop/chats/"+r.json(t)["chat_id"].(string), shopOperatorKey))
	if len(c.PreviousChats) != 0 {
		t.Errorf("stranger sees previous chats: %+v", c.PreviousChats)
	}
	// Without any identity, nothing is linked either.
	r = e.startChat("shop", "", "Anon", "victim@mail.example", shopOrigin+"/", nil)
	if r.status != http.StatusCreated || r.json(t)["previous_chats"] != float64(0) {
		t.Fatalf("identity-less chat: %d %s", r.status, r.body)
	}
}

// cmOnchatKey is the operator key of cmSites' on-chat site, in clear.
const cmOnchatKey = "op-onchat-key-0123456789abcdef"

const (
	cmOnchatOrigin = "https://chat.example"
	cmOnchatLegal  = "We keep your chat, and the pages you visit from then on."
)

// cmSites is an on-chat site with an operator key (testSites' onchat has none),
// so a test can read the context of its chats.
var cmSites = func() string {
	sum := sha256.Sum256([]byte(cmOnchatKey))
	return fmt.Sprintf(`
sites:
  - id: onchat
    origins: [%q]
    consent: on-chat
    policy_version: "p1"
    legal_text: %q
    keys:
      - {id: chat-agent, role: operator, sha256: %q}
`, cmOnchatOrigin, cmOnchatLegal, hex.EncodeToString(sum[:]))
}()

func cmNewOnchatEnv(t *testing.T) *env {
	t.Helper()
	return newEnvOn(t, redistest.Start(t), envOptions{sites: cmSites, secrets: [][]byte{testSecret}, trackTimeout: 2 * time.Second})
}

// cmPost posts a chat start with the given body and headers.
func cmPost(e *env, body map[string]any, headers map[string]string) resp {
	e.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req{method: http.MethodPost, path: "/v1/chats", body: string(b), headers: headers})
}

// cmMustChat posts a chat start that must answer 201 and returns its answer.
func cmMustChat(e *env, body map[string]any, headers map[string]string) map[string]any {
	e.t.Helper()
	r := cmPost(e, body, headers)
	if r.status != http.StatusCreated {
		e.t.Fatalf("chat start: %d %s", r.status, r.body)
	}
	return r.json(e.t)
}

// cmChat reads a chat's hash back from Redis.
func cmChat(e *env, site, chatID string) map[string]string {
	e.t.Helper()
	m, err := e.rdb.HGetAll(context.Background(), "ch:{"+site+":"+chatID+"}").Result()
	if err != nil {
		e.t.Fatal(err)
	}
	if len(m) == 0 {
		e.t.Fatalf("chat %s of %s is not stored", chatID, site)
	}
	return m
}

// cmChatsOf lists a visitor's chat index.
func cmChatsOf(e *env, site, visitorID string) []string {
	e.t.Helper()
	ids, err := e.rdb.ZRange(context.Background(), e.profileKey(site, visitorID)+":C", 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return ids
}

// cmRecord is a consent record as stored.
type cmRecord struct {
	VisitorID     string    `json:"visitor_id"`
	Time          time.Time `json:"time"`
	Analytics     bool      `json:"analytics"`
	Marketing     bool      `json:"marketing"`
	PolicyVersion string    `json:"policy_version"`
	TextSHA256    string    `json:"text_sha256"`
	Method        string    `json:"method"`
	IP            string    `json:"ip"`
	UserAgent     string    `json:"user_agent"`
}

// cmRecords reads the consent records kept under key.
func cmRecords(e *env, key string) []cmRecord {
	e.t.Helper()
	members, err := e.rdb.ZRange(context.Background(), key, 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []cmRecord
	for _, m := range members {
		var r cmRecord
		if err := json.Unmarshal([]byte(m), &r); err != nil {
			e.t.Fatalf("consent record %q: %v", m, err)
		}
		out = append(out, r)
	}
	return out
}

// cmKeysWith lists the keys with one of the given prefixes.
func cmKeysWith(e *env, prefixes ...string) []string {
	e.t.Helper()
	var out []string
	for _, k := range e.keys() {
		for _, p := range prefixes {
			if strings.HasPrefix(k, p) {
				out = append(out, k)
				break
			}
		}
	}
	return out
}

func cmTextSHA256(text string) string {
	sum := sha256.Sum256([]byte(text))
	return hex.EncodeToString(sum[:])
}

// cmChatView is a chat's context as operators read it.
type cmChatView struct {
	ChatID  string      `json:"chat_id"`
	Contact contactJSON `json:"contact"`
	URL     string      `json:"url"`
	Trail   []struct {
		URL string `json:"url"`
	} `json:"trail"`
	Device        deviceJSON `json:"device"`
	PreviousChats []struct {
		ChatID  string      `json:"chat_id"`
		Contact contactJSON `json:"contact"`
	} `json:"previous_chats"`
}

// POST /v1/chats takes application/json only, so a cross-site form cannot post
// it without a preflight; a foreign Origin is refused. Nothing is stored.
func TestChatRefusesFormsAndForeignOrigins(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	jsonBody := `{"site":"shop","contact":{"name":"Mallory","email":"m@evil.example"},"url":"https://shop.example/"}`
	for _, tc := range []struct {
		name   string
		ctype  string
		body   string
		origin string
		status []int
		code   []string
	}{
		{name: "text/plain form, foreign origin", ctype: "text/plain", body: jsonBody, origin: "https://evil.example",
			status: []int{http.StatusUnsupportedMediaType, http.StatusForbidden}, code: []string{"unsupported_media_type", "origin_not_allowed"}},
		{name: "urlencoded form, foreign origin", ctype: "application/x-www-form-urlencoded", body: "site=shop&contact.name=Mallory", origin: "https://evil.example",
			status: []int{http.StatusUnsupportedMediaType, http.StatusForbidden}, code: []string{"unsupported_media_type", "origin_not_allowed"}},
		{name: "multipart form, foreign origin", ctype: "multipart/form-data; boundary=x", body: "--x\r\nContent-Disposition: form-data; name=\"site\"\r\n\r\nshop\r\n--x--\r\n", origin: "https://evil.example",
			status: []int{http.StatusUnsupportedMediaType, http.StatusForbidden}, code: []string{"unsupported_media_type", "origin_not_allowed"}},
		{name: "text/plain, own origin", ctype: "text/plain", body: jsonBody, origin: shopOrigin,
			status: []int{http.StatusUnsupportedMediaType}, code: []string{"unsupported_media_type"}},
		{name: "text/plain, no origin", ctype: "text/plain", body: jsonBody,
			status: []int{http.StatusUnsupportedMediaType}, code: []string{"unsupported_media_type"}},
		{name: "json, foreign origin", ctype: "application/json", body: jsonBody, origin: "https://evil.example",
			status: []int{http.StatusForbidden}, code: []string{"origin_not_allowed"}},
		{name: "json, another site's origin", ctype: "application/json", body: jsonBody, origin: blogOrigin,
			status: []int{http.StatusForbidden}, code: []string{"origin_not_allowed"}},
		{name: "json, null origin", ctype: "application/json", body: jsonBody, origin: "null",
			status: []int{http.StatusForbidden}, code: []string{"origin_not_allowed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := map[string]string{}
			if tc.origin != "" {
				h["Origin"] = tc.origin
			}
			r := e.do(req{method: http.MethodPost, path: "/v1/chats", body: tc.body, ctype: tc.ctype, headers: h})
			if !slices.Contains(tc.status, r.status) || !slices.Contains(tc.code, r.errorCode(t)) {
				t.Errorf("answer = %d %s, want one of %v / %v", r.status, r.body, tc.status, tc.code)
			}
			if keys := e.keys(); len(keys) != 0 {
				t.Errorf("keys written: %q", keys)
			}
		})
	}
	// The same body as JSON from the site's own origin is a chat.
	if r := e.do(req{method: http.MethodPost, path: "/v1/chats", body: jsonBody, headers: map[string]string{"Origin": shopOrigin}}); r.status != http.StatusCreated {
		t.Errorf("JSON from the site's origin: %d %s", r.status, r.body)
	}
}

// Invalid contact details, url or JSON answer 400 (or 422 for a url of another
// origin) and write nothing, not even with an identity and a marketing opt-in.
func TestChatInvalidRequestWritesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := e.mustTrack("shop", shopOrigin+"/", "")
	before := redistest.DumpValues(t, e.rdb)
	valid := map[string]any{"name": "Grace Hopper", "email": "grace@navy.example", "phone": "+1 555 0100"}
	with := func(field, value string) map[string]any {
		c := maps.Clone(valid)
		c[field] = value
		return c
	}
	for _, tc := range []struct {
		name    string
		contact any
		url     string
		status  int
		code    string
	}{
		{name: "e-mail without at", contact: with("email", "grace.navy.example"), status: http.StatusBadRequest, code: "invalid_request"},
		{name: "e-mail with display name", contact: with("email", "Grace <grace@navy.example>"), status: http.StatusBadRequest, code: "invalid_request"},
		{name: "e-mail with header injection", contact: with("email", "grace@navy.example\r\nBcc: all@navy.example"), status: http.StatusBadRequest, code: "invalid_request"},
		{name: "e-mail over 254 bytes", contact: with("email", strings.Repeat("g", 250)+"@navy.example"), status: http.StatusBadRequest, code: "invalid_request"},
		{name: "name over 200 bytes", contact: with("name", strings.Repeat("G", 201)), status: http.StatusBadRequest, code: "invalid_request"},
		{name: "name of 67 three-byte runes", contact: with("name", strings.Repeat("€", 67)), status: http.StatusBadRequest, code: "invalid_request"},
		{name: "phone with letters", contact: with("phone", "+1 555 CALL"), status: http.StatusBadRequest, code: "invalid_request"},
		{name: "phone with an extension word", contact: with("phone", "555 0100 ext 5"), status: http.StatusBadRequest, code: "invalid_request"},
		{name: "phone over 40 bytes", contact: with("phone", strings.Repeat("5", 41)), status: http.StatusBadRequest, code: "invalid_request"},
		{name: "contact not an object", contact: "Grace Hopper", status: http.StatusBadRequest, code: "invalid_json|invalid_request"},
		{name: "url not http", contact: valid, url: "javascript:alert(1)", status: http.StatusBadRequest, code: "invalid_request"},
		{name: "url of another origin", contact: valid, url: "https://evil.example/help", status: http.StatusUnprocessableEntity, code: "url_not_in_site"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			url := tc.url
			if url == "" {
				url = shopOrigin + "/help"
			}
			r := cmPost(e, map[string]any{"site": "shop", "contact": tc.contact, "marketing_opt_in": true, "url": url},
				map[string]string{tokenHeader: token, "Origin": shopOrigin})
			if r.status != tc.status || !slices.Contains(strings.Split(tc.code, "|"), r.errorCode(t)) {
				t.Errorf("answer = %d %s, want %d %s", r.status, r.body, tc.status, tc.code)
			}
			if diff := cmp.Diff(before, redistest.DumpValues(t, e.rdb)); diff != "" {
				t.Errorf("the refused chat wrote (-before +after):\n%s", diff)
			}
		})
	}
	// At the limits, the same contact is a chat.
	r := cmPost(e, map[string]any{"site": "shop", "url": shopOrigin + "/help", "contact": map[string]any{
		"name": strings.Repeat("G", 200), "email": "Grace.Hopper@Navy.example", "phone": "+1 (555) 010-0100"}}, nil)
	if r.status != http.StatusCreated {
		t.Errorf("contact at the limits: %d %s", r.status, r.body)
	}
}

// A chat without identity is stored and links nothing: no token, no cookie,
// no visitor key.
func TestChatWithoutIdentity(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	e.mustTrack("shop", shopOrigin+"/someone-else", "")
	r := cmPost(e, map[string]any{"site": "shop", "url": shopOrigin + "/help",
		"contact": map[string]any{"name": "Grace Hopper", "email": "grace@navy.example"}}, map[string]string{"Origin": shopOrigin})
	if r.status != http.StatusCreated {
		t.Fatalf("chat: %d %s", r.status, r.body)
	}
	m := r.json(t)
	if m["previous_chats"] != float64(0) || m["returning"] != false {
		t.Errorf("answer = %s, want no previous chats", r.body)
	}
	if _, ok := m["token"]; ok {
		t.Errorf("answer carries a token: %s", r.body)
	}
	if len(r.cookies) != 0 {
		t.Errorf("cookies set: %v", r.cookies)
	}
	chatID := m["chat_id"].(string)
	c := cmChat(e, "shop", chatID)
	if c["vk"] != "" || c["vid"] != "" || c["sid"] != "" || c["pc"] != "" {
		t.Errorf("identity-less chat is linked: %v", c)
	}
	v := opDecode[cmChatView](t, e.operatorGet("/v1/sites/shop/chats/"+chatID, shopOperatorKey))
	if len(v.Trail) != 0 || len(v.PreviousChats) != 0 || v.Contact.Email != "grace@navy.example" || v.URL != shopOrigin+"/help" {
		t.Errorf("context = %+v", v)
	}
}

// DNT or GPC win over a valid identity: the chat is created, but no identity
// is used, so nothing is linked even when the visitor had chats.
func TestChatDNTAndGPCUseNoIdentity(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		header string
	}{
		{name: "dnt", header: "DNT"},
		{name: "gpc", header: "Sec-GPC"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			token := e.mustTrack("shop", shopOrigin+"/a", "")
			vid := e.visitorID("shop", token)
			first := opChat(e, token, "Grace Hopper", "grace@navy.example")

			r := e.startChat("shop", token, "Grace Hopper", "grace@navy.example", shopOrigin+"/a", map[string]string{tc.header: "1"})
			if r.status != http.StatusCreated {
				t.Fatalf("chat: %d %s", r.status, r.body)
			}
			m := r.json(t)
			if m["previous_chats"] != float64(0) || m["returning"] != false {
				t.Errorf("answer = %s, want nothing linked", r.body)
			}
			if _, ok := m["token"]; ok {
				t.Errorf("answer carries a token: %s", r.body)
			}
			if r.cookie("vt_shop") != nil && r.cookie("vt_shop").MaxAge >= 0 {
				t.Errorf("identity cookie set: %v", r.cookie("vt_shop"))
			}
			chatID := m["chat_id"].(string)
			c := cmChat(e, "shop", chatID)
			for _, f := range []string{"vk", "vid", "sid", "pc", "br", "os", "rf"} {
				if c[f] != "" {
					t.Errorf("chat field %s = %q, want empty (no identity used)", f, c[f])
				}
			}
			if diff := cmp.Diff([]string{first}, cmChatsOf(e, "shop", vid)); diff != "" {
				t.Errorf("visitor's chats (-want +got):\n%s", diff)
			}
			v := opDecode[cmChatView](t, e.operatorGet("/v1/sites/shop/chats/"+chatID, shopOperatorKey))
			if len(v.Trail) != 0 || len(v.PreviousChats) != 0 {
				t.Errorf("context of the %s chat = %+v, want no trail and no previous chats", tc.name, v)
			}
		})
	}
}

// An erased visitor's token is foreign (a tombstone holds the keyed hash of
// the id): a chat with it links nothing.
func TestChatTombstonedTokenIsForeign(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	token := e.mustTrack("shop", shopOrigin+"/a", "")
	vid := e.visitorID("shop", token)
	first := opChat(e, token, "Grace Hopper", "grace@navy.example")
	vkey := e.hasher.VisitorKey("shop", vid)
	if err := e.rdb.Set(context.Background(), "v:{shop:"+vkey+"}:t", vkey, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}

	r := e.startChat("shop", token, "Grace Hopper", "grace@navy.example", shopOrigin+"/a", nil)
	if r.status != http.StatusCreated {
		t.Fatalf("chat: %d %s", r.status, r.body)
	}
	m := r.json(t)
	if m["previous_chats"] != float64(0) || m["returning"] != false {
		t.Errorf("answer = %s, want nothing linked", r.body)
	}
	c := cmChat(e, "shop", m["chat_id"].(string))
	if c["vk"] != "" || c["vid"] != "" || c["sid"] != "" || c["pc"] != "" {
		t.Errorf("chat of a tombstoned visitor is linked: %v", c)
	}
	if diff := cmp.Diff([]string{first}, cmChatsOf(e, "shop", vid)); diff != "" {
		t.Errorf("erased visitor's chats (-want +got):\n%s", diff)
	}
}

// On an on-chat site the chat start is the visitor's request: it issues the
// identity, records consent given by chat_start, starts the session at the
// chat's url, and page views are tracked from then on (invariant 2).
func TestChatOnChatSiteIssuesIdentity(t *testing.T) {
	t.Parallel()
	e := cmNewOnchatEnv(t)
	origin := map[string]string{"Origin": cmOnchatOrigin}
	r := e.pageview("onchat", cmOnchatOrigin+"/", "", origin)
	if r.status != http.StatusOK || r.json(t)["tracked"] != false || r.json(t)["reason"] != "no_consent" {
		t.Fatalf("page view before the chat: %d %s", r.status, r.body)
	}
	if keys := cmKeysWith(e, "v:", "lv:", "ch:"); len(keys) != 0 {
		t.Fatalf("keys before the chat: %q", keys)
	}

	r = cmPost(e, map[string]any{"site": "onchat", "url": cmOnchatOrigin + "/help?topic=x#top",
		"contact": map[string]any{"name": "Grace Hopper"}}, origin)
	if r.status != http.StatusCreated {
		t.Fatalf("chat: %d %s", r.status, r.body)
	}
	m := r.json(t)
	token, _ := m["token"].(string)
	if token == "" || m["previous_chats"] != float64(0) {
		t.Fatalf("chat answer = %s, want a token", r.body)
	}
	ck := r.cookie("vt_onchat")
	if ck == nil || ck.Value != token || !ck.HttpOnly || ck.MaxAge <= 0 {
		t.Errorf("identity cookie = %+v, want vt_onchat with the token", ck)
	}
	vid := e.visitorID("onchat", token)
	chatID := m["chat_id"].(string)

	recs := cmRecords(e, e.profileKey("onchat", vid)+":r")
	if len(recs) != 1 {
		t.Fatalf("consent records = %+v, want one", recs)
	}
	rec := recs[0]
	if !rec.Analytics || rec.Method != "chat_start" || rec.PolicyVersion != "p1" || rec.VisitorID != vid ||
		rec.TextSHA256 != cmTextSHA256(cmOnchatLegal) || !rec.Time.Equal(e.clock.Now()) || rec.UserAgent == "" {
		t.Errorf("consent record = %+v, want analytics given by chat_start", rec)
	}
	choice, err := e.rdb.HGetAll(context.Background(), e.profileKey("onchat", vid)+":c").Result()
	if err != nil || choice["a"] != "1" || choice["pv"] != "p1" {
		t.Errorf("consent choice = %v (%v), want analytics for p1", choice, err)
	}
	p := e.current("onchat", vid)
	if p["cu"] != cmOnchatOrigin+"/help" || p["np"] != "1" {
		t.Errorf("profile = %v, want the session started at the chat's url", p)
	}
	if c := cmChat(e, "onchat", chatID); c["sid"] != p["sid"] || c["vk"] == "" {
		t.Errorf("chat %v is not bound to session %s", c, p["sid"])
	}
	v := opDecode[cmChatView](t, e.operatorGet("/v1/sites/onchat/chats/"+chatID, cmOnchatKey))
	if len(v.Trail) != 1 || v.Trail[0].URL != cmOnchatOrigin+"/help" {
		t.Errorf("chat trail = %+v, want the chat's url", v.Trail)
	}

	// From then on the visitor's page views are tracked, in the chat's session.
	e.clock.Advance(time.Minute)
	e.pageview("onchat", cmOnchatOrigin+"/pricing", token, origin)
	if p := e.current("onchat", vid); p["np"] != "2" || p["cu"] != cmOnchatOrigin+"/pricing" {
		t.Errorf("profile after a page view = %v, want it tracked", p)
	}
	v = opDecode[cmChatView](t, e.operatorGet("/v1/sites/onchat/chats/"+chatID, cmOnchatKey))
	if len(v.Trail) != 2 {
		t.Errorf("chat trail = %+v, want the session's two pages", v.Trail)
	}
	live := opDecode[opLive](t, e.operatorGet("/v1/sites/onchat/visitors/live", cmOnchatKey))
	if len(live.Visitors) != 1 || live.Visitors[0].Pages != 2 {
		t.Errorf("live view = %+v", live)
	}
}

// DNT and GPC still win on an on-chat site, and bots get no identity: the
// chat is created without one.
func TestChatOnChatSiteRefusals(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		headers map[string]string
	}{
		{name: "dnt", headers: map[string]string{"DNT": "1"}},
		{name: "gpc", headers: map[string]string{"Sec-GPC": "1"}},
		{name: "bot", headers: map[string]string{"User-Agent": googlebotUA}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := cmNewOnchatEnv(t)
			h := map[string]string{"Origin": cmOnchatOrigin}
			maps.Copy(h, tc.headers)
			r := cmPost(e, map[string]any{"site": "onchat", "url": cmOnchatOrigin + "/help", "marketing_opt_in": true,
				"contact": map[string]any{"name": "Grace Hopper"}}, h)
			if r.status != http.StatusCreated {
				t.Fatalf("chat: %d %s", r.status, r.body)
			}
			if _, ok := r.json(t)["token"]; ok {
				t.Errorf("answer carries a token: %s", r.body)
			}
			if len(r.cookies) != 0 {
				t.Errorf("cookies set: %v", r.cookies)
			}
			if keys := cmKeysWith(e, "v:", "lv:"); len(keys) != 0 {
				t.Errorf("identity keys written: %q", keys)
			}
			if c := cmChat(e, "onchat", r.json(t)["chat_id"].(string)); c["vk"] != "" || c["sid"] != "" {
				t.Errorf("chat linked to an identity: %v", c)
			}
		})
	}
}

// marketing_opt_in writes a consent record (marketing, chat_start): under the
// visitor with an identity, under the chat without one.
func TestChatMarketingOptInRecordsConsent(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	shopText := cmTextSHA256("We record the pages you visit to help our chat team.")
	token := e.mustTrack("shop", shopOrigin+"/", "")
	vid := e.visitorID("shop", token)
	contact := map[string]any{"name": "Grace Hopper", "email": "grace@navy.example"}

	m := cmMustChat(e, map[string]any{"site": "shop", "contact": contact, "marketing_opt_in": true, "url": shopOrigin + "/"},
		map[string]string{tokenHeader: token})
	withID := m["chat_id"].(string)
	m = cmMustChat(e, map[string]any{"site": "shop", "contact": contact, "marketing_opt_in": true, "url": shopOrigin + "/"}, nil)
	without := m["chat_id"].(string)
	m = cmMustChat(e, map[string]any{"site": "shop", "contact": contact, "marketing_opt_in": false, "url": shopOrigin + "/"}, nil)
	declined := m["chat_id"].(string)

	for _, tc := range []struct {
		name    string
		key     string
		visitor string
	}{
		{name: "identity", key: e.profileKey("shop", vid) + ":r", visitor: vid},
		{name: "no identity", key: "ch:{shop:" + without + "}:r", visitor: ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			recs := cmRecords(e, tc.key)
			if len(recs) != 1 {
				t.Fatalf("records under %s = %+v, want one", tc.key, recs)
			}
			r := recs[0]
			if !r.Marketing || r.Method != "chat_start" || r.VisitorID != tc.visitor || r.PolicyVersion != "2026-11" ||
				r.TextSHA256 != shopText || !r.Time.Equal(e.clock.Now()) || r.IP == "127.0.0.1" {
				t.Errorf("record = %+v, want marketing given by chat_start", r)
			}
			if ttl := e.rdb.PTTL(context.Background(), tc.key).Val(); ttl <= 0 {
				t.Errorf("records TTL = %v", ttl)
			}
		})
	}
	if got := cmChat(e, "shop", withID)["mk"]; got != "1" {
		t.Errorf("mk of the opted-in chat = %q, want 1", got)
	}
	if got := cmChat(e, "shop", declined)["mk"]; got != "0" {
		t.Errorf("mk of the declined chat = %q, want 0", got)
	}
	if n := e.rdb.Exists(context.Background(), "ch:{shop:"+declined+"}:r").Val(); n != 0 {
		t.Errorf("a chat without opt-in has consent records")
	}
}

var cmSealed = regexp.MustCompile(`^k1:[A-Za-z0-9+/]+$`)

// Invariant 8: contact details are encrypted at rest and appear in no key,
// value or log line; neither does the visitor's full IP.
func TestChatContactEncryptedAtRest(t *testing.T) {
	t.Parallel()
	e := newEnv(t, opBehindProxy)
	const (
		name  = "Grace Hopper"
		email = "grace@navy.example"
		phone = "+1 555 0100"
	)
	h := map[string]string{"X-Forwarded-For": londonIP, "Origin": shopOrigin}
	contact := map[string]any{"name": name, "email": email, "phone": phone}
	token := opTrack(e, "shop", shopOrigin+"/a", "", "", h)
	h[tokenHeader] = token

	first := cmMustChat(e, map[string]any{"site": "shop", "contact": contact, "marketing_opt_in": true, "url": shopOrigin + "/a"}, h)["chat_id"].(string)
	e.clock.Advance(time.Minute)
	second := cmMustChat(e, map[string]any{"site": "shop", "contact": contact, "url": shopOrigin + "/a"}, h)["chat_id"].(string)
	delete(h, tokenHeader)
	anon := cmMustChat(e, map[string]any{"site": "shop", "contact": contact, "marketing_opt_in": true, "url": shopOrigin + "/a"}, h)["chat_id"].(string)

	// Operators read them decrypted.
	v := opDecode[cmChatView](t, e.operatorGet("/v1/sites/shop/chats/"+second, shopOperatorKey))
	want := contactJSON{Name: name, Email: email, Phone: phone}
	if v.Contact != want || len(v.PreviousChats) != 1 || v.PreviousChats[0].Contact != want {
		t.Errorf("context = %+v, want the contact decrypted, here and in the previous chat", v)
	}

	for _, id := range []string{first, second, anon} {
		c := cmChat(e, "shop", id)
		for _, f := range []string{"name", "email", "phone"} {
			if !cmSealed.MatchString(c[f]) {
				t.Errorf("chat %s field %s = %q, want kid:base64", id, f, c[f])
			}
		}
	}
	secrets := []string{name, "Grace", "Hopper", email, "grace@", "navy.example", phone, "555 0100", londonIP}
	values := redistest.DumpValues(t, e.rdb)
	for key, value := range values {
		for _, s := range secrets {
			if strings.Contains(key, s) {
				t.Errorf("key %q contains %q", key, s)
			}
			if strings.Contains(value, s) {
				t.Errorf("value of %s contains %q:\n%s", key, s, value)
			}
		}
	}
	e.assertLogsClean(append(secrets, token)...)
}

// The additional data site|field|record binds a ciphertext to its place: moved
// to another chat, field or site it fails to decrypt, and the read answers 500,
// never the wrong plaintext.
func TestChatCiphertextBoundToItsPlace(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		fromField string
		toSite    string
		toField   string
		toSame    bool
	}{
		{name: "another chat", fromField: "email", toSite: "shop", toField: "email"},
		{name: "another field", fromField: "name", toSite: "shop", toField: "email", toSame: true},
		{name: "another site", fromField: "email", toSite: "blog", toField: "email"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			a := e.startChat("shop", "", "Grace Hopper", "grace@navy.example", shopOrigin+"/", nil).json(t)["chat_id"].(string)
			origin := map[string]string{"shop": shopOrigin, "blog": blogOrigin}[tc.toSite]
			b := e.startChat(tc.toSite, "", "Alan Turing", "alan@bletchley.example", origin+"/", nil).json(t)["chat_id"].(string)
			if tc.toSame {
				b = a
			}
			ctx := context.Background()
			sealed := e.rdb.HGet(ctx, "ch:{shop:"+a+"}", tc.fromField).Val()
			if err := e.rdb.HSet(ctx, "ch:{"+tc.toSite+":"+b+"}", tc.toField, sealed).Err(); err != nil {
				t.Fatal(err)
			}
			key := map[string]string{"shop": shopOperatorKey, "blog": blogOperatorKey}[tc.toSite]
			r := e.operatorGet("/v1/sites/"+tc.toSite+"/chats/"+b, key)
			if r.status != http.StatusInternalServerError || r.errorCode(t) != "internal" {
				t.Errorf("read of the tampered chat = %d %s, want 500 internal", r.status, r.body)
			}
			for _, leak := range []string{"Grace", "grace@navy.example", "Alan", "alan@bletchley.example"} {
				if strings.Contains(string(r.body), leak) {
					t.Errorf("answer contains %q: %s", leak, r.body)
				}
			}
			if !tc.toSame {
				v := opDecode[cmChatView](t, e.operatorGet("/v1/sites/shop/chats/"+a, shopOperatorKey))
				if v.Contact.Email != "grace@navy.example" {
					t.Errorf("source chat = %+v, want it intact", v.Contact)
				}
			}
			e.assertLogsClean("Grace", "grace@navy.example", "Alan", "alan@bletchley.example")
		})
	}
}

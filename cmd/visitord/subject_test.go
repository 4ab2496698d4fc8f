package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/visitord/visitord/internal/redistest"
	"github.com/visitord/visitord/internal/visitor"
)

// The subject CLI: `visitord subject export|erase`, the privacy team's tools at
// a shell, on the same code path as the API and audited as "cli".

const (
	cliName  = "Grace Hopper"
	cliEmail = "grace@navy.example"
	cliPhone = "+1 555 0100"
	cliPage  = "https://shop.example/cli/compilers"
)

// cliExport is the JSON document `subject export` prints.
type cliExport struct {
	Site      string `json:"site"`
	VisitorID string `json:"visitor_id"`
	ChatID    string `json:"chat_id"`
	Profile   *struct {
		VisitorID string `json:"visitor_id"`
	} `json:"profile"`
	Sessions []struct {
		Pages []struct {
			URL string `json:"url"`
		} `json:"pages"`
	} `json:"sessions"`
	Chats []struct {
		ChatID  string `json:"chat_id"`
		Contact struct {
			Name  string `json:"name"`
			Email string `json:"email"`
			Phone string `json:"phone"`
		} `json:"contact"`
	} `json:"chats"`
}

// runSubject runs `visitord subject args...` and returns stdout, stderr and its error.
func runSubject(t testing.TB, env map[string]string, args ...string) (string, string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var stdout, stderr syncBuffer
	err := run(ctx, append([]string{"subject"}, args...), mapEnv(env), &stdout, &stderr)
	return stdout.String(), stderr.String(), err
}

// cliChat starts a chat at url through the running service; token "" for none.
func cliChat(t testing.TB, base, token, url string) string {
	t.Helper()
	h := map[string]string{"Origin": "https://shop.example", "User-Agent": chromeUA}
	if token != "" {
		h["X-Visitor-Token"] = token
	}
	b, _ := json.Marshal(map[string]any{"site": "shop", "url": url,
		"contact": map[string]string{"name": cliName, "email": cliEmail, "phone": cliPhone}})
	resp, body := post(t, http.DefaultClient, base+"/v1/chats", string(b), h)
	var ans struct {
		ChatID string `json:"chat_id"`
	}
	if err := json.Unmarshal(body, &ans); err != nil || resp.StatusCode != http.StatusCreated || ans.ChatID == "" {
		t.Fatalf("chat: %d %s", resp.StatusCode, body)
	}
	return ans.ChatID
}

func TestSubjectCommands(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	rdb := srv.Client(t)
	env := prodEnv(srv, writeSites(t, `
sites:
  - id: shop
    origins: ["https://shop.example"]
    legal_text: "We record the pages you visit to help our chat team."
    controller: {name: "Shop Ltd", contact: "privacy@shop.example"}
    consent: opt-out
`))
	in := start(t, env)
	base := "http://" + in.addr

	// A visitor written through the running service: a page view, then a chat.
	resp, body := post(t, http.DefaultClient, base+"/v1/track",
		`{"site":"shop","type":"pageview","url":"`+cliPage+`","title":"Compilers"}`,
		map[string]string{"Origin": "https://shop.example", "User-Agent": chromeUA})
	var ans trackAnswer
	if err := json.Unmarshal(body, &ans); err != nil || resp.StatusCode != http.StatusOK || !ans.Tracked {
		t.Fatalf("track: %d %s", resp.StatusCode, body)
	}
	signer, err := visitor.NewSigner([][]byte{[]byte(strings.Split(env["VISITORD_COOKIE_SECRET"], ",")[0])})
	if err != nil {
		t.Fatal(err)
	}
	tok, ok := signer.Verify(ans.Token, "shop", time.Now())
	if !ok || tok.VisitorID == "" {
		t.Fatalf("token %q is not an identity of shop", ans.Token)
	}
	id := tok.VisitorID
	chat := cliChat(t, base, ans.Token, cliPage)
	anon := cliChat(t, base, "", "https://shop.example/contact")

	// Export: the whole visitor, contacts decrypted with VISITORD_DATA_KEY.
	out, errOut, err := runSubject(t, env, "export", "--site", "shop", "--visitor", id)
	if err != nil {
		t.Fatalf("subject export: %v\nstderr:\n%s", err, errOut)
	}
	var x cliExport
	if err := json.Unmarshal([]byte(out), &x); err != nil {
		t.Fatalf("subject export printed no JSON: %v\n%s", err, out)
	}
	if x.Site != "shop" || x.VisitorID != id || x.Profile == nil || x.Profile.VisitorID != id {
		t.Errorf("export names site %q visitor %q profile %+v, want shop and %s", x.Site, x.VisitorID, x.Profile, id)
	}
	if len(x.Sessions) != 1 || len(x.Sessions[0].Pages) != 1 || x.Sessions[0].Pages[0].URL != cliPage {
		t.Errorf("export sessions %+v, want one with %s", x.Sessions, cliPage)
	}
	if len(x.Chats) != 1 || x.Chats[0].ChatID != chat {
		t.Fatalf("export chats %+v, want %s", x.Chats, chat)
	}
	if c := x.Chats[0].Contact; c.Name != cliName || c.Email != cliEmail || c.Phone != cliPhone {
		t.Errorf("export contact %+v, want it decrypted", c)
	}
	for _, leak := range []string{cliEmail, cliName, cliPhone, id} {
		if strings.Contains(errOut, leak) {
			t.Errorf("subject export wrote %q to stderr:\n%s", leak, errOut)
		}
	}

	// An identity-less chat is a subject of its own.
	out, errOut, err = runSubject(t, env, "export", "--site", "shop", "--chat", anon)
	if err != nil {
		t.Fatalf("subject export --chat: %v\nstderr:\n%s", err, errOut)
	}
	var cx cliExport
	if err := json.Unmarshal([]byte(out), &cx); err != nil {
		t.Fatalf("subject export --chat printed no JSON: %v\n%s", err, out)
	}
	if cx.ChatID != anon || len(cx.Chats) != 1 || cx.Chats[0].Contact.Email != cliEmail {
		t.Errorf("chat export %+v, want chat %s with its decrypted contact", cx, anon)
	}

	// Erase: then the visitor is not found, and Redis holds nothing of them.
	out, errOut, err = runSubject(t, env, "erase", "--site", "shop", "--visitor", id)
	if err != nil {
		t.Fatalf("subject erase: %v\nstderr:\n%s", err, errOut)
	}
	if out != "erased\n" {
		t.Errorf("subject erase printed %q, want \"erased\\n\"", out)
	}
	_, _, err = runSubject(t, env, "export", "--site", "shop", "--visitor", id)
	if !errors.Is(err, visitor.ErrNotFound) {
		t.Errorf("export after erase = %v, want not found", err)
	}
	tomb := "v:{shop:" + mustVisitorKey(t, env, id) + "}:t"
	for k, v := range redistest.DumpValues(t, rdb) {
		for _, leak := range []string{id, chat, cliPage} {
			if strings.Contains(k, leak) || strings.Contains(v, leak) {
				t.Errorf("after subject erase %s holds %q: %s", k, leak, v)
			}
		}
	}
	if n, _ := rdb.Exists(context.Background(), tomb).Result(); n != 1 {
		t.Errorf("no tombstone %s after subject erase", tomb)
	}

	// Audited as "cli", targets as keyed hashes.
	msgs, err := rdb.XRange(context.Background(), "au:{shop}", "-", "+").Result()
	if err != nil {
		t.Fatal(err)
	}
	var cli []string
	for _, m := range msgs {
		if m.Values["actor"] == "cli" {
			cli = append(cli, m.Values["action"].(string))
		}
		for _, v := range m.Values {
			if s, _ := v.(string); s == id || s == anon || s == chat {
				t.Errorf("audit entry %v holds a raw id", m.Values)
			}
		}
	}
	// The visitor's export is audited under the visitor and its chat.
	if want := []string{"subject.export", "subject.export", "chat.export", "subject.erase"}; strings.Join(cli, ",") != strings.Join(want, ",") {
		t.Errorf("audit entries by cli %q, want %q", cli, want)
	}
	redistest.AssertAllKeysHaveTTL(t, rdb, func(k string) bool { return strings.HasPrefix(k, "cfg:") })
}

// mustVisitorKey is the store key of a visitor under env's VISITORD_INDEX_KEY.
func mustVisitorKey(t testing.TB, env map[string]string, id string) string {
	t.Helper()
	key, err := base64.StdEncoding.DecodeString(env["VISITORD_INDEX_KEY"])
	if err != nil {
		t.Fatal(err)
	}
	h, err := visitor.NewHasher(key)
	if err != nil {
		t.Fatal(err)
	}
	return h.VisitorKey("shop", id)
}

func TestSubjectCommandErrors(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t)
	env := prodEnv(srv, writeSites(t, `
sites:
  - id: shop
    origins: ["https://shop.example"]
    legal_text: "We record the pages you visit to help our chat team."
    controller: {name: "Shop Ltd", contact: "privacy@shop.example"}
    consent: opt-out
`))
	noRedis := map[string]string{}
	for k, v := range env {
		if k != "VISITORD_REDIS_URL" {
			noRedis[k] = v
		}
	}
	id := visitor.NewVisitorID()
	tests := []struct {
		name string
		env  map[string]string
		args []string
		want string // in the error
	}{
		{name: "no verb", env: env, args: nil, want: "usage"},
		{name: "unknown verb", env: env, args: []string{"frobnicate", "--site", "shop", "--visitor", id}, want: "usage"},
		{name: "no site", env: env, args: []string{"export", "--visitor", id}, want: "usage"},
		{name: "no subject", env: env, args: []string{"export", "--site", "shop"}, want: "usage"},
		{name: "visitor and chat", env: env, args: []string{"erase", "--site", "shop", "--visitor", id, "--chat", id}, want: "usage"},
		{name: "unknown flag", env: env, args: []string{"export", "--site", "shop", "--email", "a@b.example"}, want: "email"},
		{name: "without VISITORD_REDIS_URL", env: noRedis, args: []string{"export", "--site", "shop", "--visitor", id}, want: "VISITORD_REDIS_URL"},
		{name: "unknown site", env: env, args: []string{"export", "--site", "nope", "--visitor", id}, want: "nope"},
		{name: "unknown visitor", env: env, args: []string{"export", "--site", "shop", "--visitor", id}, want: "not found"},
		{name: "malformed visitor", env: env, args: []string{"erase", "--site", "shop", "--visitor", "x"}, want: "not found"},
		{name: "unknown chat", env: env, args: []string{"erase", "--site", "shop", "--chat", visitor.NewChatID()}, want: "not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, _, err := runSubject(t, tt.env, tt.args...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("subject %q = %v, want an error naming %q", tt.args, err, tt.want)
			}
			if out != "" {
				t.Errorf("subject %q printed %q on failure", tt.args, out)
			}
		})
	}
	if keys := redistest.Keys(t, srv.Client(t)); len(keys) != 0 {
		t.Errorf("failed subject commands wrote %q", keys)
	}
}

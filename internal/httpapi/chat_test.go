package httpapi

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"
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

// cmPost posts a chat start with the given body and headers.
func cmPost(e *env, body map[string]any, headers map[string]string) resp {
	e.t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.do(req{method: http.MethodPost, path: "/v1/chats", body: string(b), headers: headers})
}

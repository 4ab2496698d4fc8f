package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestHTTPConn sends requests through one httpConn to a net/http server:
// each arrives whole (method, path, headers, body), each answer's status and
// body come back, the connection is kept alive between them, and one the
// server closes is dialled again.
func TestHTTPConn(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		switch r.URL.Path {
		case "/v1/track":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"tracked":true,"token":"`+r.Header.Get("X-Visitor-Token")+string(b)+`"}`)
		case "/close":
			w.Header().Set("Connection", "close")
			w.WriteHeader(http.StatusNoContent)
		default:
			http.NotFound(w, r)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	u, _ := url.Parse(srv.URL)
	h := newHTTPConn(u.Host, 5*time.Second)
	defer h.close()

	for i, tc := range []struct {
		path, token, body string
		status            int
		want              string
		conns             int32 // connections the server saw after the request
	}{
		{path: "/v1/track", token: "t1", body: "a", status: 200, want: `{"tracked":true,"token":"t1a"}`, conns: 1},
		{path: "/v1/track", token: "t2", body: strings.Repeat("b", 5000), status: 200, want: `{"tracked":true,"token":"t2` + strings.Repeat("b", 5000) + `"}`, conns: 1},
		{path: "/nowhere", status: 404, want: "404 page not found\n", conns: 1},
		{path: "/close", status: 204, conns: 1},
		{path: "/v1/track", token: "t3", body: "c", status: 200, want: `{"tracked":true,"token":"t3c"}`, conns: 2},
	} {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+tc.path, bytes.NewReader([]byte(tc.body)))
		req.Header.Set("X-Visitor-Token", tc.token)
		status, body, err := h.do(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if status != tc.status || string(body) != tc.want {
			t.Errorf("request %d: %d %q, want %d %q", i, status, body, tc.status, tc.want)
		}
		if n := conns.Load(); n != tc.conns {
			t.Errorf("request %d: the server saw %d connections, want %d", i, n, tc.conns)
		}
	}
}

// TestHTTPConnRedialsAfterAFailure: a request to a server that is gone fails,
// and the next one, to a server listening again, succeeds on a new connection.
func TestHTTPConnRedialsAfterAFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })}
	go srv.Serve(ln)
	h := newHTTPConn(addr, 5*time.Second)
	defer h.close()
	send := func() error {
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/", strings.NewReader("{}"))
		_, _, err := h.do(req)
		return err
	}
	if err := send(); err != nil {
		t.Fatalf("first request: %v", err)
	}
	srv.Close() // closes the listener and the kept-alive connection
	if err := send(); err == nil {
		t.Fatal("a request after the server closed succeeded")
	}
	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listening again on %s: %v", addr, err)
	}
	srv = &http.Server{Handler: srv.Handler}
	go srv.Serve(ln)
	defer srv.Close()
	if err := send(); err != nil {
		t.Fatalf("request after the server came back: %v", err)
	}
}

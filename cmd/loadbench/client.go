package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

// httpConn is one keep-alive HTTP/1.1 connection of the load generator, used
// by one goroutine: a request is written with http.Request.Write and its
// response read with http.ReadResponse on the same goroutine, as wrk does it
// on its event loop. net/http's Transport would add a reader and a writer
// goroutine per connection and, for a response with a body, a hand-off
// between them and the caller: work the generator then does for visitord's
// answers (a JSON body) and not for the floor's (204), and a third of its CPU
// per request against the floor.
type httpConn struct {
	addr    string // host:port
	timeout time.Duration
	c       net.Conn
	br      *bufio.Reader
	bw      *bufio.Writer
}

func newHTTPConn(addr string, timeout time.Duration) *httpConn {
	return &httpConn{addr: addr, timeout: timeout}
}

// do sends req and returns its status and whole body. A connection that fails
// or that the server closes is dialled again for the next request.
func (h *httpConn) do(req *http.Request) (status int, body []byte, err error) {
	if h.c == nil {
		c, err := net.DialTimeout("tcp", h.addr, h.timeout)
		if err != nil {
			return 0, nil, err
		}
		h.c, h.br, h.bw = c, bufio.NewReaderSize(c, 4096), bufio.NewWriterSize(c, 4096)
	}
	if err := h.c.SetDeadline(time.Now().Add(h.timeout)); err != nil {
		h.close()
		return 0, nil, err
	}
	if err := req.Write(h.bw); err != nil {
		h.close()
		return 0, nil, err
	}
	if err := h.bw.Flush(); err != nil {
		h.close()
		return 0, nil, err
	}
	res, err := http.ReadResponse(h.br, req)
	if err != nil {
		h.close()
		return 0, nil, err
	}
	body, err = io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		h.close()
		return 0, nil, fmt.Errorf("body: %w", err)
	}
	if res.Close {
		h.close()
	}
	return res.StatusCode, body, nil
}

func (h *httpConn) close() {
	if h.c != nil {
		h.c.Close()
		h.c = nil
	}
}

// Package web holds the browser files visitord serves from its binary: the
// widget script a site embeds, the operator console and the demo shop. It only
// prepares them (content type, gzip, strong ETags); package httpapi serves them.
package web

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"path"
	"strings"
)

//go:embed widget.js console.html console.js console.css demo.html demo.js demo.css
var files embed.FS

// Asset is one file ready to serve, as it is and gzipped, each with its own
// strong ETag (a strong ETag names one exact byte sequence).
type Asset struct {
	Name        string
	ContentType string
	Body        []byte
	Gzip        []byte
	ETag        string
	GzipETag    string
}

// Set is every asset by name: the embedded files, and the demo shop's pages
// rendered from demo.html as demo/home.html, demo/products.html and demo/cart.html.
type Set struct {
	byName map[string]*Asset
}

// Get returns the asset called name, or nil.
func (s *Set) Get(name string) *Asset { return s.byName[name] }

// DemoPage is one page of the demo shop.
type DemoPage struct {
	Name  string // home, products, cart
	Path  string // the page's route
	Title string
}

// DemoPages are the demo shop's pages, all rendered from demo.html.
var DemoPages = []DemoPage{
	{Name: "home", Path: "/demo", Title: "Welcome"},
	{Name: "products", Path: "/demo/products", Title: "Products"},
	{Name: "cart", Path: "/demo/cart", Title: "Your cart"},
}

var contentTypes = map[string]string{
	".js":   "text/javascript; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".html": "text/html; charset=utf-8",
}

// Load reads, renders and compresses every asset.
func Load() (*Set, error) {
	s := &Set{byName: map[string]*Asset{}}
	entries, err := files.ReadDir(".")
	if err != nil {
		return nil, err
	}
	for _, e := range entries {
		if e.Name() == "demo.html" {
			continue
		}
		b, err := files.ReadFile(e.Name())
		if err != nil {
			return nil, err
		}
		if err := s.add(e.Name(), b); err != nil {
			return nil, err
		}
	}
	tpl, err := template.ParseFS(files, "demo.html")
	if err != nil {
		return nil, err
	}
	for _, p := range DemoPages {
		var buf bytes.Buffer
		if err := tpl.Execute(&buf, p); err != nil {
			return nil, fmt.Errorf("demo page %s: %w", p.Name, err)
		}
		if err := s.add("demo/"+p.Name+".html", buf.Bytes()); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (s *Set) add(name string, body []byte) error {
	ct, ok := contentTypes[path.Ext(name)]
	if !ok {
		return fmt.Errorf("asset %s: no content type for its extension", name)
	}
	var gz bytes.Buffer
	w, err := gzip.NewWriterLevel(&gz, gzip.BestCompression)
	if err != nil {
		return err
	}
	if _, err := w.Write(body); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	s.byName[name] = &Asset{
		Name: name, ContentType: ct, Body: body, Gzip: gz.Bytes(),
		ETag: etag(body, ""), GzipETag: etag(gz.Bytes(), "-gz"),
	}
	return nil
}

// etag is a strong entity tag naming the exact bytes of b.
func etag(b []byte, suffix string) string {
	sum := sha256.Sum256(b)
	return `"` + strings.TrimRight(base64.RawURLEncoding.EncodeToString(sum[:16]), "=") + suffix + `"`
}

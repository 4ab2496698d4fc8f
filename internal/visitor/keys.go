package visitor

import (
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"hash"
	"sync"
)

// Purpose names what a derived key is for; each gets its own key per site.
type Purpose string

// Purposes of keys derived from VISITORD_INDEX_KEY.
const (
	PurposeVisitor   Purpose = "visitor"   // store key of a visitor
	PurposeEmail     Purpose = "email"     // e-mail blind index
	PurposeAudit     Purpose = "audit"     // audit-trail targets
	PurposePseudonym Purpose = "pseudonym" // per-session pseudonyms shown to operators
	PurposeRateLimit Purpose = "ratelimit" // rate-limit keys
	PurposeCursor    Purpose = "cursor"    // signed cursors
)

// MinIndexKeyBytes is the shortest index key accepted.
const MinIndexKeyBytes = 32

// Hasher computes keyed hashes under per-site, per-purpose keys derived with HKDF
// from one index key, so a hash of one site or purpose says nothing of another.
type Hasher struct {
	root []byte
	mu   sync.RWMutex
	keys map[string][]byte
	pool sync.Map // purpose|site → *sync.Pool of hash.Hash
}

// NewHasher returns a Hasher over the index key.
func NewHasher(indexKey []byte) (*Hasher, error) {
	if len(indexKey) < MinIndexKeyBytes {
		return nil, fmt.Errorf("index key is %d bytes, at least %d needed", len(indexKey), MinIndexKeyBytes)
	}
	return &Hasher{root: indexKey, keys: map[string][]byte{}}, nil
}

// Key returns the derived key of site for purpose.
func (h *Hasher) Key(site string, p Purpose) []byte {
	name := string(p) + "|" + site
	h.mu.RLock()
	k, ok := h.keys[name]
	h.mu.RUnlock()
	if ok {
		return k
	}
	k, err := hkdf.Key(sha256.New, h.root, nil, "visitord "+name, 32)
	if err != nil {
		panic(err) // only for lengths over 255*32 bytes
	}
	h.mu.Lock()
	h.keys[name] = k
	h.mu.Unlock()
	return k
}

// Sum returns the HMAC-SHA256 of value under the site's key for purpose.
func (h *Hasher) Sum(site string, p Purpose, value string) []byte {
	name := string(p) + "|" + site
	pi, ok := h.pool.Load(name)
	if !ok {
		key := h.Key(site, p)
		pi, _ = h.pool.LoadOrStore(name, &sync.Pool{New: func() any { return hmac.New(sha256.New, key) }})
	}
	pool := pi.(*sync.Pool)
	m := pool.Get().(hash.Hash)
	m.Reset()
	m.Write([]byte(value))
	sum := m.Sum(nil)
	pool.Put(m)
	return sum
}

// Short returns the first 12 bytes of Sum in base64url (16 characters): enough
// to name a record without a collision, short enough to keep keys small.
func (h *Hasher) Short(site string, p Purpose, value string) string {
	// EncodeToString would allocate twice (its buffer, then the string).
	var short [16]byte
	base64.RawURLEncoding.Encode(short[:], h.Sum(site, p, value)[:12])
	return string(short[:])
}

// VisitorKey is the name under which the store keeps a visitor: a keyed hash of
// the visitor id, so no key name holds the id itself.
func (h *Hasher) VisitorKey(site, visitorID string) string {
	return h.Short(site, PurposeVisitor, visitorID)
}

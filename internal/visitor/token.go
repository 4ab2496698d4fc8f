package visitor

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"strconv"
	"strings"
	"sync"
	"time"
)

// TokenKind says what a token stands for.
type TokenKind string

// Token kinds.
const (
	// KindID carries a visitor identity.
	KindID TokenKind = "id"
	// KindRefusal takes an identity's place after a refusal or withdrawal.
	KindRefusal TokenKind = "refusal"
)

// Token is the signed payload of an identity or refusal token.
type Token struct {
	Kind      TokenKind
	Site      string
	KeyID     string
	IssuedAt  time.Time
	Expires   time.Time
	VisitorID string // only for KindID
	// Nonce tells refusal tokens apart (KindRefusal; "" in tokens issued
	// before it): refusals of one site in one second would otherwise be
	// byte-identical and share an identity's rate limits.
	Nonce string
	// ConsentUntil and ConsentPolicy restate the analytics grant the token was
	// issued under, so the page-view path can decide before asking the store;
	// the store's consent record stays authoritative.
	ConsentUntil  time.Time
	ConsentPolicy string
}

// MinSecretBytes is the shortest token-signing secret accepted.
const MinSecretBytes = 32

const tokenVersion = "v1"

type signingKey struct {
	id     string
	secret []byte
	// macs holds HMAC states keyed with secret: hmac.New hashes the key into
	// its inner and outer pads on every call, Reset only restores them
	// (issue 20).
	macs sync.Pool
}

// macOf returns the HMAC-SHA256 of payload under k in sum.
func (k *signingKey) macOf(sum *[sha256.Size]byte, payload []byte) {
	h, ok := k.macs.Get().(hash.Hash)
	if !ok {
		h = hmac.New(sha256.New, k.secret)
	}
	h.Write(payload)
	h.Sum(sum[:0])
	h.Reset()
	k.macs.Put(h)
}

// tokenScratch is the working memory of one Sign or Verify.
type tokenScratch struct {
	buf []byte
	sum [sha256.Size]byte
	sig [sha256.Size]byte
}

// Signer signs tokens with the first secret and verifies them with any.
type Signer struct {
	keys    []*signingKey
	scratch sync.Pool
}

// NewSigner returns a Signer over secrets, each at least MinSecretBytes long.
func NewSigner(secrets [][]byte) (*Signer, error) {
	if len(secrets) == 0 {
		return nil, errors.New("no token-signing secret")
	}
	s := &Signer{}
	for i, secret := range secrets {
		if len(secret) < MinSecretBytes {
			return nil, fmt.Errorf("token-signing secret %d is %d bytes, at least %d needed", i+1, len(secret), MinSecretBytes)
		}
		sum := sha256.Sum256(secret)
		s.keys = append(s.keys, &signingKey{id: hex.EncodeToString(sum[:4]), secret: secret})
	}
	return s, nil
}

func (s *Signer) getScratch() *tokenScratch {
	if sc, ok := s.scratch.Get().(*tokenScratch); ok {
		return sc
	}
	return &tokenScratch{buf: make([]byte, 0, 512)}
}

func (s *Signer) putScratch(sc *tokenScratch) {
	if cap(sc.buf) <= 4<<10 {
		s.scratch.Put(sc)
	}
}

// Sign returns the token as payload.signature in base64url, signed by the first
// secret; t.KeyID is set by Sign.
func (s *Signer) Sign(t Token) string {
	k := s.keys[0]
	sc := s.getScratch()
	defer s.putScratch(sc)
	b := append(sc.buf[:0], tokenVersion...)
	b = append(b, '|')
	b = append(b, t.Kind...)
	b = append(b, '|')
	b = append(b, t.Site...)
	b = append(b, '|')
	b = append(b, k.id...)
	b = append(b, '|')
	b = strconv.AppendInt(b, t.IssuedAt.Unix(), 10)
	b = append(b, '|')
	b = strconv.AppendInt(b, t.Expires.Unix(), 10)
	b = append(b, '|')
	if t.Kind == KindRefusal {
		b = append(b, t.Nonce...)
	} else {
		b = append(b, t.VisitorID...)
	}
	b = append(b, '|')
	if !t.ConsentUntil.IsZero() {
		b = strconv.AppendInt(b, t.ConsentUntil.Unix(), 10)
	}
	b = append(b, '|')
	b = append(b, t.ConsentPolicy...)
	// The token is built after the payload in the same buffer.
	n := len(b)
	b = base64.RawURLEncoding.AppendEncode(b, b[:n])
	k.macOf(&sc.sum, b[n:])
	b = append(b, '.')
	b = base64.RawURLEncoding.AppendEncode(b, sc.sum[:])
	sc.buf = b
	return string(b[n:])
}

// Verify returns the token raw stands for when it is well-formed, signed by one of
// the secrets, of site and not expired at now. Anything else is foreign: the
// caller treats the visitor as new, so Verify reports only ok.
func (s *Signer) Verify(raw, site string, now time.Time) (Token, bool) {
	if len(raw) == 0 || len(raw) > 512 {
		return Token{}, false
	}
	payload, sig, ok := strings.Cut(raw, ".")
	if !ok || base64.RawURLEncoding.DecodedLen(len(sig)) != sha256.Size {
		return Token{}, false
	}
	sc := s.getScratch()
	defer s.putScratch(sc)
	// buf holds the payload as sent, then the signature as sent, then the
	// decoded payload.
	b := append(sc.buf[:0], payload...)
	b = append(b, sig...)
	sigN, err := base64.RawURLEncoding.Decode(sc.sig[:], b[len(payload):])
	if err != nil || sigN != sha256.Size {
		return Token{}, false
	}
	b, err = base64.RawURLEncoding.AppendDecode(b[:len(payload)], b[:len(payload)])
	sc.buf = b
	if err != nil {
		return Token{}, false
	}
	var f [9]string
	if !splitFields(&f, string(b[len(payload):])) || f[0] != tokenVersion {
		return Token{}, false
	}
	var key *signingKey
	for _, k := range s.keys {
		if subtle.ConstantTimeCompare([]byte(k.id), []byte(f[3])) == 1 {
			key = k
			break
		}
	}
	if key == nil {
		return Token{}, false
	}
	key.macOf(&sc.sum, b[:len(payload)])
	if !hmac.Equal(sc.sum[:], sc.sig[:]) {
		return Token{}, false
	}
	return tokenOf(f[:], site, now)
}

// tokenOf reads the fields of a verified payload into the Token they stand
// for, when it is of site, not expired at now and of a known kind.
func tokenOf(f []string, site string, now time.Time) (Token, bool) {
	iat, err1 := strconv.ParseInt(f[4], 10, 64)
	exp, err2 := strconv.ParseInt(f[5], 10, 64)
	if err1 != nil || err2 != nil {
		return Token{}, false
	}
	t := Token{
		Kind: TokenKind(f[1]), Site: f[2], KeyID: f[3], IssuedAt: time.Unix(iat, 0).UTC(),
		Expires: time.Unix(exp, 0).UTC(), VisitorID: f[6], ConsentPolicy: f[8],
	}
	if t.Kind == KindRefusal {
		t.VisitorID, t.Nonce = "", f[6]
	}
	if f[7] != "" {
		cu, err := strconv.ParseInt(f[7], 10, 64)
		if err != nil {
			return Token{}, false
		}
		t.ConsentUntil = time.Unix(cu, 0).UTC()
	}
	switch {
	case t.Site != site, !now.Before(t.Expires):
		return Token{}, false
	case t.Kind == KindID && !validVisitorID(t.VisitorID):
		return Token{}, false
	case t.Kind == KindRefusal && t.Nonce != "" && !validVisitorID(t.Nonce):
		return Token{}, false
	case t.Kind != KindID && t.Kind != KindRefusal:
		return Token{}, false
	}
	return t, true
}

// splitFields splits body at '|' into f as strings.SplitN(body, "|", len(f))
// would, and reports whether there were exactly len(f) fields.
func splitFields(f *[9]string, body string) bool {
	for i := range len(f) - 1 {
		var ok bool
		f[i], body, ok = strings.Cut(body, "|")
		if !ok {
			return false
		}
	}
	f[len(f)-1] = body
	return true
}

// HasGrant reports whether the token was issued under an analytics grant that is
// still valid at now for policy.
func (t Token) HasGrant(policy string, now time.Time) bool {
	return t.Kind == KindID && t.ConsentPolicy == policy && now.Before(t.ConsentUntil)
}

// NewVisitorID returns a random visitor id of 128 bits in base64url.
func NewVisitorID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	// EncodeToString would allocate twice (its buffer, then the string).
	var id [22]byte
	base64.RawURLEncoding.Encode(id[:], b[:])
	return string(id[:])
}

// ValidVisitorID reports whether id has the shape NewVisitorID gives.
func ValidVisitorID(id string) bool { return validVisitorID(id) }

func validVisitorID(id string) bool {
	if len(id) != 22 {
		return false
	}
	var b [16]byte // what 22 characters decode to at most
	_, err := base64.RawURLEncoding.Decode(b[:], []byte(id))
	return err == nil
}

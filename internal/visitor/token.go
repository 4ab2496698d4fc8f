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
	"strconv"
	"strings"
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
}

// Signer signs tokens with the first secret and verifies them with any.
type Signer struct {
	keys []signingKey
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
		s.keys = append(s.keys, signingKey{id: hex.EncodeToString(sum[:4]), secret: secret})
	}
	return s, nil
}

// Sign returns the token as payload.signature in base64url, signed by the first
// secret; t.KeyID is set by Sign.
func (s *Signer) Sign(t Token) string {
	k := s.keys[0]
	var b strings.Builder
	b.Grow(96 + len(t.ConsentPolicy))
	b.WriteString(tokenVersion)
	b.WriteByte('|')
	b.WriteString(string(t.Kind))
	b.WriteByte('|')
	b.WriteString(t.Site)
	b.WriteByte('|')
	b.WriteString(k.id)
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(t.IssuedAt.Unix(), 10))
	b.WriteByte('|')
	b.WriteString(strconv.FormatInt(t.Expires.Unix(), 10))
	b.WriteByte('|')
	if t.Kind == KindRefusal {
		b.WriteString(t.Nonce)
	} else {
		b.WriteString(t.VisitorID)
	}
	b.WriteByte('|')
	if !t.ConsentUntil.IsZero() {
		b.WriteString(strconv.FormatInt(t.ConsentUntil.Unix(), 10))
	}
	b.WriteByte('|')
	b.WriteString(t.ConsentPolicy)
	payload := base64.RawURLEncoding.EncodeToString([]byte(b.String()))
	return payload + "." + base64.RawURLEncoding.EncodeToString(mac(k.secret, payload))
}

// Verify returns the token raw stands for when it is well-formed, signed by one of
// the secrets, of site and not expired at now. Anything else is foreign: the
// caller treats the visitor as new, so Verify reports only ok.
func (s *Signer) Verify(raw, site string, now time.Time) (Token, bool) {
	if len(raw) == 0 || len(raw) > 512 {
		return Token{}, false
	}
	payload, sig, ok := strings.Cut(raw, ".")
	if !ok {
		return Token{}, false
	}
	gotSig, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil || len(gotSig) != sha256.Size {
		return Token{}, false
	}
	body, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		return Token{}, false
	}
	f := strings.SplitN(string(body), "|", 9)
	if len(f) != 9 || f[0] != tokenVersion {
		return Token{}, false
	}
	var key *signingKey
	for i := range s.keys {
		if subtle.ConstantTimeCompare([]byte(s.keys[i].id), []byte(f[3])) == 1 {
			key = &s.keys[i]
			break
		}
	}
	if key == nil || !hmac.Equal(mac(key.secret, payload), gotSig) {
		return Token{}, false
	}
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

// HasGrant reports whether the token was issued under an analytics grant that is
// still valid at now for policy.
func (t Token) HasGrant(policy string, now time.Time) bool {
	return t.Kind == KindID && t.ConsentPolicy == policy && now.Before(t.ConsentUntil)
}

func mac(secret []byte, payload string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(payload))
	return h.Sum(nil)
}

// NewVisitorID returns a random visitor id of 128 bits in base64url.
func NewVisitorID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ValidVisitorID reports whether id has the shape NewVisitorID gives.
func ValidVisitorID(id string) bool { return validVisitorID(id) }

func validVisitorID(id string) bool {
	if len(id) != 22 {
		return false
	}
	_, err := base64.RawURLEncoding.DecodeString(id)
	return err == nil
}

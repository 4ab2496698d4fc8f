package visitor

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
)

// DataKey is one AES-256 key for contact details at rest, named by its id.
type DataKey struct {
	ID  string
	Key []byte
}

// Sealer encrypts contact details with AES-256-GCM under the first key and
// decrypts under any, so keys rotate by prepending a new one.
type Sealer struct {
	first string
	aeads map[string]cipher.AEAD
}

// NewSealer returns a Sealer over keys, each 32 bytes with a unique id without ':'.
func NewSealer(keys []DataKey) (*Sealer, error) {
	if len(keys) == 0 {
		return nil, errors.New("no data key")
	}
	s := &Sealer{first: keys[0].ID, aeads: map[string]cipher.AEAD{}}
	for _, k := range keys {
		if len(k.Key) != 32 || k.ID == "" || strings.Contains(k.ID, ":") {
			return nil, fmt.Errorf("data key %q must be 32 bytes with an id without ':'", k.ID)
		}
		block, err := aes.NewCipher(k.Key)
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		s.aeads[k.ID] = aead
	}
	return s, nil
}

// additionalData binds a ciphertext to its place: site|field|record.
func additionalData(site, field, record string) []byte {
	return []byte(site + "|" + field + "|" + record)
}

// Seal encrypts plaintext for field of record on site as "kid:base64(nonce|ciphertext)".
// The empty string seals to the empty string.
func (s *Sealer) Seal(site, field, record, plaintext string) string {
	if plaintext == "" {
		return ""
	}
	aead := s.aeads[s.first]
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	_, _ = rand.Read(nonce) // never fails (Go ≥ 1.24)
	out := aead.Seal(nonce, nonce, []byte(plaintext), additionalData(site, field, record))
	return s.first + ":" + base64.RawStdEncoding.EncodeToString(out)
}

// Open decrypts what Seal made for the same site, field and record.
func (s *Sealer) Open(site, field, record, sealed string) (string, error) {
	if sealed == "" {
		return "", nil
	}
	kid, b64, ok := strings.Cut(sealed, ":")
	aead, known := s.aeads[kid]
	if !ok || !known {
		return "", fmt.Errorf("open %s: unknown data key %q", field, kid)
	}
	b, err := base64.RawStdEncoding.DecodeString(b64)
	if err != nil || len(b) < aead.NonceSize() {
		return "", fmt.Errorf("open %s: malformed ciphertext", field)
	}
	plain, err := aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], additionalData(site, field, record))
	if err != nil {
		// The record id stays out of the error: errors reach logs.
		return "", fmt.Errorf("open %s: %w", field, err)
	}
	return string(plain), nil
}

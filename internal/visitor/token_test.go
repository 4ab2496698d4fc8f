package visitor

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"
	"time"
)

var (
	tokenSecretOld = bytes.Repeat([]byte("o"), MinSecretBytes)
	tokenSecretNew = bytes.Repeat([]byte("n"), MinSecretBytes)
	tokenTestNow   = time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
)

func tokenTestSigner(tb testing.TB, secrets ...[]byte) *Signer {
	tb.Helper()
	s, err := NewSigner(secrets)
	if err != nil {
		tb.Fatal(err)
	}
	return s
}

// tokenKeyID is the key id a signer names a secret by in its tokens.
func tokenKeyID(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:4])
}

// tokenPayloadFields decodes the payload of raw into its |-separated fields.
func tokenPayloadFields(tb testing.TB, raw string) []string {
	tb.Helper()
	payload, _, ok := strings.Cut(raw, ".")
	if !ok {
		tb.Fatalf("token %q is not payload.signature", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(payload)
	if err != nil {
		tb.Fatalf("payload of %q is not base64url: %v", raw, err)
	}
	return strings.Split(string(b), "|")
}

// tokenFlip returns raw with one decoded byte of its payload (part 0) or its
// signature (part 1) changed, re-encoded so the result is still well-formed.
func tokenFlip(tb testing.TB, raw string, part, index int, to byte) string {
	tb.Helper()
	parts := strings.Split(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(parts[part])
	if err != nil {
		tb.Fatal(err)
	}
	if index < 0 {
		index += len(b)
	}
	if b[index] == to {
		tb.Fatalf("byte %d of part %d is already %q", index, part, to)
	}
	b[index] = to
	parts[part] = base64.RawURLEncoding.EncodeToString(b)
	return strings.Join(parts, ".")
}

func TestSignerIssuesPayloadWithKindSiteKeyTimesAndVisitorID(t *testing.T) {
	t.Parallel()
	s := tokenTestSigner(t, tokenSecretNew)
	id := NewVisitorID()
	exp := tokenTestNow.Add(MaxCookieLifetime)
	raw := s.Sign(Token{Kind: KindID, Site: "shop", IssuedAt: tokenTestNow, Expires: exp, VisitorID: id})

	payload, sig, ok := strings.Cut(raw, ".")
	if !ok {
		t.Fatalf("token %q is not payload.signature", raw)
	}
	for _, p := range []string{payload, sig} {
		if _, err := base64.RawURLEncoding.DecodeString(p); err != nil {
			t.Errorf("%q is not base64url: %v", p, err)
		}
	}
	if b, _ := base64.RawURLEncoding.DecodeString(sig); len(b) != sha256.Size {
		t.Errorf("signature is %d bytes, want an HMAC-SHA256 (%d)", len(b), sha256.Size)
	}
	f := tokenPayloadFields(t, raw)
	if len(f) < 7 {
		t.Fatalf("payload fields %q", f)
	}
	for _, c := range []struct {
		name      string
		got, want string
	}{
		{"kind", f[1], "id"},
		{"site", f[2], "shop"},
		{"key id", f[3], tokenKeyID(tokenSecretNew)},
		{"issued at", f[4], strconv.FormatInt(tokenTestNow.Unix(), 10)},
		{"expiry", f[5], strconv.FormatInt(exp.Unix(), 10)},
		{"visitor id", f[6], id},
	} {
		if c.got != c.want {
			t.Errorf("payload %s = %q, want %q", c.name, c.got, c.want)
		}
	}

	got, ok := s.Verify(raw, "shop", tokenTestNow.Add(time.Hour))
	if !ok {
		t.Fatal("a fresh token does not verify")
	}
	if got.Kind != KindID || got.Site != "shop" || got.VisitorID != id || got.KeyID != tokenKeyID(tokenSecretNew) ||
		!got.IssuedAt.Equal(tokenTestNow) || !got.Expires.Equal(exp) {
		t.Errorf("Verify = %+v", got)
	}
}

func TestNewVisitorIDIsRandom128BitsAndDistinct(t *testing.T) {
	t.Parallel()
	seen := map[string]bool{}
	for range 10000 {
		id := NewVisitorID()
		b, err := base64.RawURLEncoding.DecodeString(id)
		if err != nil {
			t.Fatalf("visitor id %q is not base64url: %v", id, err)
		}
		if len(b)*8 < 128 {
			t.Fatalf("visitor id %q holds %d bits, want at least 128", id, len(b)*8)
		}
		if !ValidVisitorID(id) {
			t.Fatalf("ValidVisitorID(%q) = false", id)
		}
		if seen[id] {
			t.Fatalf("visitor id %q issued twice", id)
		}
		seen[id] = true
	}
}

func TestSignerRotation(t *testing.T) {
	t.Parallel()
	old := tokenTestSigner(t, tokenSecretOld)
	rotated := tokenTestSigner(t, tokenSecretNew, tokenSecretOld)
	id := NewVisitorID()
	tok := Token{Kind: KindID, Site: "shop", IssuedAt: tokenTestNow, Expires: tokenTestNow.Add(24 * time.Hour), VisitorID: id}

	byOld := old.Sign(tok)
	got, ok := rotated.Verify(byOld, "shop", tokenTestNow)
	if !ok {
		t.Fatal("a token signed by the old secret does not verify after rotation")
	}
	if got.VisitorID != id || got.KeyID != tokenKeyID(tokenSecretOld) {
		t.Errorf("Verify = %+v, want visitor %s under the old key id", got, id)
	}

	byNew := rotated.Sign(tok)
	if f := tokenPayloadFields(t, byNew); f[3] != tokenKeyID(tokenSecretNew) {
		t.Errorf("rotated signer signs under key id %q, want the new secret's %q", f[3], tokenKeyID(tokenSecretNew))
	}
	if _, ok := rotated.Verify(byNew, "shop", tokenTestNow); !ok {
		t.Error("a token signed by the new secret does not verify")
	}
	if _, ok := old.Verify(byNew, "shop", tokenTestNow); ok {
		t.Error("a signer without the new secret verifies a token signed by it")
	}
}

func TestNewSignerRejectsMissingOrShortSecrets(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		secrets [][]byte
	}{
		{name: "none", secrets: nil},
		{name: "short", secrets: [][]byte{bytes.Repeat([]byte("s"), MinSecretBytes-1)}},
		{name: "short second", secrets: [][]byte{tokenSecretNew, []byte("short")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewSigner(tt.secrets); err == nil {
				t.Fatal("NewSigner accepted the secrets")
			}
		})
	}
}

func TestVerifyTreatsForeignTokensAsForeign(t *testing.T) {
	t.Parallel()
	s := tokenTestSigner(t, tokenSecretNew)
	exp := tokenTestNow.Add(24 * time.Hour)
	valid := s.Sign(Token{Kind: KindID, Site: "shop", IssuedAt: tokenTestNow, Expires: exp, VisitorID: NewVisitorID()})
	if _, ok := s.Verify(valid, "shop", tokenTestNow); !ok {
		t.Fatal("the untampered token does not verify")
	}
	// Flip the first byte of the visitor id (field 6) to another base64url
	// character: the payload stays well-formed, only its signature breaks.
	f := tokenPayloadFields(t, valid)
	vidAt := len(strings.Join(f[:6], "|")) + 1
	other := tokenTestSigner(t, tokenSecretOld)

	tests := []struct {
		name string
		raw  string
		site string
		now  time.Time
	}{
		{name: "payload byte flipped", raw: tokenFlip(t, valid, 0, vidAt, tokenFlippedChar(valid, vidAt)), site: "shop", now: tokenTestNow},
		{name: "payload site changed", raw: tokenFlip(t, valid, 0, len("v1|id|"), 'x'), site: "xhop", now: tokenTestNow},
		{name: "signature first byte flipped", raw: tokenFlip(t, valid, 1, 0, ^tokenSigByte(t, valid, 0)), site: "shop", now: tokenTestNow},
		{name: "signature last byte flipped", raw: tokenFlip(t, valid, 1, -1, ^tokenSigByte(t, valid, -1)), site: "shop", now: tokenTestNow},
		{name: "signature cut", raw: valid[:len(valid)-4], site: "shop", now: tokenTestNow},
		{name: "expired at expiry", raw: valid, site: "shop", now: exp},
		{name: "expired after expiry", raw: valid, site: "shop", now: exp.Add(time.Second)},
		{name: "other site", raw: valid, site: "blog", now: tokenTestNow},
		{name: "unknown secret", raw: other.Sign(Token{Kind: KindID, Site: "shop", IssuedAt: tokenTestNow, Expires: exp, VisitorID: NewVisitorID()}), site: "shop", now: tokenTestNow},
		{name: "refusal with a malformed nonce", raw: s.Sign(Token{Kind: KindRefusal, Site: "shop", IssuedAt: tokenTestNow, Expires: exp, Nonce: "not a nonce"}), site: "shop", now: tokenTestNow},
		{name: "identity without visitor id", raw: s.Sign(Token{Kind: KindID, Site: "shop", IssuedAt: tokenTestNow, Expires: exp}), site: "shop", now: tokenTestNow},
		{name: "unknown kind", raw: s.Sign(Token{Kind: "admin", Site: "shop", IssuedAt: tokenTestNow, Expires: exp, VisitorID: NewVisitorID()}), site: "shop", now: tokenTestNow},
		{name: "empty", raw: "", site: "shop", now: tokenTestNow},
		{name: "no signature", raw: strings.SplitN(valid, ".", 2)[0], site: "shop", now: tokenTestNow},
		{name: "not base64", raw: "!!!.???", site: "shop", now: tokenTestNow},
		{name: "oversized", raw: valid + strings.Repeat("A", 600), site: "shop", now: tokenTestNow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.raw == valid && tt.site == "shop" && tt.now.Before(exp) {
				t.Fatal("row does not change the token")
			}
			if got, ok := s.Verify(tt.raw, tt.site, tt.now); ok {
				t.Fatalf("Verify(%q) = %+v, ok; want foreign", tt.raw, got)
			}
		})
	}
	if _, ok := s.Verify(valid, "shop", exp.Add(-time.Second)); !ok {
		t.Error("a token does not verify a second before its expiry")
	}
}

// tokenFlippedChar is a base64url character other than the one at decoded
// offset i of raw's payload, so a visitor id stays well-formed while its
// signature breaks.
func tokenFlippedChar(raw string, i int) byte {
	payload, _, _ := strings.Cut(raw, ".")
	b, _ := base64.RawURLEncoding.DecodeString(payload)
	if b[i] == 'A' {
		return 'B'
	}
	return 'A'
}

func tokenSigByte(tb testing.TB, raw string, i int) byte {
	tb.Helper()
	_, sig, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(sig)
	if err != nil {
		tb.Fatal(err)
	}
	if i < 0 {
		i += len(b)
	}
	return b[i]
}

func TestRefusalTokenCarriesNoVisitorID(t *testing.T) {
	t.Parallel()
	s := tokenTestSigner(t, tokenSecretNew)
	exp := tokenTestNow.Add(RefusalLifetimeOptOut)
	raw := s.Sign(Token{Kind: KindRefusal, Site: "shop", IssuedAt: tokenTestNow, Expires: exp})
	f := tokenPayloadFields(t, raw)
	if f[1] != "refusal" || f[6] != "" {
		t.Errorf("payload kind %q, visitor id %q; want refusal and none", f[1], f[6])
	}
	got, ok := s.Verify(raw, "shop", tokenTestNow)
	if !ok {
		t.Fatal("a refusal token does not verify")
	}
	if got.Kind != KindRefusal || got.VisitorID != "" || got.HasGrant("", tokenTestNow) {
		t.Errorf("Verify = %+v", got)
	}

	// A nonce tells refusals of the same second apart; it is never a visitor
	// id, and a visitor id given to a refusal is not written.
	nonce := NewVisitorID()
	raw2 := s.Sign(Token{Kind: KindRefusal, Site: "shop", IssuedAt: tokenTestNow, Expires: exp, Nonce: nonce, VisitorID: NewVisitorID()})
	if raw2 == raw {
		t.Error("refusal tokens with and without a nonce are the same")
	}
	got, ok = s.Verify(raw2, "shop", tokenTestNow)
	if !ok || got.Kind != KindRefusal || got.Nonce != nonce || got.VisitorID != "" {
		t.Errorf("Verify of a refusal with a nonce = %+v, %v; want the nonce and no visitor id", got, ok)
	}
}

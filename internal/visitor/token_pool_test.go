package visitor

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// refSign and refVerify are Sign and Verify as they were before their HMAC
// state and buffers were pooled (issue 20): one hmac.New per call, the
// payload built in a strings.Builder, split with strings.SplitN.
func refSign(secret []byte, keyID string, t Token) string {
	var b strings.Builder
	b.WriteString(tokenVersion + "|" + string(t.Kind) + "|" + t.Site + "|" + keyID + "|")
	b.WriteString(strconv.FormatInt(t.IssuedAt.Unix(), 10) + "|" + strconv.FormatInt(t.Expires.Unix(), 10) + "|")
	if t.Kind == KindRefusal {
		b.WriteString(t.Nonce)
	} else {
		b.WriteString(t.VisitorID)
	}
	b.WriteByte('|')
	if !t.ConsentUntil.IsZero() {
		b.WriteString(strconv.FormatInt(t.ConsentUntil.Unix(), 10))
	}
	b.WriteString("|" + t.ConsentPolicy)
	payload := base64.RawURLEncoding.EncodeToString([]byte(b.String()))
	return payload + "." + base64.RawURLEncoding.EncodeToString(refMAC(secret, payload))
}

func refMAC(secret []byte, payload string) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(payload))
	return h.Sum(nil)
}

func refVerify(keys map[string][]byte, raw, site string, now time.Time) (Token, bool) {
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
	var secret []byte
	for id, s := range keys {
		if subtle.ConstantTimeCompare([]byte(id), []byte(f[3])) == 1 {
			secret = s
		}
	}
	if secret == nil || !hmac.Equal(refMAC(secret, payload), gotSig) {
		return Token{}, false
	}
	// What follows the MAC check is not what pooling changed.
	return tokenOf(f, site, now)
}

var (
	poolSecretA = []byte("0123456789abcdef0123456789abcdef-a")
	poolSecretB = []byte("0123456789abcdef0123456789abcdef-b")
	poolNow     = time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
)

func poolSigners(tb testing.TB) (signer, old *Signer, keys map[string][]byte) {
	tb.Helper()
	signer, err := NewSigner([][]byte{poolSecretA, poolSecretB})
	if err != nil {
		tb.Fatal(err)
	}
	old, err = NewSigner([][]byte{poolSecretB})
	if err != nil {
		tb.Fatal(err)
	}
	return signer, old, map[string][]byte{signer.keys[0].id: poolSecretA, signer.keys[1].id: poolSecretB}
}

func poolTokens() []Token {
	return []Token{
		{Kind: KindID, Site: "shop", IssuedAt: poolNow, Expires: poolNow.Add(time.Hour), VisitorID: "AAAAAAAAAAAAAAAAAAAAAA"},
		{Kind: KindID, Site: "shop", IssuedAt: poolNow, Expires: poolNow.Add(time.Hour), VisitorID: "q1w2e3r4t5y6u7i8o9p0-_",
			ConsentUntil: poolNow.Add(180 * 24 * time.Hour), ConsentPolicy: "2026-11"},
		{Kind: KindRefusal, Site: "a-site", IssuedAt: poolNow, Expires: poolNow.Add(time.Minute), Nonce: "ZZZZZZZZZZZZZZZZZZZZZw"},
		{Kind: KindRefusal, Site: "shop", IssuedAt: poolNow, Expires: poolNow.Add(time.Minute)},
		{Kind: KindID, Site: "shop", IssuedAt: poolNow, Expires: poolNow.Add(time.Hour), VisitorID: "AAAAAAAAAAAAAAAAAAAAAA",
			ConsentUntil: poolNow.Add(time.Hour), ConsentPolicy: strings.Repeat("p|", 32)},
	}
}

// Pooled HMAC state and buffers sign the bytes one hmac.New per call signed,
// and a token verifies as it did, under either key (issue 20).
func TestSignAndVerifyAsBeforePooling(t *testing.T) {
	t.Parallel()
	signer, old, keys := poolSigners(t)
	for _, tok := range poolTokens() {
		got := signer.Sign(tok)
		if want := refSign(poolSecretA, signer.keys[0].id, tok); got != want {
			t.Fatalf("Sign(%+v) = %q, want %q", tok, got, want)
		}
		for _, raw := range []string{got, old.Sign(tok)} {
			gotTok, gotOK := signer.Verify(raw, tok.Site, poolNow)
			wantTok, wantOK := refVerify(keys, raw, tok.Site, poolNow)
			if gotOK != wantOK || gotTok != wantTok {
				t.Errorf("Verify(%q) = %+v %v, want %+v %v", raw, gotTok, gotOK, wantTok, wantOK)
			}
		}
	}
}

// Signers share their pooled state across goroutines without mixing tokens.
func TestSignVerifyConcurrent(t *testing.T) {
	t.Parallel()
	signer, _, _ := poolSigners(t)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				id := NewVisitorID()
				tok := Token{Kind: KindID, Site: "shop", IssuedAt: poolNow, Expires: poolNow.Add(time.Duration(g*1000+i+1) * time.Second), VisitorID: id}
				got, ok := signer.Verify(signer.Sign(tok), "shop", poolNow)
				if !ok || got.VisitorID != id || !got.Expires.Equal(tok.Expires) {
					t.Errorf("token of %s came back as %+v %v", id, got, ok)
					return
				}
			}
		})
	}
	wg.Wait()
}

func FuzzVerifyAsBeforePooling(f *testing.F) {
	signer, old, keys := poolSigners(f)
	for _, tok := range poolTokens() {
		f.Add(signer.Sign(tok), tok.Site)
		f.Add(old.Sign(tok), tok.Site)
	}
	f.Add("a.b", "shop")
	f.Add("", "shop")
	f.Fuzz(func(t *testing.T, raw, site string) {
		got, gotOK := signer.Verify(raw, site, poolNow)
		want, wantOK := refVerify(keys, raw, site, poolNow)
		if gotOK != wantOK || got != want {
			t.Fatalf("Verify(%q, %q) = %+v %v, want %+v %v", raw, site, got, gotOK, want, wantOK)
		}
	})
}

func BenchmarkSign(b *testing.B) {
	signer, _, _ := poolSigners(b)
	tok := poolTokens()[1]
	b.Run("hmac.New", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			refSign(poolSecretA, signer.keys[0].id, tok)
		}
	})
	b.Run("pooled", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			signer.Sign(tok)
		}
	})
}

func BenchmarkVerify(b *testing.B) {
	signer, _, keys := poolSigners(b)
	raw := signer.Sign(poolTokens()[1])
	b.Run("hmac.New", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := refVerify(keys, raw, "shop", poolNow); !ok {
				b.Fatal("not verified")
			}
		}
	})
	b.Run("pooled", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := signer.Verify(raw, "shop", poolNow); !ok {
				b.Fatal("not verified")
			}
		}
	})
}

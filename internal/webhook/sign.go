package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// DefaultTolerance is how far a signature's timestamp may be from the receiver's
// clock before Verify refuses it, as a guard against replays.
const DefaultTolerance = 5 * time.Minute

// ErrSignature reports a Visitord-Signature header that is malformed, does not
// match the body under the secret, or carries a timestamp outside the tolerance.
var ErrSignature = errors.New("invalid webhook signature")

// Sign returns the Visitord-Signature header of the delivery id with body sent
// at ts: "t=<unix>,v1=<hex HMAC-SHA256(secret, "<unix>.<id>." + body)>", so the
// timestamp, the delivery id (Visitord-Delivery, by which receivers drop
// duplicates) and the body are all signed.
func Sign(secret []byte, ts time.Time, id string, body []byte) string {
	unix := strconv.FormatInt(ts.Unix(), 10)
	return "t=" + unix + ",v1=" + hex.EncodeToString(mac(secret, unix, id, body))
}

// mac is HMAC-SHA256(secret, unix + "." + id + "." + body).
func mac(secret []byte, unix, id string, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(unix))
	h.Write([]byte{'.'})
	h.Write([]byte(id))
	h.Write([]byte{'.'})
	h.Write(body)
	return h.Sum(nil)
}

// Verify checks header, a Visitord-Signature, against the delivery id, body and
// secret, and that
// its timestamp is within tolerance of now (either side). Any of several v1
// signatures may match, so a sender can sign under two secrets while rotating.
// Signatures are compared in constant time. It returns an error wrapping
// ErrSignature when the header does not verify.
func Verify(secret []byte, header, id string, body []byte, now time.Time, tolerance time.Duration) error {
	var (
		unix string
		sigs [][]byte
	)
	for part := range strings.SplitSeq(header, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return fmt.Errorf("%w: malformed header", ErrSignature)
		}
		switch k {
		case "t":
			if unix != "" {
				return fmt.Errorf("%w: more than one timestamp", ErrSignature)
			}
			unix = v
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil || len(sig) != sha256.Size {
				return fmt.Errorf("%w: malformed v1 signature", ErrSignature)
			}
			sigs = append(sigs, sig)
		}
		// Other schemes are ignored, so a receiver survives a future v2.
	}
	if unix == "" {
		return fmt.Errorf("%w: no timestamp", ErrSignature)
	}
	if len(sigs) == 0 {
		return fmt.Errorf("%w: no v1 signature", ErrSignature)
	}
	sec, err := strconv.ParseInt(unix, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: malformed timestamp", ErrSignature)
	}
	if age := now.Sub(time.Unix(sec, 0)); age > tolerance || age < -tolerance {
		return fmt.Errorf("%w: timestamp %s from now, outside %s", ErrSignature, age.Round(time.Second), tolerance)
	}
	want := mac(secret, unix, id, body)
	for _, sig := range sigs {
		if hmac.Equal(sig, want) {
			return nil
		}
	}
	return fmt.Errorf("%w: no signature matches", ErrSignature)
}

package geo

import (
	"encoding/binary"
	"net/netip"

	"github.com/maypok86/otter/v2"

	"github.com/visitord/visitord/internal/visitor"
)

// prefixKey packs the /24 of an IPv4 address or the /48 of an IPv6 address
// into one integer: the prefix bits shifted left by one, with the low bit set
// for IPv4, so the two families never collide. ip must be valid and unmapped.
func prefixKey(ip netip.Addr) uint64 {
	if ip.Is4() {
		b := ip.As4()
		return uint64(b[0])<<17 | uint64(b[1])<<9 | uint64(b[2])<<1 | 1
	}
	b := ip.As16()
	return binary.BigEndian.Uint64(b[:8]) >> 16 << 1
}

// newCache returns the lookup cache: at most size prefixes (size > 0), kept
// by otter's W-TinyLFU policy, so hot prefixes survive a scan of one-off ones.
// A hit allocates nothing.
func newCache(size int) *otter.Cache[uint64, visitor.Location] {
	return otter.Must(&otter.Options[uint64, visitor.Location]{MaximumSize: size})
}

package geo

import (
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"

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

// cache is a bounded map from prefix keys to locations, split into shards
// that each evict with the CLOCK algorithm: a hit marks its slot referenced,
// and an insert into a full shard sweeps the hand over the slots, clearing
// marks, until it finds an unmarked slot to reuse. Hot prefixes survive; a
// prefix seen once is the first to go.
type cache struct {
	shards []shard
	shift  uint // 64 - log2(len(shards))
}

type shard struct {
	mu    sync.RWMutex
	index map[uint64]int32 // key → position in slots
	slots []slot           // grows up to max, then slots are reused
	max   int
	hand  int
	_     [56]byte // pads a shard to two cache lines so neighbours' locks do not share one
}

type slot struct {
	key uint64
	loc visitor.Location
	ref atomic.Bool // set by hits under the read lock
}

// newCache returns a cache holding at most size entries (size > 0).
func newCache(size int) *cache {
	// Up to 64 shards to spread lock contention, but not so many that a small
	// cache ends up with a handful of slots per shard.
	n := 64
	for n > 1 && size/n < 16 {
		n /= 2
	}
	shift := uint(64)
	for s := n; s > 1; s /= 2 {
		shift--
	}
	c := &cache{shards: make([]shard, n), shift: shift}
	for i := range c.shards {
		c.shards[i].index = make(map[uint64]int32)
		c.shards[i].max = size / n
	}
	return c
}

func (c *cache) shardFor(key uint64) *shard {
	if len(c.shards) == 1 {
		return &c.shards[0]
	}
	// Fibonacci hashing: the top bits of the product depend on all key bits.
	return &c.shards[(key*0x9E3779B97F4A7C15)>>c.shift]
}

// get returns the location cached for key. It allocates nothing.
func (c *cache) get(key uint64) (visitor.Location, bool) {
	s := c.shardFor(key)
	s.mu.RLock()
	defer s.mu.RUnlock()
	i, ok := s.index[key]
	if !ok {
		return visitor.Location{}, false
	}
	sl := &s.slots[i]
	// Only write when the mark changes, to keep a hot slot's cache line shared.
	if !sl.ref.Load() {
		sl.ref.Store(true)
	}
	return sl.loc, true
}

// put caches loc for key, evicting another key if the shard is full.
func (c *cache) put(key uint64, loc visitor.Location) {
	s := c.shardFor(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	if i, ok := s.index[key]; ok {
		// Another goroutine looked the same prefix up concurrently.
		s.slots[i].loc = loc
		return
	}
	if len(s.slots) < s.max {
		s.slots = append(s.slots, slot{key: key, loc: loc})
		s.index[key] = int32(len(s.slots) - 1)
		return
	}
	// Terminates within two sweeps: the first clears every mark it passes.
	for {
		sl := &s.slots[s.hand]
		i := s.hand
		s.hand = (s.hand + 1) % len(s.slots)
		if sl.ref.Load() {
			sl.ref.Store(false)
			continue
		}
		delete(s.index, sl.key)
		sl.key, sl.loc = key, loc
		s.index[key] = int32(i)
		return
	}
}

// len returns the number of cached prefixes.
func (c *cache) len() int {
	n := 0
	for i := range c.shards {
		s := &c.shards[i]
		s.mu.RLock()
		n += len(s.index)
		s.mu.RUnlock()
	}
	return n
}

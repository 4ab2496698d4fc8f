package geo

import (
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"

	"github.com/visitord/visitord/geoip"
	"github.com/visitord/visitord/internal/visitor"
)

// openFixture writes the geoip fixture into a temporary directory and opens it.
func openFixture(tb testing.TB, opts ...Option) *Locator {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "city.mmdb")
	if err := geoip.WriteFixtureFile(path); err != nil {
		tb.Fatal(err)
	}
	l, err := Open(path, opts...)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() {
		if err := l.Close(); err != nil {
			tb.Errorf("Close: %v", err)
		}
	})
	return l
}

// want is the Location visitord should keep of a fixture answer.
func want(a geoip.FixtureAnswer) visitor.Location {
	loc := visitor.Location{Country: a.Country, City: clip(a.City), TimeZone: a.TimeZone}
	if len(a.Subdivisions) > 0 {
		loc.Region = a.Subdivisions[0].ISOCode
	}
	return loc
}

func TestLookupFixtureAnswers(t *testing.T) {
	t.Parallel()
	l := openFixture(t)
	for _, a := range geoip.FixtureAnswers {
		t.Run(a.Network.String(), func(t *testing.T) {
			// Twice: the first answer comes from the database, the second from the cache.
			for range 2 {
				if diff := cmp.Diff(want(a), l.Lookup(a.Sample)); diff != "" {
					t.Fatalf("Lookup(%s) mismatch (-want +got):\n%s", a.Sample, diff)
				}
			}
		})
	}
}

func TestLookup(t *testing.T) {
	t.Parallel()
	london := visitor.Location{Country: "GB", Region: "ENG", City: "London", TimeZone: "Europe/London"}
	berlin := visitor.Location{Country: "DE", Region: "BE", City: "Berlin", TimeZone: "Europe/Berlin"}
	tests := []struct {
		name string
		ip   netip.Addr
		want visitor.Location
	}{
		{name: "ipv4", ip: netip.MustParseAddr("81.2.69.142"), want: london},
		{name: "another address in the same /24", ip: netip.MustParseAddr("81.2.69.1"), want: london},
		{name: "ipv4-mapped ipv6", ip: netip.MustParseAddr("::ffff:81.2.69.142"), want: london},
		{name: "ipv6", ip: netip.MustParseAddr("2a02:8000:ffff::1"), want: berlin},
		{name: "ipv6 with zone", ip: netip.MustParseAddr("2a02:8000::1%eth0"), want: berlin},
		{name: "first subdivision is the largest", ip: netip.MustParseAddr("2.125.160.216"),
			want: visitor.Location{Country: "GB", Region: "ENG", City: "Boxford", TimeZone: "Europe/London"}},
		{name: "country only", ip: netip.MustParseAddr("202.196.239.255"), want: visitor.Location{Country: "PH"}},
		{name: "country and time zone only", ip: netip.MustParseAddr("2001:218:1::1"),
			want: visitor.Location{Country: "JP", TimeZone: "Asia/Tokyo"}},
		{name: "long city name is clipped to 64 bytes", ip: netip.MustParseAddr("121.98.200.1"),
			want: visitor.Location{Country: "NZ", Region: "HKB", TimeZone: "Pacific/Auckland",
				City: "Taumatawhakatangihangakoauauotamateaturipukakapikimaungahoronuku"}},
		{name: "unknown ipv4", ip: netip.MustParseAddr("1.1.1.1")},
		{name: "unknown ipv4 next to a known /24", ip: netip.MustParseAddr("81.2.70.1")},
		{name: "unknown ipv6", ip: netip.MustParseAddr("2001:4860:4860::8888")},
		{name: "private ipv4", ip: netip.MustParseAddr("192.168.1.10")},
		{name: "private ipv6", ip: netip.MustParseAddr("fd00::1")},
		{name: "loopback", ip: netip.MustParseAddr("127.0.0.1")},
		{name: "ipv6 loopback", ip: netip.MustParseAddr("::1")},
		{name: "link-local", ip: netip.MustParseAddr("fe80::1%eth0")},
		{name: "unspecified", ip: netip.IPv4Unspecified()},
		{name: "multicast", ip: netip.MustParseAddr("224.0.0.1")},
		{name: "invalid", ip: netip.Addr{}},
	}
	l := openFixture(t)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, l.Lookup(tt.ip)); diff != "" {
				t.Errorf("Lookup(%s) mismatch (-want +got):\n%s", tt.ip, diff)
			}
		})
	}
}

func TestLookupWithoutCache(t *testing.T) {
	t.Parallel()
	l := openFixture(t, WithCacheSize(0))
	if l.cache != nil {
		t.Fatal("WithCacheSize(0) still built a cache")
	}
	a := geoip.FixtureAnswers[0]
	if diff := cmp.Diff(want(a), l.Lookup(a.Sample)); diff != "" {
		t.Errorf("Lookup(%s) mismatch (-want +got):\n%s", a.Sample, diff)
	}
}

func TestNilLocator(t *testing.T) {
	t.Parallel()
	var l *Locator
	if got := l.Lookup(netip.MustParseAddr("81.2.69.142")); got != (visitor.Location{}) {
		t.Errorf("nil Locator: Lookup = %+v, want zero", got)
	}
	if err := l.Close(); err != nil {
		t.Errorf("nil Locator: Close = %v, want nil", err)
	}
}

func TestLookupAfterClose(t *testing.T) {
	t.Parallel()
	l := openFixture(t)
	ip := geoip.FixtureAnswers[0].Sample
	if got := l.Lookup(ip); got == (visitor.Location{}) {
		t.Fatalf("Lookup(%s) = zero before Close", ip)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	// Cached and uncached prefixes alike.
	for _, ip := range []netip.Addr{ip, geoip.FixtureAnswers[1].Sample} {
		if got := l.Lookup(ip); got != (visitor.Location{}) {
			t.Errorf("Lookup(%s) after Close = %+v, want zero", ip, got)
		}
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close = %v, want nil", err)
	}
}

// writeDB writes a one-record MaxMind DB of the given type and returns its path.
func writeDB(tb testing.TB, dbType string) string {
	tb.Helper()
	tree, err := mmdbwriter.New(mmdbwriter.Options{DatabaseType: dbType, RecordSize: 28})
	if err != nil {
		tb.Fatal(err)
	}
	_, network, err := net.ParseCIDR("81.2.69.0/24")
	if err != nil {
		tb.Fatal(err)
	}
	rec := mmdbtype.Map{"country": mmdbtype.Map{"iso_code": mmdbtype.String("GB")}}
	if err := tree.Insert(network, rec); err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), dbType+".mmdb")
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	if _, err := tree.WriteTo(f); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestOpenAcceptsCityDatabases(t *testing.T) {
	t.Parallel()
	for _, dbType := range []string{"GeoIP2-City", "GeoLite2-City", "DBIP-City-Lite", "GeoIP2-City-Europe"} {
		t.Run(dbType, func(t *testing.T) {
			l, err := Open(writeDB(t, dbType))
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer l.Close()
			if got, want := l.Lookup(netip.MustParseAddr("81.2.69.1")).Country, "GB"; got != want {
				t.Errorf("Country = %q, want %q", got, want)
			}
		})
	}
}

func TestOpenErrors(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notMMDB := filepath.Join(dir, "not.mmdb")
	if err := os.WriteFile(notMMDB, []byte("this is not a MaxMind DB\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		path    string
		wantErr string // besides the path
	}{
		{name: "missing file", path: filepath.Join(dir, "missing.mmdb"), wantErr: "no such file"},
		{name: "directory", path: dir},
		{name: "not a maxmind db", path: notMMDB, wantErr: "invalid MaxMind DB"},
		{name: "country database", path: writeDB(t, "GeoLite2-Country"), wantErr: "not a city database"},
		{name: "asn database", path: writeDB(t, "GeoLite2-ASN"), wantErr: "not a city database"},
		{name: "unknown database type", path: writeDB(t, "Acme-Things"), wantErr: "Acme-Things"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := Open(tt.path)
			if err == nil {
				l.Close()
				t.Fatalf("Open(%s): got nil error", tt.path)
			}
			if !strings.Contains(err.Error(), tt.path) {
				t.Errorf("error %q does not name the path %s", err, tt.path)
			}
			if !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %q does not mention %q", err, tt.wantErr)
			}
		})
	}
	t.Run("empty path", func(t *testing.T) {
		if _, err := Open(""); err == nil {
			t.Fatal(`Open(""): got nil error`)
		}
	})
}

func TestClip(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "short", in: "Berlin", want: "Berlin"},
		{name: "exactly 64 bytes", in: strings.Repeat("a", 64), want: strings.Repeat("a", 64)},
		{name: "65 bytes", in: strings.Repeat("a", 65), want: strings.Repeat("a", 64)},
		{name: "multibyte rune ends at 64", in: strings.Repeat("é", 40), want: strings.Repeat("é", 32)},
		{name: "multibyte rune straddles 64", in: "a" + strings.Repeat("é", 40), want: "a" + strings.Repeat("é", 31)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := clip(tt.in); got != tt.want {
				t.Errorf("clip(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestPrefixKey(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		a, b string
		same bool
	}{
		{name: "same ipv4 /24", a: "81.2.69.1", b: "81.2.69.254", same: true},
		{name: "neighbouring ipv4 /24", a: "81.2.69.1", b: "81.2.70.1"},
		{name: "ipv4 /24 differing in the first octet", a: "1.2.3.4", b: "2.2.3.4"},
		{name: "same ipv6 /48", a: "2a02:8000:1::1", b: "2a02:8000:1:ffff:ffff::1", same: true},
		{name: "neighbouring ipv6 /48", a: "2a02:8000:1::1", b: "2a02:8000:2::1"},
		{name: "ipv4 and the ipv6 /48 of zeros", a: "0.0.0.1", b: "::1"},
		{name: "ipv4 and an ipv6 /48 with the same bits", a: "0.1.2.3", b: "0:1:203::"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ka := prefixKey(netip.MustParseAddr(tt.a))
			kb := prefixKey(netip.MustParseAddr(tt.b))
			if got := ka == kb; got != tt.same {
				t.Errorf("prefixKey(%s) == prefixKey(%s) is %v, want %v (%#x, %#x)", tt.a, tt.b, got, tt.same, ka, kb)
			}
		})
	}
}

func TestCacheBound(t *testing.T) {
	t.Parallel()
	const size = 100
	l := openFixture(t, WithCacheSize(size))
	for i := range 5000 {
		l.Lookup(netip.AddrFrom4([4]byte{1, byte(i >> 8), byte(i), 1}))
		l.Lookup(netip.AddrFrom16([16]byte{0x2a, 0x02, 0x80, 0x00, byte(i >> 8), byte(i), 15: 1}))
		if i%100 == 0 {
			if got := cached(l); got > size {
				t.Fatalf("after %d prefixes the cache holds %d, want at most %d", 2*(i+1), got, size)
			}
		}
	}
	if got := cached(l); got != size {
		t.Errorf("cache holds %d prefixes, want %d (full)", got, size)
	}
	// Eviction must leave answers intact.
	for _, a := range geoip.FixtureAnswers {
		if diff := cmp.Diff(want(a), l.Lookup(a.Sample)); diff != "" {
			t.Errorf("after churn, Lookup(%s) mismatch (-want +got):\n%s", a.Sample, diff)
		}
	}
}

// A prefix looked up again and again stays cached through a scan of one-off
// prefixes many times the cache's size.
func TestCacheKeepsHotPrefixes(t *testing.T) {
	t.Parallel()
	const size = 64
	l := openFixture(t, WithCacheSize(size))
	hot := geoip.FixtureAnswers[0].Sample
	for range 10 {
		l.Lookup(hot)
	}
	// The hot prefix comes back every 2×size one-offs, so a plain LRU or FIFO
	// cache would have dropped it by the end.
	for i := range 50 * size {
		l.Lookup(netip.AddrFrom4([4]byte{1, byte(i >> 8), byte(i), 1}))
		if i%(2*size) == 0 {
			l.Lookup(hot)
		}
	}
	if _, ok := l.cache.GetIfPresent(prefixKey(hot)); !ok {
		t.Errorf("hot prefix of %s evicted by one-off ones", hot)
	}
}

// cached is how many prefixes l's cache holds once pending evictions are applied.
func cached(l *Locator) int {
	l.cache.CleanUp()
	return l.cache.EstimatedSize()
}

func TestCacheHitAllocatesNothing(t *testing.T) {
	l := openFixture(t)
	ip := geoip.FixtureAnswers[0].Sample
	l.Lookup(ip)
	if got := testing.AllocsPerRun(100, func() { l.Lookup(ip) }); got != 0 {
		t.Errorf("cached Lookup allocates %v times, want 0", got)
	}
}

func TestConcurrentLookupAndClose(t *testing.T) {
	t.Parallel()
	l := openFixture(t, WithCacheSize(32))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 2000 {
				a := geoip.FixtureAnswers[(g+i)%len(geoip.FixtureAnswers)]
				if got := l.Lookup(a.Sample); got != want(a) && got != (visitor.Location{}) {
					t.Errorf("Lookup(%s) = %+v, want %+v or zero", a.Sample, got, want(a))
					return
				}
				l.Lookup(netip.AddrFrom4([4]byte{1, byte(g), byte(i), 1}))
			}
		})
	}
	wg.Go(func() {
		if err := l.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	wg.Wait()
}

func BenchmarkLookupCached(b *testing.B) {
	l := openFixture(b)
	ip := geoip.FixtureAnswers[0].Sample
	l.Lookup(ip)
	b.ReportAllocs()
	for b.Loop() {
		l.Lookup(ip)
	}
}

func BenchmarkLookupCachedParallel(b *testing.B) {
	l := openFixture(b)
	for _, a := range geoip.FixtureAnswers {
		l.Lookup(a.Sample)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.Lookup(geoip.FixtureAnswers[i%len(geoip.FixtureAnswers)].Sample)
			i++
		}
	})
}

// BenchmarkLookupMiss cycles through 65,536 /48s of a known network, four times
// the default cache size, so that every lookup misses, decodes a full record
// and evicts an entry.
func BenchmarkLookupMiss(b *testing.B) {
	l := openFixture(b)
	ips := make([]netip.Addr, 1<<16)
	for i := range ips {
		ips[i] = netip.AddrFrom16([16]byte{0x2a, 0x02, 0x80, 0x00, byte(i >> 8), byte(i), 15: 1})
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		l.Lookup(ips[i%len(ips)])
		i++
	}
}

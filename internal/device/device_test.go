package device

import (
	"fmt"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/visitor"
)

// Real User-Agents, shared by tests and benchmarks.
const (
	chromeWindows  = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.109 Safari/537.36"
	safariIPhone   = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1_2 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1.2 Mobile/15E148 Safari/604.1"
	firefoxLinux   = "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"
	chromeAndroid  = "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.144 Mobile Safari/537.36"
	headlessChrome = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/120.0.6099.28 Safari/537.36"
	googlebot      = "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	googlebotPhone = "Mozilla/5.0 (Linux; Android 6.0.1; Nexus 5X Build/MMB29P) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.129 Mobile Safari/537.36 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)"
	bingbot        = "Mozilla/5.0 AppleWebKit/537.36 (KHTML, like Gecko; compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm) Chrome/116.0.1938.76 Safari/537.36"
)

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ua   string
		want visitor.Device
	}{
		{
			name: "chrome desktop windows",
			ua:   chromeWindows,
			want: visitor.Device{Browser: "Chrome", Version: "120.0", OS: "Windows"},
		},
		{
			name: "safari iphone",
			ua:   safariIPhone,
			want: visitor.Device{Browser: "Safari", Version: "17.1", OS: "iPhone OS", Mobile: true},
		},
		{
			name: "firefox linux",
			ua:   firefoxLinux,
			want: visitor.Device{Browser: "Firefox", Version: "121.0", OS: "Linux"},
		},
		{
			name: "chrome android",
			ua:   chromeAndroid,
			want: visitor.Device{Browser: "Chrome", Version: "120.0", OS: "Android", Mobile: true},
		},
		{
			name: "headless chrome is not a bot",
			ua:   headlessChrome,
			want: visitor.Device{Browser: "Headless Chrome", Version: "120.0", OS: "Linux"},
		},
		{
			name: "googlebot",
			ua:   googlebot,
			want: visitor.Device{Browser: "Googlebot", Version: "2.1", Bot: true},
		},
		{
			name: "googlebot smartphone",
			ua:   googlebotPhone,
			want: visitor.Device{Browser: "Googlebot", Version: "2.1", Mobile: true, Bot: true},
		},
		{
			name: "bingbot",
			ua:   bingbot,
			want: visitor.Device{Browser: "bingbot", Version: "2.0", Bot: true},
		},
		{
			name: "curl",
			ua:   "curl/8.4.0",
			want: visitor.Device{Browser: "curl", Version: "8.4", Bot: true},
		},
		{
			name: "wget",
			ua:   "Wget/1.21.4",
			want: visitor.Device{Browser: "Wget", Version: "1.21", Bot: true},
		},
		{
			name: "python requests",
			ua:   "python-requests/2.31.0",
			want: visitor.Device{Browser: "python-requests", Version: "2.31", Bot: true},
		},
		{
			name: "go http client",
			ua:   "Go-http-client/1.1",
			want: visitor.Device{Browser: "Go-http-client", Version: "1.1", Bot: true},
		},
		{
			name: "libwww perl",
			ua:   "libwww-perl/6.72",
			want: visitor.Device{Browser: "libwww-perl", Version: "6.72", Bot: true},
		},
		{
			name: "empty",
			ua:   "",
			want: visitor.Device{Bot: true},
		},
		{
			name: "blank",
			ua:   "   ",
			want: visitor.Device{Bot: true},
		},
	}
	p := NewParser(64)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The first call parses, the second must answer the same from the cache.
			for _, call := range []string{"miss", "hit"} {
				if diff := cmp.Diff(tt.want, p.Parse(tt.ua)); diff != "" {
					t.Errorf("Parse(%q) on %s (-want +got):\n%s", tt.ua, call, diff)
				}
			}
		})
	}
}

func TestParseOkHTTPIsBot(t *testing.T) {
	t.Parallel()
	// useragent guesses Mobile for okhttp; only Bot matters here.
	if got := NewParser(8).Parse("okhttp/4.12.0"); !got.Bot {
		t.Fatalf("Parse(okhttp).Bot = false, want true (%+v)", got)
	}
}

func TestParseLongUserAgentIsNotCached(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		ua         string
		wantCached int
	}{
		{name: "at the limit", ua: padTo(chromeWindows, maxKeyLen), wantCached: 1},
		{name: "over the limit", ua: padTo(chromeWindows, maxKeyLen+1), wantCached: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewParser(64)
			got := p.Parse(tt.ua)
			if got.Browser != "Chrome" || got.Bot {
				t.Errorf("Parse(padded Chrome) = %+v, want a Chrome that is not a bot", got)
			}
			if got, want := p.len(), tt.wantCached; got != want {
				t.Fatalf("len() = %d, want %d", got, want)
			}
		})
	}
}

func TestParseCapsFields(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ua   string
	}{
		{name: "long ascii name and version", ua: strings.Repeat("a", 100) + "/" + strings.Repeat("9", 100)},
		{name: "long multi-byte name", ua: strings.Repeat("é", 50) + "/1.0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewParser(8).Parse(tt.ua)
			for field, s := range map[string]string{"Browser": d.Browser, "Version": d.Version, "OS": d.OS} {
				if len(s) > maxFieldLen {
					t.Errorf("%s has %d bytes, want at most %d", field, len(s), maxFieldLen)
				}
				if !utf8.ValidString(s) {
					t.Errorf("%s = %q, not valid UTF-8", field, s)
				}
			}
			if d.Browser == "" {
				t.Errorf("Browser is empty, want it truncated, not dropped")
			}
		})
	}
}

func TestMajorMinor(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		want string
	}{
		{name: "full build", in: "120.0.6099.109", want: "120.0"},
		{name: "three parts", in: "17.1.2", want: "17.1"},
		{name: "two parts", in: "121.0", want: "121.0"},
		{name: "major only", in: "17", want: "17"},
		{name: "empty", in: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := majorMinor(tt.in); got != tt.want {
				t.Fatalf("majorMinor(%q) = %q, want %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestCacheBound(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		size int
	}{
		{name: "disabled", size: 0},
		{name: "one", size: 1},
		{name: "fewer than shards", size: 7},
		{name: "not a multiple of shards", size: 100},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := NewParser(tt.size)
			for i := range 50*tt.size + 100 {
				p.Parse(distinctUA(i))
				if got := p.len(); got > tt.size {
					t.Fatalf("after %d distinct User-Agents len() = %d, want at most %d", i+1, got, tt.size)
				}
			}
			// With far more distinct User-Agents than room, every shard is full.
			if got, want := p.len(), tt.size; got != want {
				t.Fatalf("len() = %d, want %d", got, want)
			}
		})
	}
}

// User-Agents seen again and again stay cached through a flood of one-off ones
// many times the cache's size: a client sending unique headers cannot push the
// popular browsers out and make every page view parse.
func TestCacheKeepsPopularThroughFlood(t *testing.T) {
	t.Parallel()
	const size = 100
	p := NewParser(size)
	popular := []string{chromeWindows, safariIPhone, firefoxLinux, chromeAndroid}
	for range 10 {
		for _, ua := range popular {
			p.Parse(ua)
		}
	}
	// The popular ones come back every 2×size one-offs, so a plain LRU or FIFO
	// cache would have dropped them by the end.
	for i := range 50 * size {
		p.Parse(distinctUA(i))
		if i%(2*size) == 0 {
			for _, ua := range popular {
				p.Parse(ua)
			}
		}
	}
	for _, ua := range popular {
		if _, ok := p.cache.GetIfPresent(ua); !ok {
			t.Errorf("popular User-Agent %.40q… evicted by one-off ones", ua)
		}
	}
	if got := p.len(); got > size {
		t.Fatalf("len() = %d, want at most %d", got, size)
	}
}

func TestParseCachedDoesNotAllocate(t *testing.T) {
	p := NewParser(64)
	p.Parse(chromeWindows)
	if got := testing.AllocsPerRun(100, func() { sink = p.Parse(chromeWindows) }); got != 0 {
		t.Fatalf("cached Parse allocates %v times, want 0", got)
	}
}

func TestParseConcurrent(t *testing.T) {
	t.Parallel()
	// A cache far smaller than the working set makes readers race with evictions.
	const size = 8
	uas := []string{chromeWindows, safariIPhone, firefoxLinux, headlessChrome, googlebot, bingbot, "curl/8.4.0", ""}
	for i := range 32 {
		uas = append(uas, distinctUA(i))
	}
	want := make(map[string]visitor.Device, len(uas))
	for _, ua := range uas {
		want[ua] = parse(ua)
	}

	p := NewParser(size)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				ua := uas[(g*7+i)%len(uas)]
				if got := p.Parse(ua); got != want[ua] {
					t.Errorf("Parse(%q) = %+v, want %+v", ua, got, want[ua])
					return
				}
			}
		})
	}
	wg.Wait()
	if got := p.len(); got > size {
		t.Fatalf("len() = %d, want at most %d", got, size)
	}
}

var sink visitor.Device

func BenchmarkParseCached(b *testing.B) {
	p := NewParser(1024)
	p.Parse(chromeWindows)
	b.ReportAllocs()
	for b.Loop() {
		sink = p.Parse(chromeWindows)
	}
}

func BenchmarkParseCachedParallel(b *testing.B) {
	p := NewParser(1024)
	uas := []string{chromeWindows, safariIPhone, firefoxLinux, chromeAndroid}
	for _, ua := range uas {
		p.Parse(ua)
	}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		var d visitor.Device
		for i := 0; pb.Next(); i++ {
			d = p.Parse(uas[i%len(uas)])
		}
		_ = d
	})
}

func BenchmarkParseMiss(b *testing.B) {
	// Cycling through more User-Agents than the cache holds makes every call a
	// miss that parses, inserts and evicts.
	uas := make([]string, 4096)
	for i := range uas {
		uas[i] = distinctUA(i)
	}
	p := NewParser(256)
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		sink = p.Parse(uas[i%len(uas)])
		i++
	}
}

// distinctUA returns a realistic User-Agent that differs for every i.
func distinctUA(i int) string {
	return fmt.Sprintf("Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.%d.109 Safari/537.36", i)
}

// padTo lengthens ua to n bytes with an extra product token, as some in-app
// browsers do.
func padTo(ua string, n int) string {
	const prefix = " Extra/"
	return ua + prefix + strings.Repeat("x", n-len(ua)-len(prefix))
}

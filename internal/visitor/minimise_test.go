package visitor

import (
	"errors"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

// minimiseTestSite is shop as a sites file would give it: an explicit query
// allow-list with one prefix, two redacted path patterns, titles kept.
func minimiseTestSite() *Site {
	return &Site{
		ID: "shop", Origins: []string{"https://shop.example"}, IP: IPTruncate,
		KeepQuery:   []string{"utm_*", "ref"},
		RedactPaths: []*regexp.Regexp{regexp.MustCompile(`^/reset/`), regexp.MustCompile(`^/orders/[0-9]+`)},
		KeepTitle:   true,
	}
}

func TestMinimisePage(t *testing.T) {
	t.Parallel()
	longPath := "/" + strings.Repeat("a", 2*MaxURLBytes)
	longEscapes := "/" + strings.Repeat("%C3%A9", MaxURLBytes/3)
	tests := []struct {
		name     string
		site     func(*Site)
		url      string
		title    string
		referrer string
		want     Page
	}{
		{
			name: "query allow-list keeps named and prefixed parameters in order",
			url:  "https://shop.example/p?email=a%40b.example&utm_source=mail&q=secret&ref=ad&utm_campaign=x&session=1",
			want: Page{URL: "https://shop.example/p?utm_source=mail&ref=ad&utm_campaign=x"},
		},
		{
			name: "default utm_* prefix",
			site: func(s *Site) { s.KeepQuery = []string{"utm_*"} },
			url:  "https://shop.example/p?utm_term=t&ref=ad&utm_source=s&id=3",
			want: Page{URL: "https://shop.example/p?utm_term=t&utm_source=s"},
		},
		{
			name: "no allow-list drops the query",
			site: func(s *Site) { s.KeepQuery = nil },
			url:  "https://shop.example/p?utm_source=s",
			want: Page{URL: "https://shop.example/p"},
		},
		{
			name: "a name that only starts like an allowed one is dropped",
			url:  "https://shop.example/p?referrer=x&refx=y&ref=z",
			want: Page{URL: "https://shop.example/p?ref=z"},
		},
		{
			name: "a query of dropped parameters leaves no '?'",
			url:  "https://shop.example/p?q=secret&session=1",
			want: Page{URL: "https://shop.example/p"},
		},
		{
			name: "empty, nameless and undecodable parameters dropped",
			url:  "https://shop.example/p?&=x&%zz=1&&ref=a&utm_%73ource=b%20c&",
			want: Page{URL: "https://shop.example/p?ref=a&utm_%73ource=b%20c"},
		},
		{
			name: "redacted path drops its kept query",
			url:  "https://shop.example/orders/7?utm_source=mail",
			want: Page{URL: "https://shop.example" + RedactedPath},
		},
		{
			name: "upper-case origin and default port with a path and kept query",
			url:  "HTTPS://Shop.Example:443/P?ref=z",
			want: Page{URL: "https://shop.example/P?ref=z"},
		},
		{
			name: "fragment dropped",
			url:  "https://shop.example/p#access_token=abc",
			want: Page{URL: "https://shop.example/p"},
		},
		{
			name: "fragment dropped after a kept query",
			url:  "https://shop.example/p?utm_source=s#top",
			want: Page{URL: "https://shop.example/p?utm_source=s"},
		},
		{
			name: "empty path is the root",
			url:  "https://shop.example?email=a",
			want: Page{URL: "https://shop.example/"},
		},
		{
			name: "user info dropped",
			url:  "https://user:password@shop.example/account",
			want: Page{URL: "https://shop.example/account"},
		},
		{
			name: "origin normalised: case and default port",
			url:  "HTTPS://SHOP.example:443/Cart",
			want: Page{URL: "https://shop.example/Cart"},
		},
		{
			name: "redacted path keeps only the origin",
			url:  "https://shop.example/reset/9f8e7d6c?utm_source=mail#x",
			want: Page{URL: "https://shop.example" + RedactedPath},
		},
		{
			name:  "redacted path drops its title",
			url:   "https://shop.example/orders/1234/invoice",
			title: "Invoice for Jane Doe, 1 High Street",
			want:  Page{URL: "https://shop.example" + RedactedPath},
		},
		{
			name:  "redacted path drops its title, found through an escape",
			url:   "https://shop.example/%72eset/9f8e7d6c",
			title: "Reset the password of jane@doe.example",
			want:  Page{URL: "https://shop.example" + RedactedPath},
		},
		{
			name: "redacted path with a sub-path",
			url:  "https://shop.example/orders/1234/invoice",
			want: Page{URL: "https://shop.example" + RedactedPath},
		},
		{
			name: "redaction sees the decoded path",
			url:  "https://shop.example/%6Frders/1234",
			want: Page{URL: "https://shop.example" + RedactedPath},
		},
		{
			name: "a path that does not match stays",
			url:  "https://shop.example/orders/",
			want: Page{URL: "https://shop.example/orders/"},
		},
		{
			name:     "external referrer kept as its origin",
			url:      "https://shop.example/",
			referrer: "https://www.search.example/search?q=my+name#r",
			want:     Page{URL: "https://shop.example/", Referrer: "https://www.search.example"},
		},
		{
			name:     "external referrer drops user info and default port",
			url:      "https://shop.example/",
			referrer: "https://me:pw@Other.example:443/inbox/42",
			want:     Page{URL: "https://shop.example/", Referrer: "https://other.example"},
		},
		{
			name:     "internal referrer kept as its path",
			url:      "https://shop.example/",
			referrer: "https://shop.example/cart?coupon=SECRET#pay",
			want:     Page{URL: "https://shop.example/", Referrer: "/cart"},
		},
		{
			name:     "internal referrer at the root",
			url:      "https://shop.example/a",
			referrer: "https://shop.example",
			want:     Page{URL: "https://shop.example/a", Referrer: "/"},
		},
		{
			name:     "internal referrer redacted",
			url:      "https://shop.example/",
			referrer: "https://shop.example/reset/9f8e7d6c",
			want:     Page{URL: "https://shop.example/", Referrer: RedactedPath},
		},
		{
			name:     "non-http referrer dropped",
			url:      "https://shop.example/",
			referrer: "android-app://com.example.mail/inbox",
			want:     Page{URL: "https://shop.example/"},
		},
		{
			name:     "relative referrer dropped",
			url:      "https://shop.example/",
			referrer: "/from/here",
			want:     Page{URL: "https://shop.example/"},
		},
		{
			name:  "title kept",
			url:   "https://shop.example/",
			title: "Blue mug",
			want:  Page{URL: "https://shop.example/", Title: "Blue mug"},
		},
		{
			name:  "keep_title false drops the title",
			site:  func(s *Site) { s.KeepTitle = false },
			url:   "https://shop.example/",
			title: "Order 1234 for Jane Doe",
			want:  Page{URL: "https://shop.example/"},
		},
		{
			name:  "control characters folded",
			url:   "https://shop.example/",
			title: "Blue\tmug\nsale\r\x00now\x7f\u0085!\u2028ok",
			want:  Page{URL: "https://shop.example/", Title: "Blue mug sale now ! ok"},
		},
		{
			name:  "bidi overrides, embeddings and isolates removed",
			url:   "https://shop.example/",
			title: "Invoice \u202egpj.exe\u202c \u202bx\u202a \u2066y\u2069\u2067z\u2068 \u200e\u200f\u061c",
			want:  Page{URL: "https://shop.example/", Title: "Invoice gpj.exe x yz"},
		},
		{
			name:  "zero-width characters removed",
			url:   "https://shop.example/",
			title: "\ufeffB\u200blue\u200c m\u200dug\u2060\u00ad",
			want:  Page{URL: "https://shop.example/", Title: "Blue mug"},
		},
		{
			name:  "surrounding space trimmed",
			url:   "https://shop.example/",
			title: "\n  Blue mug \t",
			want:  Page{URL: "https://shop.example/", Title: "Blue mug"},
		},
		{
			name:  "invalid UTF-8 dropped",
			url:   "https://shop.example/",
			title: "Blue\xff\xfe mug",
			want:  Page{URL: "https://shop.example/", Title: "Blue mug"},
		},
		{
			name:  "title cut to 200 bytes",
			url:   "https://shop.example/",
			title: strings.Repeat("a", MaxTitleBytes+50),
			want:  Page{URL: "https://shop.example/", Title: strings.Repeat("a", MaxTitleBytes)},
		},
		{
			name:  "title cut without splitting a two-byte character",
			url:   "https://shop.example/",
			title: strings.Repeat("a", MaxTitleBytes-1) + "é",
			want:  Page{URL: "https://shop.example/", Title: strings.Repeat("a", MaxTitleBytes-1)},
		},
		{
			name:  "title cut without splitting a four-byte character",
			url:   "https://shop.example/",
			title: strings.Repeat("a", MaxTitleBytes-2) + "😀tail",
			want:  Page{URL: "https://shop.example/", Title: strings.Repeat("a", MaxTitleBytes-2)},
		},
		{
			name: "URL cut to 1 KiB",
			url:  "https://shop.example" + longPath,
			want: Page{URL: ("https://shop.example" + longPath)[:MaxURLBytes]},
		},
		{
			name: "URL cut to 1 KiB with its kept query",
			url:  "https://shop.example/p?utm_source=" + strings.Repeat("x", 2*MaxURLBytes),
			want: Page{URL: ("https://shop.example/p?utm_source=" + strings.Repeat("x", 2*MaxURLBytes))[:MaxURLBytes]},
		},
		{
			name:     "internal referrer path cut to 1 KiB",
			url:      "https://shop.example/",
			referrer: "https://shop.example" + longPath,
			want:     Page{URL: "https://shop.example/", Referrer: longPath[:MaxURLBytes]},
		},
		{
			name: "URL cut without splitting an escape",
			url:  "https://shop.example" + longEscapes,
			// "https://shop.example/" is 21 bytes; 1003 bytes of escapes hold
			// 334 whole ones (1002 bytes) and a cut one.
			want: Page{URL: "https://shop.example/" + strings.Repeat("%C3%A9", 167)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := minimiseTestSite()
			if tt.site != nil {
				tt.site(s)
			}
			got, err := s.MinimisePage(tt.url, tt.title, tt.referrer)
			if err != nil {
				t.Fatalf("MinimisePage: %v", err)
			}
			if got != tt.want {
				t.Errorf("MinimisePage =\n\t%+v\nwant\n\t%+v", got, tt.want)
			}
			if len(got.URL) > MaxURLBytes || len(got.Referrer) > MaxURLBytes {
				t.Errorf("url %d bytes, referrer %d bytes; want at most %d", len(got.URL), len(got.Referrer), MaxURLBytes)
			}
			if len(got.Title) > MaxTitleBytes || !utf8.ValidString(got.Title) {
				t.Errorf("title %q: %d bytes, valid UTF-8 %t", got.Title, len(got.Title), utf8.ValidString(got.Title))
			}
			if strings.ContainsAny(got.Title, "\t\r\n") {
				t.Errorf("title %q holds a control character", got.Title)
			}
		})
	}
}

func TestMinimisePageRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		url  string
		want error
	}{
		{name: "other host", url: "https://evil.example/products/42", want: ErrURLNotInSite},
		{name: "sub-domain", url: "https://www.shop.example/", want: ErrURLNotInSite},
		{name: "other scheme of the host", url: "http://shop.example/", want: ErrURLNotInSite},
		{name: "other port", url: "https://shop.example:8443/", want: ErrURLNotInSite},
		{name: "host as user info", url: "https://shop.example@evil.example/", want: ErrURLNotInSite},
		{name: "ftp", url: "ftp://shop.example/file", want: ErrInvalid},
		{name: "javascript", url: "javascript:alert(document.cookie)", want: ErrInvalid},
		{name: "data", url: "data:text/html,hi", want: ErrInvalid},
		{name: "relative", url: "/products/42", want: ErrInvalid},
		{name: "no host", url: "https:///products/42", want: ErrInvalid},
		{name: "empty", url: "", want: ErrInvalid},
		{name: "control character", url: "https://shop.example/a\tb", want: ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := minimiseTestSite().MinimisePage(tt.url, "title", "")
			if !errors.Is(err, tt.want) {
				t.Fatalf("MinimisePage(%q) = %+v, %v; want %v", tt.url, got, err, tt.want)
			}
			if got != (Page{}) {
				t.Errorf("MinimisePage returned %+v with its error", got)
			}
		})
	}
}

func TestStoredIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		mode IPMode
		ip   string
		want string
	}{
		{name: "ipv4 truncated to /24", mode: IPTruncate, ip: "81.2.69.160", want: "81.2.69.0/24"},
		{name: "ipv6 truncated to /48", mode: IPTruncate, ip: "2a02:8000:1234:5678:9abc::1", want: "2a02:8000:1234::/48"},
		{name: "ipv4-mapped ipv6 truncated as ipv4", mode: IPTruncate, ip: "::ffff:81.2.69.160", want: "81.2.69.0/24"},
		{name: "default mode truncates", mode: "", ip: "81.2.69.160", want: "81.2.69.0/24"},
		{name: "full ipv4", mode: IPFull, ip: "81.2.69.160", want: "81.2.69.160"},
		{name: "full ipv4-mapped unmapped", mode: IPFull, ip: "::ffff:81.2.69.160", want: "81.2.69.160"},
		{name: "full ipv6", mode: IPFull, ip: "2a02:8000:1234:5678::1", want: "2a02:8000:1234:5678::1"},
		{name: "drop ipv4", mode: IPDrop, ip: "81.2.69.160", want: ""},
		{name: "drop ipv6", mode: IPDrop, ip: "2a02:8000:1234:5678::1", want: ""},
		{name: "unknown address", mode: IPFull, ip: "", want: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var ip netip.Addr
			if tt.ip != "" {
				ip = netip.MustParseAddr(tt.ip)
			}
			s := &Site{ID: "shop", IP: tt.mode}
			if got := s.StoredIP(ip); got != tt.want {
				t.Errorf("StoredIP(%s) = %q, want %q", tt.ip, got, tt.want)
			}
		})
	}
}

func TestTruncateIP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		ip   string
		want string
	}{
		{name: "ipv4", ip: "192.0.2.255", want: "192.0.2.0/24"},
		{name: "ipv4 loopback", ip: "127.0.0.1", want: "127.0.0.0/24"},
		{name: "ipv6", ip: "2001:db8:abcd:12:ffff::1", want: "2001:db8:abcd::/48"},
		{name: "ipv6 with zone", ip: "fe80::1%eth0", want: "fe80::/48"},
		{name: "ipv4-mapped", ip: "::ffff:192.0.2.7", want: "192.0.2.0/24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := TruncateIP(netip.MustParseAddr(tt.ip)); got != tt.want {
				t.Errorf("TruncateIP(%s) = %q, want %q", tt.ip, got, tt.want)
			}
		})
	}
	if got := TruncateIP(netip.Addr{}); got != "" {
		t.Errorf("TruncateIP(zero) = %q, want empty", got)
	}
}

// TestLocationHoldsNoCoordinates pins invariant 5's "geolocation is kept to
// country, region, city, time zone": a Location has room for nothing finer.
func TestLocationHoldsNoCoordinates(t *testing.T) {
	t.Parallel()
	var fields []string
	typ := reflect.TypeFor[Location]()
	for i := range typ.NumField() {
		fields = append(fields, typ.Field(i).Name)
	}
	if want := []string{"Country", "Region", "City", "TimeZone"}; !slices.Equal(fields, want) {
		t.Errorf("Location fields = %q, want %q", fields, want)
	}
}

// TestContactClean pins invariant 5 for contact names: what a visitor typed
// reaches operators and the CRM as one printable line, without characters that
// reorder or hide text.
func TestContactClean(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   Contact
		want Contact
	}{
		{name: "plain", in: Contact{Name: "Ada Lovelace", Email: " ada@math.example ", Phone: " +44 20 7946 0000 "},
			want: Contact{Name: "Ada Lovelace", Email: "ada@math.example", Phone: "+44 20 7946 0000"}},
		{name: "line breaks and tabs folded", in: Contact{Name: "Ada\nLovelace\t"}, want: Contact{Name: "Ada Lovelace"}},
		{name: "other controls removed", in: Contact{Name: "A\x00da\x1b[31m\x7f"}, want: Contact{Name: "Ada[31m"}},
		{name: "bidi override removed", in: Contact{Name: "\u202eecalevoL adA\u202c"}, want: Contact{Name: "ecalevoL adA"}},
		{name: "bidi isolates and marks removed", in: Contact{Name: "\u2067Ada\u2069 \u200fLovelace\u200e"}, want: Contact{Name: "Ada Lovelace"}},
		{name: "zero-width removed", in: Contact{Name: "A\u200bd\u200ca\u200d \ufeffLove\u2060lace"}, want: Contact{Name: "Ada Lovelace"}},
		{name: "invalid UTF-8 removed", in: Contact{Name: "Ada\xff Lovelace"}, want: Contact{Name: "Ada Lovelace"}},
		{name: "only invisible characters leave nothing", in: Contact{Name: "\u200b\u202e\u2066"}, want: Contact{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.Clean()
			if got != tt.want {
				t.Fatalf("Clean() = %+q, want %+q", got, tt.want)
			}
			if err := got.Validate(); err != nil {
				t.Errorf("Validate after Clean: %v", err)
			}
			if strings.IndexFunc(got.Name, unprintable) >= 0 {
				t.Errorf("name %+q keeps an unprintable character", got.Name)
			}
		})
	}
}

// cleanText's fast path for printable ASCII answers what the general path
// answers: for every byte alone and inside text, and for text around it.
func TestCleanTextASCIIFastPathIsTheGeneralPath(t *testing.T) {
	inputs := []string{"", "  Blue mug \u2013 Shop ", "Blue mug", " padded ", "tab\there", "nul\x00byte", "del\x7fbyte",
		"bidi\u202eevil", "zero\u200bwidth", "bad\xffutf8", "line\nbreak", "\r\n"}
	for b := range 256 {
		inputs = append(inputs, string([]byte{byte(b)}), "a"+string([]byte{byte(b)})+"b")
	}
	for _, in := range inputs {
		if got, want := cleanText(in), cleanUnicode(in); got != want {
			t.Errorf("cleanText(%q) = %q, the general path gives %q", in, got, want)
		}
	}
}

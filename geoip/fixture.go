// Package geoip builds a small GeoIP2-City database with known answers, so that
// tests (and `make run`) exercise the real MaxMind DB reader without shipping or
// downloading a real database. See README.md for how to use a real one.
package geoip

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"

	"github.com/maxmind/mmdbwriter"
	"github.com/maxmind/mmdbwriter/mmdbtype"
)

// FixtureDatabaseType is the metadata database type the fixture declares. It is
// the type of MaxMind's commercial city database, so readers treat the fixture
// exactly as they would treat GeoIP2-City or GeoLite2-City.
const FixtureDatabaseType = "GeoIP2-City"

// fixtureBuildEpoch pins the metadata build time (2025-01-01T00:00:00Z) so
// that the fixture is byte-for-byte reproducible.
const fixtureBuildEpoch = 1735689600

// Subdivision is one entry of a record's subdivisions, largest first.
type Subdivision struct {
	ISOCode string // ISO 3166-2 code without the country, e.g. "ENG"
	Name    string // English name, e.g. "England"
}

// FixtureAnswer is one network of the fixture database and what it holds.
// Fields left empty are absent from the record, as they are in real databases
// for networks known only to the country.
type FixtureAnswer struct {
	// Network is the network the record is inserted for.
	Network netip.Prefix
	// Sample is an address inside Network, handy for lookups in tests.
	Sample netip.Addr

	Country      string // ISO 3166-1 alpha-2, e.g. "GB"
	CountryName  string // English name, e.g. "United Kingdom"
	Subdivisions []Subdivision
	City         string // English name, empty for a country-only record
	TimeZone     string // IANA name, empty when the record has no location
	Latitude     float64
	Longitude    float64
}

// FixtureAnswers is the content of the fixture database, one entry per network.
// Tests may read it to know the expected answers; they must not modify it.
//
// The IPv4 networks are those of MaxMind's own test databases
// (github.com/maxmind/MaxMind-DB, test-data), so anyone who knows those will
// recognise them; the assignments are test data, not facts about the networks.
// Every address outside these networks (e.g. 1.1.1.1, 2001:4860::1) is unknown.
//
//	network            country  subdivisions (largest first)  city        time zone
//	81.2.69.0/24       GB       ENG                           London      Europe/London
//	2.125.160.0/24     GB       ENG, WBK                      Boxford     Europe/London
//	89.160.20.0/24     SE       E                             Linköping   Europe/Stockholm
//	216.160.83.0/24    US       WA                            Milton      America/Los_Angeles
//	202.196.224.0/20   PH       -                             -           -          (country only)
//	2a02:8000::/32     DE       BE                            Berlin      Europe/Berlin
//	2001:218::/32      JP       -                             -           Asia/Tokyo (country only)
//	121.98.0.0/16      NZ       HKB                           Taumata…    Pacific/Auckland (85-byte name)
var FixtureAnswers = []FixtureAnswer{
	{
		Network: netip.MustParsePrefix("81.2.69.0/24"), Sample: netip.MustParseAddr("81.2.69.142"),
		Country: "GB", CountryName: "United Kingdom",
		Subdivisions: []Subdivision{{ISOCode: "ENG", Name: "England"}},
		City:         "London", TimeZone: "Europe/London", Latitude: 51.5142, Longitude: -0.0931,
	},
	{
		Network: netip.MustParsePrefix("2.125.160.0/24"), Sample: netip.MustParseAddr("2.125.160.216"),
		Country: "GB", CountryName: "United Kingdom",
		Subdivisions: []Subdivision{{ISOCode: "ENG", Name: "England"}, {ISOCode: "WBK", Name: "West Berkshire"}},
		City:         "Boxford", TimeZone: "Europe/London", Latitude: 51.75, Longitude: -1.25,
	},
	{
		Network: netip.MustParsePrefix("89.160.20.0/24"), Sample: netip.MustParseAddr("89.160.20.112"),
		Country: "SE", CountryName: "Sweden",
		Subdivisions: []Subdivision{{ISOCode: "E", Name: "Östergötland County"}},
		City:         "Linköping", TimeZone: "Europe/Stockholm", Latitude: 58.4167, Longitude: 15.6167,
	},
	{
		Network: netip.MustParsePrefix("216.160.83.0/24"), Sample: netip.MustParseAddr("216.160.83.56"),
		Country: "US", CountryName: "United States",
		Subdivisions: []Subdivision{{ISOCode: "WA", Name: "Washington"}},
		City:         "Milton", TimeZone: "America/Los_Angeles", Latitude: 47.2513, Longitude: -122.3149,
	},
	{
		Network: netip.MustParsePrefix("202.196.224.0/20"), Sample: netip.MustParseAddr("202.196.224.1"),
		Country: "PH", CountryName: "Philippines",
	},
	{
		Network: netip.MustParsePrefix("2a02:8000::/32"), Sample: netip.MustParseAddr("2a02:8000:1234::1"),
		Country: "DE", CountryName: "Germany",
		Subdivisions: []Subdivision{{ISOCode: "BE", Name: "Land Berlin"}},
		City:         "Berlin", TimeZone: "Europe/Berlin", Latitude: 52.5244, Longitude: 13.4105,
	},
	{
		Network: netip.MustParsePrefix("2001:218::/32"), Sample: netip.MustParseAddr("2001:218::1"),
		Country: "JP", CountryName: "Japan",
		TimeZone: "Asia/Tokyo", Latitude: 35.69, Longitude: 139.69,
	},
	{
		// A real place name longer than the 64 bytes visitord keeps of any string.
		Network: netip.MustParsePrefix("121.98.0.0/16"), Sample: netip.MustParseAddr("121.98.10.20"),
		Country: "NZ", CountryName: "New Zealand",
		Subdivisions: []Subdivision{{ISOCode: "HKB", Name: "Hawke's Bay"}},
		City:         "Taumatawhakatangihangakoauauotamateaturipukakapikimaungahoronukupokaiwhenuakitanatahu",
		TimeZone:     "Pacific/Auckland", Latitude: -40.3467, Longitude: 176.5456,
	},
}

// WriteFixture writes the fixture database (GeoIP2-City, IPv6 tree with IPv4
// mapped in, 28-bit records) holding FixtureAnswers to w. The output is the same
// on every call.
func WriteFixture(w io.Writer) error {
	tree, err := mmdbwriter.New(mmdbwriter.Options{
		BuildEpoch:   fixtureBuildEpoch,
		DatabaseType: FixtureDatabaseType,
		Description:  map[string]string{"en": "visitord GeoIP2-City test fixture"},
		IPVersion:    6,
		Languages:    []string{"en"},
		RecordSize:   28,
	})
	if err != nil {
		return fmt.Errorf("geoip fixture: %w", err)
	}
	for _, a := range FixtureAnswers {
		if err := tree.Insert(ipNet(a.Network), a.record()); err != nil {
			return fmt.Errorf("geoip fixture: insert %s: %w", a.Network, err)
		}
	}
	if _, err := tree.WriteTo(w); err != nil {
		return fmt.Errorf("geoip fixture: write: %w", err)
	}
	return nil
}

// WriteFixtureFile writes the fixture database to path, replacing any file there.
func WriteFixtureFile(path string) (err error) {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("geoip fixture: %w", err)
	}
	defer func() {
		if cerr := f.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("geoip fixture: %w", cerr))
		}
	}()
	bw := bufio.NewWriter(f)
	if err := WriteFixture(bw); err != nil {
		return err
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("geoip fixture: write %s: %w", path, err)
	}
	return nil
}

// record returns a's data in the shape of a GeoIP2-City record, so that any GeoIP2 reader
// decodes it: country{iso_code,names}, subdivisions[{iso_code,names}],
// city{names}, location{time_zone,latitude,longitude}.
func (a FixtureAnswer) record() mmdbtype.Map {
	names := func(en string) mmdbtype.Map {
		return mmdbtype.Map{"en": mmdbtype.String(en)}
	}
	rec := mmdbtype.Map{
		"country": mmdbtype.Map{
			"iso_code": mmdbtype.String(a.Country),
			"names":    names(a.CountryName),
		},
	}
	if len(a.Subdivisions) > 0 {
		subs := make(mmdbtype.Slice, 0, len(a.Subdivisions))
		for _, s := range a.Subdivisions {
			subs = append(subs, mmdbtype.Map{
				"iso_code": mmdbtype.String(s.ISOCode),
				"names":    names(s.Name),
			})
		}
		rec["subdivisions"] = subs
	}
	if a.City != "" {
		rec["city"] = mmdbtype.Map{"names": names(a.City)}
	}
	if a.TimeZone != "" || a.Latitude != 0 || a.Longitude != 0 {
		loc := mmdbtype.Map{
			"latitude":  mmdbtype.Float64(a.Latitude),
			"longitude": mmdbtype.Float64(a.Longitude),
		}
		if a.TimeZone != "" {
			loc["time_zone"] = mmdbtype.String(a.TimeZone)
		}
		rec["location"] = loc
	}
	return rec
}

// ipNet converts p for mmdbwriter, which predates net/netip. IPv4 networks stay
// 4 bytes long so that the writer places them in the IPv4 subtree.
func ipNet(p netip.Prefix) *net.IPNet {
	p = p.Masked()
	return &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}
}

package geoip_test

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/oschwald/geoip2-golang/v2"

	"github.com/visitord/visitord/geoip"
)

func TestWriteFixtureFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "city.mmdb")
	if err := geoip.WriteFixtureFile(path); err != nil {
		t.Fatalf("WriteFixtureFile: %v", err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got, limit := fi.Size(), int64(2<<20); got >= limit {
		t.Fatalf("fixture is %d bytes, want < %d", got, limit)
	}

	db, err := geoip2.Open(path)
	if err != nil {
		t.Fatalf("geoip2.Open: %v", err)
	}
	t.Cleanup(func() { _ = db.Close() })

	md := db.Metadata()
	if got, want := md.DatabaseType, geoip.FixtureDatabaseType; got != want {
		t.Errorf("database type = %q, want %q", got, want)
	}
	if got, want := md.IPVersion, uint(6); got != want {
		t.Errorf("ip version = %d, want %d", got, want)
	}
	if got, want := md.RecordSize, uint(28); got != want {
		t.Errorf("record size = %d, want %d", got, want)
	}

	for _, a := range geoip.FixtureAnswers {
		t.Run(a.Network.String(), func(t *testing.T) {
			if !a.Network.Contains(a.Sample) {
				t.Fatalf("sample %s is not in %s", a.Sample, a.Network)
			}
			rec, err := db.City(a.Sample)
			if err != nil {
				t.Fatalf("City(%s): %v", a.Sample, err)
			}
			if got, want := rec.Traits.Network, a.Network; got != want {
				t.Errorf("network = %s, want %s", got, want)
			}
			if got, want := rec.Country.ISOCode, a.Country; got != want {
				t.Errorf("country = %q, want %q", got, want)
			}
			if got, want := rec.Country.Names.English, a.CountryName; got != want {
				t.Errorf("country name = %q, want %q", got, want)
			}
			if got, want := len(rec.Subdivisions), len(a.Subdivisions); got != want {
				t.Fatalf("%d subdivisions, want %d", got, want)
			}
			for i, s := range a.Subdivisions {
				if got := rec.Subdivisions[i]; got.ISOCode != s.ISOCode || got.Names.English != s.Name {
					t.Errorf("subdivision %d = %q %q, want %q %q", i, got.ISOCode, got.Names.English, s.ISOCode, s.Name)
				}
			}
			if got, want := rec.City.Names.English, a.City; got != want {
				t.Errorf("city = %q, want %q", got, want)
			}
			if got, want := rec.Location.TimeZone, a.TimeZone; got != want {
				t.Errorf("time zone = %q, want %q", got, want)
			}
			if a.Latitude != 0 || a.Longitude != 0 {
				if !rec.Location.HasCoordinates() {
					t.Fatalf("no coordinates, want %v,%v", a.Latitude, a.Longitude)
				}
				if *rec.Location.Latitude != a.Latitude || *rec.Location.Longitude != a.Longitude {
					t.Errorf("coordinates = %v,%v, want %v,%v", *rec.Location.Latitude, *rec.Location.Longitude, a.Latitude, a.Longitude)
				}
			}
		})
	}

	t.Run("unknown", func(t *testing.T) {
		rec, err := db.City(netip.MustParseAddr("1.1.1.1"))
		if err != nil {
			t.Fatal(err)
		}
		if rec.HasData() {
			t.Errorf("1.1.1.1 has data %+v, want none", rec)
		}
	})
}

func TestWriteFixtureIsReproducible(t *testing.T) {
	var a, b bytes.Buffer
	if err := geoip.WriteFixture(&a); err != nil {
		t.Fatal(err)
	}
	if err := geoip.WriteFixture(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(a.Bytes(), b.Bytes()) {
		t.Fatal("two fixture builds differ")
	}
}

func TestWriteFixtureFileBadPath(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing-dir", "city.mmdb")
	err := geoip.WriteFixtureFile(path)
	if err == nil {
		t.Fatal("WriteFixtureFile into a missing directory: got nil error")
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name %s", err, path)
	}
}

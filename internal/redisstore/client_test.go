package redisstore_test

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/visitord/visitord/internal/redisstore"
)

// parsed is what a test checks of the go-redis options.
type parsed struct {
	Addrs      []string
	DB         int
	Username   string
	Password   string
	MasterName string
	Cluster    bool
	TLS        bool
}

func TestOptions(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
		want parsed
	}{
		{name: "single", raw: "redis://host:6379/2", want: parsed{Addrs: []string{"host:6379"}, DB: 2}},
		{name: "single without db", raw: "redis://host:6379", want: parsed{Addrs: []string{"host:6379"}}},
		{name: "single with credentials", raw: "redis://user:s3cret@host:6380/1", want: parsed{Addrs: []string{"host:6380"}, DB: 1, Username: "user", Password: "s3cret"}},
		{name: "surrounding spaces", raw: "  redis://host:6379/3\n", want: parsed{Addrs: []string{"host:6379"}, DB: 3}},
		{name: "tls", raw: "rediss://user:pw@cache.example:6380/0", want: parsed{Addrs: []string{"cache.example:6380"}, Username: "user", Password: "pw", TLS: true}},
		{name: "sentinel", raw: "redis-sentinel://user:pw@h1:26379,h2:26379/mymaster?db=1",
			want: parsed{Addrs: []string{"h1:26379", "h2:26379"}, DB: 1, Username: "user", Password: "pw", MasterName: "mymaster"}},
		{name: "sentinel without credentials or db", raw: "redis-sentinel://h1:26379/mymaster",
			want: parsed{Addrs: []string{"h1:26379"}, MasterName: "mymaster"}},
		{name: "sentinel with escaped password", raw: "redis-sentinel://:p%40ss@h1:26379/m",
			want: parsed{Addrs: []string{"h1:26379"}, Password: "p@ss", MasterName: "m"}},
		{name: "cluster", raw: "n1:7000,n2:7001,n3:7002", want: parsed{Addrs: []string{"n1:7000", "n2:7001", "n3:7002"}, Cluster: true}},
		{name: "cluster with spaces", raw: "n1:7000, n2:7001 ,n3:7002", want: parsed{Addrs: []string{"n1:7000", "n2:7001", "n3:7002"}, Cluster: true}},
		{name: "cluster of urls", raw: "redis://u:pw@n1:7000,redis://u:pw@n2:7001",
			want: parsed{Addrs: []string{"n1:7000", "n2:7001"}, Username: "u", Password: "pw", Cluster: true}},
		{name: "cluster over tls", raw: "rediss://n1:7000,rediss://n2:7001", want: parsed{Addrs: []string{"n1:7000", "n2:7001"}, Cluster: true, TLS: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := redisstore.Options(tt.raw)
			if err != nil {
				t.Fatalf("Options(%q): %v", tt.raw, err)
			}
			got := parsed{
				Addrs: o.Addrs, DB: o.DB, Username: o.Username, Password: o.Password,
				MasterName: o.MasterName, Cluster: o.IsClusterMode, TLS: o.TLSConfig != nil,
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Options(%q) (-want +got):\n%s", tt.raw, diff)
			}
		})
	}
}

func TestOptionsRejects(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		raw  string
	}{
		{name: "garbage", raw: "not a url"},
		{name: "wrong scheme", raw: "http://host:6379"},
		{name: "db not a number", raw: "redis://host:6379/two"},
		{name: "sentinel without master", raw: "redis-sentinel://h1:26379"},
		{name: "sentinel with empty master", raw: "redis-sentinel://h1:26379/"},
		{name: "sentinel without hosts", raw: "redis-sentinel:///mymaster"},
		{name: "sentinel db not a number", raw: "redis-sentinel://h1:26379/mymaster?db=one"},
		{name: "cluster node with a bad scheme", raw: "n1:7000,http://n2:7001"},
		{name: "cluster of commas only", raw: ",,"},
		{name: "cluster node not host:port", raw: "n1:7000,garbage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := redisstore.Options(tt.raw)
			if err == nil {
				t.Fatalf("Options(%q) = addrs %q (cluster %v), want an error", tt.raw, o.Addrs, o.IsClusterMode)
			}
			if !strings.Contains(err.Error(), "VISITORD_REDIS_URL") {
				t.Errorf("error %q does not name VISITORD_REDIS_URL", err)
			}
		})
	}
}

// A password never appears in the error of a URL that does not parse: errors
// are printed at start.
func TestOptionsErrorHidesPassword(t *testing.T) {
	t.Parallel()
	for _, raw := range []string{
		"redis://user:hunter2pass@host:6379/notadb",
		"redis://user:hunter2pass@host:63x9/0",
		"rediss://user:hunter2pass@host:6379/0?dial_timeout=soon",
		"redis-sentinel://user:hunter2pass@h1:26379/m?db=x",
		"redis://user:hunter2pass@n1:7000,http://n2:7001",
		"redis://user:hunter2pass@n1:7000/notadb,n2:7001",
	} {
		_, err := redisstore.Options(raw)
		if err == nil {
			t.Errorf("Options(%q) succeeded, want an error", raw)
			continue
		}
		if strings.Contains(err.Error(), "hunter2pass") {
			t.Errorf("Options(%q) error %q shows the password", raw, err)
		}
	}
}

func TestConnect(t *testing.T) {
	t.Parallel()
	c, err := redisstore.Connect("redis://127.0.0.1:6379/0")
	if err != nil {
		t.Fatalf("Connect: %v", err)
	}
	_ = c.Close()
	if _, err := redisstore.Connect("nonsense"); err == nil || !strings.Contains(err.Error(), "VISITORD_REDIS_URL") {
		t.Errorf("Connect(nonsense) = %v, want an error naming VISITORD_REDIS_URL", err)
	}
}

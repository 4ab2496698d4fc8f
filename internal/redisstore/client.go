package redisstore

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Options parses VISITORD_REDIS_URL into go-redis UniversalOptions:
//
//	redis://[user:pass@]host:port[/db]          a single Redis
//	rediss://…                                  the same over TLS
//	redis-sentinel://[user:pass@]h1:p1,h2:p2/master[?db=N]   Sentinel: master name as the path
//	host1:port1,host2:port2,…                   a Cluster (redis:// or rediss:// per node allowed)
func Options(raw string) (*redis.UniversalOptions, error) {
	raw = strings.TrimSpace(raw)
	switch {
	case strings.HasPrefix(raw, "redis-sentinel://"):
		return sentinelOptions(raw)
	case strings.Contains(raw, ","):
		return clusterOptions(raw)
	}
	o, err := redis.ParseURL(raw)
	if err != nil {
		return nil, errors.New("VISITORD_REDIS_URL is not a redis://, rediss://, redis-sentinel:// URL or a comma list of cluster nodes")
	}
	return &redis.UniversalOptions{
		Addrs: []string{o.Addr}, Username: o.Username, Password: o.Password, DB: o.DB, TLSConfig: o.TLSConfig,
	}, nil
}

func sentinelOptions(raw string) (*redis.UniversalOptions, error) {
	rest := strings.TrimPrefix(raw, "redis-sentinel://")
	var user, pass string
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		cred := rest[:at]
		rest = rest[at+1:]
		u, p, _ := strings.Cut(cred, ":")
		var err error
		if user, err = url.PathUnescape(u); err != nil {
			return nil, fmt.Errorf("VISITORD_REDIS_URL: bad user name")
		}
		if pass, err = url.PathUnescape(p); err != nil {
			return nil, fmt.Errorf("VISITORD_REDIS_URL: bad password")
		}
	}
	hosts, tail, _ := strings.Cut(rest, "/")
	master, query, _ := strings.Cut(tail, "?")
	if hosts == "" || master == "" {
		return nil, fmt.Errorf("VISITORD_REDIS_URL: a sentinel URL is redis-sentinel://host:port[,host:port]/master-name")
	}
	o := &redis.UniversalOptions{MasterName: master, Username: user, Password: pass}
	for h := range strings.SplitSeq(hosts, ",") {
		o.Addrs = append(o.Addrs, h)
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return nil, fmt.Errorf("VISITORD_REDIS_URL: %w", err)
	}
	if db := q.Get("db"); db != "" {
		if o.DB, err = strconv.Atoi(db); err != nil {
			return nil, fmt.Errorf("VISITORD_REDIS_URL: db %q is not a number", db)
		}
	}
	if q.Get("sentinel_password") != "" {
		o.SentinelPassword = q.Get("sentinel_password")
	}
	return o, nil
}

func clusterOptions(raw string) (*redis.UniversalOptions, error) {
	o := &redis.UniversalOptions{IsClusterMode: true}
	for node := range strings.SplitSeq(raw, ",") {
		node = strings.TrimSpace(node)
		if node == "" {
			continue
		}
		if !strings.Contains(node, "://") {
			if _, _, err := net.SplitHostPort(node); err != nil {
				return nil, fmt.Errorf("VISITORD_REDIS_URL: cluster node %d is not host:port", len(o.Addrs)+1)
			}
			o.Addrs = append(o.Addrs, node)
			continue
		}
		po, err := redis.ParseURL(node)
		if err != nil {
			// go-redis's error holds the whole URL, password included: name the node by its place.
			return nil, fmt.Errorf("VISITORD_REDIS_URL: cluster node %d is not a redis:// or rediss:// URL", len(o.Addrs)+1)
		}
		o.Addrs = append(o.Addrs, po.Addr)
		o.Username, o.Password = po.Username, po.Password
		if po.TLSConfig != nil {
			o.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	if len(o.Addrs) == 0 {
		return nil, errors.New("VISITORD_REDIS_URL: the cluster node list is empty")
	}
	return o, nil
}

// Connect returns a UniversalClient for VISITORD_REDIS_URL.
func Connect(raw string) (redis.UniversalClient, error) {
	o, err := Options(raw)
	if err != nil {
		return nil, err
	}
	// A request's deadline (a page view's VISITORD_TRACK_TIMEOUT) must reach the
	// socket: without this a hung Redis holds a page view for ReadTimeout.
	o.ContextTimeoutEnabled = true
	return redis.NewUniversalClient(o), nil
}

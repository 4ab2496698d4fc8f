package redisstore

import (
	"context"
	"crypto/sha1"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// A library is a Redis Functions library (FUNCTION LOAD, FCALL) of scripts
// that share their libraries (lib_*.lua). Sent by EVALSHA, a script runs its
// libraries' code on every call: a table and a closure for each helper,
// created and collected again, a sixth of the instructions redis-server
// spends on a new visitor's page view (callgrind). Loaded as functions, the
// libraries run once, at load, and a call runs the script's body alone.
//
// The library's name and its functions' names end with a hash of its source,
// so that pods of two versions (a rolling update) each call their own; an
// older library stays loaded until an operator deletes it (FUNCTION DELETE).
// A server without functions (Redis before 7, miniredis), or an ACL user
// without the FUNCTION and FCALL commands, runs the scripts by EVALSHA.
type library struct {
	name, source string
}

// pageViewLibrary holds the page-view scripts: the path that runs on every
// page view of every site.
var pageViewLibrary = newLibrary("visitord", hitScript, hitNewScript)

// libraries lists every library, for LoadScripts.
var libraries = []*library{pageViewLibrary}

// newLibrary makes the library of scripts, which must share their libraries,
// and names each script's function after its file.
func newLibrary(prefix string, scripts ...*script) *library {
	var body strings.Builder
	for _, name := range scripts[0].libs {
		body.Write(mustRead(name))
		body.WriteByte('\n')
	}
	for _, sc := range scripts {
		if !slices.Equal(sc.libs, scripts[0].libs) {
			panic("redisstore: the scripts of a library share their libraries: " + sc.file)
		}
		// The function's name ends with the hash of the source, which it is
		// part of: "\x00" (in no file) stands for the hash until then.
		fmt.Fprintf(&body, "redis.register_function('%s\x00', function(KEYS, ARGV)\n%s\nend)\n",
			strings.TrimSuffix(sc.file, ".lua"), mustRead(sc.file))
	}
	sum := sha1.Sum([]byte(body.String()))
	h := "_" + hex.EncodeToString(sum[:6])
	lib := &library{name: prefix + h}
	lib.source = "#!lua name=" + lib.name + "\n" + strings.ReplaceAll(body.String(), "\x00", h)
	for _, sc := range scripts {
		sc.lib, sc.fn = lib, strings.TrimSuffix(sc.file, ".lua")+h
	}
	return lib
}

// The server's Functions support, as the Store last found it (Store.functions).
const (
	functionsUnknown int32 = iota // not loaded yet: FCALL is tried
	functionsLoaded
	functionsMissing // the server has no FUNCTION command: EVALSHA only
)

// loadLibrary loads lib on every node (on each master of a Cluster: replicas
// take it from their master). A library loaded already is no error; nor is a
// server without functions (or an ACL user who may not load them), which
// from then on runs the scripts by EVALSHA.
func (s *Store) loadLibrary(ctx context.Context, lib *library) error {
	err := s.onEveryNode(ctx, func(ctx context.Context, c redis.UniversalClient) error {
		err := c.FunctionLoad(ctx, lib.source).Err()
		if redis.HasErrorPrefix(err, "Library '"+lib.name+"' already exists") {
			return nil
		}
		return err
	})
	switch {
	case err == nil:
		s.functions.Store(functionsLoaded)
		return nil
	case noFunctions(err):
		s.functions.Store(functionsMissing)
		return nil
	}
	return translate(err)
}

// noFunctions reports whether err is a server's answer to a function command
// it does not have (FUNCTION and FCALL before Redis 7, and in miniredis) or
// that the ACL user may not run (NOPERM): the scripts then run by EVALSHA.
func noFunctions(err error) bool {
	return redis.HasErrorPrefix(err, "unknown command") || redis.HasErrorPrefix(err, "NOPERM")
}

// functionGone reports whether err says the node has no such function: a
// restart without persistence, a node added, FUNCTION FLUSH.
func functionGone(err error) bool {
	return redis.HasErrorPrefix(err, "Function not found")
}

package redisstore

import (
	"embed"
	"strings"

	"github.com/redis/go-redis/v9"
)

// luaFiles holds every script (one per file) and the libraries they share
// (lib_*.lua). Each file opens with a header listing its KEYS, ARGV and reply.
//
//go:embed *.lua
var luaFiles embed.FS

// script is a declared Lua script: its file's source after its libraries'.
type script struct {
	file string
	*redis.Script
}

// declared lists every script declare made, in order: LoadScripts loads them
// all, so no script can be declared and not preloaded.
var declared []*script

// declare returns the script of file, the libraries libs put before it, and
// registers it for LoadScripts. A missing file is a build mistake (the files
// are embedded), so it panics at start.
func declare(file string, libs ...string) *script {
	var b strings.Builder
	for _, name := range append(libs, file) {
		src, err := luaFiles.ReadFile(name)
		if err != nil {
			panic("redisstore: " + err.Error())
		}
		b.Write(src)
		b.WriteByte('\n')
	}
	s := &script{file: file, Script: redis.NewScript(b.String())}
	declared = append(declared, s)
	return s
}

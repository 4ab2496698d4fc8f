package redisstore

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/devredis"
	"github.com/visitord/visitord/internal/visitor"
)

// pageViews records a new visitor's first page view (hit_new.lua) and a
// second one within the session (hit.lua); then, when check is set, reads
// them back through VisitorData: one session of two pages.
func (e stEnv) pageViews(tb testing.TB, check bool) {
	tb.Helper()
	if out := e.record(tb, stHit{url: "/a", sid: "s1", first: true}); out != visitor.OutcomeNewSession {
		tb.Fatalf("first page view = %v, want a new session", out)
	}
	if out := e.record(tb, stHit{at: time.Minute, url: "/b"}); out != visitor.OutcomeTracked {
		tb.Fatalf("second page view = %v, want tracked", out)
	}
	if check {
		e.twoPages(tb)
	}
}

// twoPages checks that VisitorData finds one session of two pages.
func (e stEnv) twoPages(tb testing.TB) {
	tb.Helper()
	d, err := e.s.VisitorData(e.ctx, e.site, stKeyA)
	if err != nil {
		tb.Fatal(err)
	}
	if len(d.Sessions) != 1 || len(d.Sessions[0].Pages) != 2 {
		tb.Fatalf("VisitorData sessions %+v, want one of two pages", d.Sessions)
	}
}

// calls is INFO commandstats' count of the calls of cmd since the last
// CONFIG RESETSTAT.
func calls(tb testing.TB, e stEnv, cmd string) int64 {
	tb.Helper()
	info, err := e.c.Info(e.ctx, "commandstats").Result()
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(info, "\r\n") {
		if v, ok := strings.CutPrefix(line, "cmdstat_"+cmd+":calls="); ok {
			n, err := strconv.ParseInt(v[:strings.IndexByte(v, ',')], 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return n
		}
	}
	return 0
}

// libraryFunctions lists the functions of the loaded library named name.
func libraryFunctions(tb testing.TB, e stEnv, name string) []string {
	tb.Helper()
	libs, err := e.c.FunctionList(e.ctx, redis.FunctionListQuery{LibraryNamePattern: name}).Result()
	if err != nil {
		tb.Fatal(err)
	}
	var fns []string
	for _, l := range libs {
		if l.Name != name {
			continue
		}
		for _, f := range l.Functions {
			fns = append(fns, f.Name)
		}
	}
	slices.Sort(fns)
	return fns
}

// The page-view scripts run as the functions of one library: LoadScripts
// loads it, and a page view is an FCALL, never an EVALSHA. The library and
// its functions are named with its source's hash.
func TestPageViewScriptsRunAsFunctions(t *testing.T) {
	t.Parallel()
	e := stStart(t).aggregating()
	if err := e.s.LoadScripts(e.ctx); err != nil {
		t.Fatal(err)
	}
	lib := pageViewLibrary
	h := strings.TrimPrefix(lib.name, "visitord_")
	if len(h) != 12 || hitScript.fn != "hit_"+h || hitNewScript.fn != "hit_new_"+h {
		t.Fatalf("library %q, functions %v and %v: want names ending with the same 12 hex digits", lib.name, hitScript.fn, hitNewScript.fn)
	}
	if got, want := libraryFunctions(t, e, lib.name), []string{"hit_" + h, "hit_new_" + h}; !slices.Equal(got, want) {
		t.Fatalf("library %s loaded with functions %v, want %v", lib.name, got, want)
	}
	if err := e.c.ConfigResetStat(e.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	e.pageViews(t, false)
	if f, sha, eval := calls(t, e, "fcall"), calls(t, e, "evalsha"), calls(t, e, "eval"); f != 2 || sha != 0 || eval != 0 {
		t.Errorf("two page views ran %d FCALL, %d EVALSHA, %d EVAL; want 2, 0, 0", f, sha, eval)
	}
	e.twoPages(t)
	if got := e.s.functions.Load(); got != functionsLoaded {
		t.Errorf("functions support %d, want loaded (%d)", got, functionsLoaded)
	}
}

// A library the server lost (a restart without persistence, a node added,
// FUNCTION FLUSH) is loaded again by the first page view that finds it gone,
// and that page view is recorded; the library of another version, loaded
// beside it during a rolling update, is left as it is.
func TestLostLibraryLoadedAgain(t *testing.T) {
	t.Parallel()
	e := stStart(t).aggregating()
	if err := e.s.LoadScripts(e.ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.c.FunctionFlush(e.ctx).Err(); err != nil {
		t.Fatal(err)
	}
	const other = "visitord_000000000000"
	src := "#!lua name=" + other + "\nredis.register_function('hit_000000000000', function(KEYS, ARGV) return 'ok' end)"
	if err := e.c.FunctionLoad(e.ctx, src).Err(); err != nil {
		t.Fatal(err)
	}
	e.pageViews(t, true)
	if got := libraryFunctions(t, e, pageViewLibrary.name); len(got) != 2 {
		t.Errorf("library %s holds %v after the page views, want it loaded again", pageViewLibrary.name, got)
	}
	if got := libraryFunctions(t, e, other); !slices.Equal(got, []string{"hit_000000000000"}) {
		t.Errorf("the other version's library holds %v, want it untouched", got)
	}
}

// A server without functions (miniredis, which `make run` uses; Redis before
// 7), and an ACL user who may not load or call them, run the page-view scripts
// by EVALSHA, whether LoadScripts found that out or the first page view did.
func TestPageViewsWithoutFunctions(t *testing.T) {
	t.Parallel()
	for _, srv := range []struct {
		name  string
		start func(t *testing.T) stEnv
	}{
		{name: "miniredis", start: func(t *testing.T) stEnv {
			m, err := devredis.Start()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(m.Close)
			c := redis.NewClient(&redis.Options{Addr: m.Addr()})
			t.Cleanup(func() { _ = c.Close() })
			return stOn(t, c)
		}},
		{name: "ACL user without FUNCTION and FCALL", start: func(t *testing.T) stEnv {
			e := stStart(t)
			if err := e.c.Do(e.ctx, "ACL", "SETUSER", "scripts", "on", ">pw", "~*", "&*", "+@all", "-function", "-fcall").Err(); err != nil {
				t.Fatal(err)
			}
			opts := *e.c.Options()
			opts.Username, opts.Password = "scripts", "pw"
			c := redis.NewClient(&opts)
			t.Cleanup(func() { _ = c.Close() })
			e.s = New(c, WithSites(e.site.ID))
			return e
		}},
	} {
		for _, load := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s, LoadScripts %v", srv.name, load), func(t *testing.T) {
				t.Parallel()
				e := srv.start(t)
				if load {
					if err := e.s.LoadScripts(e.ctx); err != nil {
						t.Fatal(err)
					}
				}
				e.pageViews(t, true)
				if got := e.s.functions.Load(); got != functionsMissing {
					t.Errorf("functions support %d, want missing (%d)", got, functionsMissing)
				}
			})
		}
	}
}

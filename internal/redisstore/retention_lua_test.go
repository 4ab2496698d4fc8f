package redisstore

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/redis/go-redis/v9"

	"github.com/visitord/visitord/internal/visitor"
)

const day = 24 * time.Hour

// subject.lua scores a subject by its data's expiry (only ever raising it),
// removes it when given no expiry, trims the lapsed and expires the index
// with its highest score.
func TestSubjectScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	key := subjectsKey("shop")
	for _, tc := range []struct {
		name    string
		member  string
		until   time.Time
		now     time.Time
		want    map[string]int64
		wantExp time.Time
	}{
		{name: "enter", member: "a", until: luaT0.Add(time.Hour), now: luaT0, want: map[string]int64{"a": ms(luaT0.Add(time.Hour))}, wantExp: luaT0.Add(time.Hour)},
		{name: "an earlier expiry does not lower", member: "a", until: luaT0.Add(time.Minute), now: luaT0,
			want: map[string]int64{"a": ms(luaT0.Add(time.Hour))}, wantExp: luaT0.Add(time.Hour)},
		{name: "a later one raises", member: "a", until: luaT0.Add(2 * time.Hour), now: luaT0,
			want: map[string]int64{"a": ms(luaT0.Add(2 * time.Hour))}, wantExp: luaT0.Add(2 * time.Hour)},
		{name: "another", member: "b", until: luaT0.Add(3 * time.Hour), now: luaT0,
			want: map[string]int64{"a": ms(luaT0.Add(2 * time.Hour)), "b": ms(luaT0.Add(3 * time.Hour))}, wantExp: luaT0.Add(3 * time.Hour)},
		{name: "remove", member: "b", now: luaT0, want: map[string]int64{"a": ms(luaT0.Add(2 * time.Hour))}, wantExp: luaT0.Add(2 * time.Hour)},
		{name: "lapsed trimmed", member: "c", until: luaT0.Add(4 * time.Hour), now: luaT0.Add(150 * time.Minute),
			want: map[string]int64{"c": ms(luaT0.Add(4 * time.Hour))}, wantExp: luaT0.Add(4 * time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.run(t, subjectArgs{key: key, member: tc.member, until: tc.until, now: tc.now}.call())
			if got := zscores(t, e, key); !cmp.Equal(got, tc.want) {
				t.Errorf("index %v, want %v", got, tc.want)
			}
			if got := e.pexpireAt(t, key); !got.Equal(tc.wantExp) {
				t.Errorf("expires %v, want %v", got, tc.wantExp)
			}
		})
	}
}

// shortWindows are windows of a retention that shrank: sessions 1 day,
// profiles 2, chats 3, consents 4.
var shortWindows = windows{sessions: day, profiles: 2 * day, chats: 3 * day, consents: 4 * day}

// reexpire_visitor.lua brings a visitor's expiries forward to its write times
// plus the windows given, deletes what is past, and answers what is left, the
// visitor id, its chats and blind-index keys.
func TestReexpireVisitorScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	now := luaT0
	for _, tc := range []struct {
		name     string
		lastHit  time.Time
		chat     time.Time // zero: no chat
		want     reexpireVisitorReply
		wantProf time.Time // the profile's expiry after; zero: gone
	}{
		{name: "all past", lastHit: now.Add(-10 * day), want: reexpireVisitorReply{visitorID: "vid-vk-all past"}},
		{name: "kept with an earlier expiry", lastHit: now.Add(-time.Hour),
			want: reexpireVisitorReply{left: true, visitorID: "vid-vk-kept with an earlier expiry"}, wantProf: now.Add(-time.Hour + 2*day)},
		{name: "chats", lastHit: now.Add(-time.Hour), chat: now.Add(-time.Hour),
			want: reexpireVisitorReply{left: true, visitorID: "vid-vk-chats", chatsUntil: ms(now.Add(-time.Hour + 3*day)),
				indexes: []string{emailKey("shop", "h1")}, chatIDs: []string{"c1"}}, wantProf: now.Add(-time.Hour + 2*day)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			vkey := "vk-" + tc.name
			k := keysOf("shop", vkey)
			e.hit(t, hitOf(vkey, visitor.HitPageview, tc.lastHit))
			if !tc.chat.IsZero() {
				e.run(t, chatIndexArgs{keys: k, chatID: "c1", start: tc.chat, indexExpireAt: tc.chat.Add(90 * day),
					now: tc.chat, blindIndex: emailKey("shop", "h1")}.call())
			}
			c := reexpireVisitorArgs{keys: k, now: now, w: shortWindows}.call()
			e.run(t, c)
			got, err := decodeReexpireVisitor(c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(reexpireVisitorReply{}), cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if got := e.pexpireAt(t, k.profile); !got.Equal(tc.wantProf) {
				t.Errorf("profile expires %v, want %v", got, tc.wantProf)
			}
		})
	}
}

// reexpire_chat.lua expires a chat at its start plus the chats window (its
// delivery with it), deletes one past it, and with a records key re-expires a
// chat's own consent records.
func TestReexpireChatScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	now := luaT0
	for _, tc := range []struct {
		name    string
		start   time.Time // zero: no chat
		records bool
		want    reexpireChatReply
	}{
		{name: "kept", start: now.Add(-day), want: reexpireChatReply{state: "kept", visitorID: "vid", blindIndex: "e:{shop:h1}",
			until: ms(now.Add(2 * day)), left: true}},
		{name: "past", start: now.Add(-4 * day), want: reexpireChatReply{state: "deleted", visitorID: "vid", blindIndex: "e:{shop:h1}"}},
		{name: "gone", want: reexpireChatReply{state: "gone"}},
		{name: "past with its records left", start: now.Add(-4 * day), records: true,
			want: reexpireChatReply{state: "deleted", visitorID: "vid", blindIndex: "e:{shop:h1}", left: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ck := chatKey("shop", tc.name)
			if !tc.start.IsZero() {
				e.c.HSet(e.ctx, ck, "t", ms(tc.start), "vid", "vid", "ei", "e:{shop:h1}", "wd", ck+":w:d1")
				e.c.HSet(e.ctx, ck+":w:d1", "i", "d1")
			}
			a := reexpireChatArgs{chat: ck, now: now, w: shortWindows}
			if tc.records {
				a.records = ck + ":r"
				rec := `{"time":"` + now.Add(-day).Format(time.RFC3339Nano) + `","policy_version":"v1","text_sha256":"x","method":"chat"}`
				e.c.ZAdd(e.ctx, a.records, redis.Z{Member: rec, Score: float64(ms(now.Add(400 * day)))})
			}
			c := a.call()
			e.run(t, c)
			got, err := decodeReexpireChat(c)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(reexpireChatReply{})); diff != "" {
				t.Errorf("reply (-want +got):\n%s", diff)
			}
			if tc.want.state == "kept" && (ms(e.pexpireAt(t, ck)) != tc.want.until || ms(e.pexpireAt(t, ck+":w:d1")) != tc.want.until) {
				t.Errorf("chat and delivery expire %v and %v, want %d", e.pexpireAt(t, ck), e.pexpireAt(t, ck+":w:d1"), tc.want.until)
			}
			if tc.want.state == "deleted" && e.c.Exists(e.ctx, ck, ck+":w:d1").Val() != 0 {
				t.Errorf("a past chat or its delivery is left")
			}
			if tc.records && ms(e.pexpireAt(t, a.records)) != ms(now.Add(3*day)) {
				t.Errorf("records expire %v, want their time + consents window", e.pexpireAt(t, a.records))
			}
		})
	}
}

// reexpire_proof.lua re-scores consent proof to its time plus the consents
// window and answers whether any is left.
func TestReexpireProofScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	now := luaT0
	for _, tc := range []struct {
		name     string
		recorded time.Time
		want     bool
	}{
		{name: "kept", recorded: now.Add(-day), want: true},
		{name: "past", recorded: now.Add(-5 * day)},
		{name: "none"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := proofKey("shop", tc.name)
			if !tc.recorded.IsZero() {
				rec := `{"subject":"h","time":"` + tc.recorded.Format(time.RFC3339Nano) + `","policy_version":"v1","text_sha256":"x","method":"banner"}`
				e.c.ZAdd(e.ctx, key, redis.Z{Member: rec, Score: float64(ms(now.Add(400 * day)))})
			}
			c := reexpireProofArgs{key: key, now: now, consents: shortWindows.consents}.call()
			e.run(t, c)
			got, err := decodeLeft(c)
			if err != nil || got != tc.want {
				t.Fatalf("left %v, %v; want %v", got, err, tc.want)
			}
			if tc.want && !e.pexpireAt(t, key).Equal(tc.recorded.Add(4*day)) {
				t.Errorf("expires %v, want %v", e.pexpireAt(t, key), tc.recorded.Add(4*day))
			}
		})
	}
}

// reexpire_index.lua lowers subjects' scores in a blind index (never raises
// them), drops those past and expires the index with the highest.
func TestReexpireIndexScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	now := luaT0
	for _, tc := range []struct {
		name    string
		updates []indexUpdate
		want    map[string]int64
	}{
		{name: "lowered", updates: []indexUpdate{{member: "v:1", until: ms(now.Add(day))}},
			want: map[string]int64{"v:1": ms(now.Add(day)), "c:2": ms(now.Add(90 * day))}},
		{name: "never raised", updates: []indexUpdate{{member: "v:1", until: ms(now.Add(200 * day))}},
			want: map[string]int64{"v:1": ms(now.Add(90 * day)), "c:2": ms(now.Add(90 * day))}},
		{name: "no chat left", updates: []indexUpdate{{member: "c:2", until: 0}}, want: map[string]int64{"v:1": ms(now.Add(90 * day))}},
		{name: "unknown member not added", updates: []indexUpdate{{member: "v:9", until: ms(now.Add(day))}},
			want: map[string]int64{"v:1": ms(now.Add(90 * day)), "c:2": ms(now.Add(90 * day))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := emailKey("shop", tc.name)
			e.c.ZAdd(e.ctx, key, redis.Z{Member: "v:1", Score: float64(ms(now.Add(90 * day)))}, redis.Z{Member: "c:2", Score: float64(ms(now.Add(90 * day)))})
			e.run(t, reexpireIndexArgs{key: key, now: now, updates: tc.updates}.call())
			got := zscores(t, e, key)
			if !cmp.Equal(got, tc.want) {
				t.Errorf("index %v, want %v", got, tc.want)
			}
			var top int64
			for _, s := range tc.want {
				top = max(top, s)
			}
			if at := e.pexpireAt(t, key); ms(at) > top {
				t.Errorf("expires %v, after its highest score %d", at, top)
			}
		})
	}
}

// reexpire_start.lua and reexpire_end.lua: a batch finds nothing without a
// flag, is refused while another owner holds the job, walks the subject
// index from the checkpoint, and at the end clears the flag only when the
// pass settled and applied the override's windows.
func TestReexpireStartAndEndScripts(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	r := visitor.Retention{Sessions: 1, Profiles: 2, Chats: 3, Consents: 4, Audit: 5}
	start := func(site, owner string) reexpireStartReply {
		c := reexpireStartArgs{site: site, owner: owner, lease: time.Minute, checkpointTTL: 10 * time.Minute, now: luaT0, batch: 2,
			signature: retentionSignature(r), auditWindow: days(r.Audit)}.call()
		e.run(t, c)
		res, err := decodeReexpireStart(c)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	end := func(a reexpireEndArgs) reexpireEnd {
		a.lease, a.checkpointTTL = time.Minute, 10*time.Minute
		c := a.call()
		e.run(t, c)
		res, err := decodeReexpireEnd(c)
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	flag := func(site string, at time.Time) {
		if err := e.c.Set(e.ctx, reexpireKey(site), ms(at), 0).Err(); err != nil {
			t.Fatal(err)
		}
	}
	subjects := func(site string, members ...string) {
		for i, m := range members {
			e.c.ZAdd(e.ctx, subjectsKey(site), redis.Z{Member: m, Score: float64(ms(luaT0.Add(time.Duration(i+1) * day)))})
		}
	}
	for _, tc := range []struct {
		name string
		run  func(t *testing.T, site string)
	}{
		{name: "no flag: nothing to do", run: func(t *testing.T, site string) {
			if got := start(site, "a"); !got.none {
				t.Errorf("start %+v, want none", got)
			}
		}},
		{name: "held by another owner", run: func(t *testing.T, site string) {
			flag(site, luaT0.Add(-time.Hour))
			start(site, "a")
			if got := start(site, "b"); !got.held {
				t.Errorf("start %+v, want held", got)
			}
			if got := end(reexpireEndArgs{site: site, owner: "b"}); got != endHeld {
				t.Errorf("end %d, want held", got)
			}
		}},
		{name: "walk from the checkpoint and clear", run: func(t *testing.T, site string) {
			flag(site, time.Now().Add(-time.Hour))
			subjects(site, "s1", "s2", "s3")
			got := start(site, "a")
			if !cmp.Equal(got.subjects, []string{"s1", "s2"}) {
				t.Fatalf("first batch %v, want s1 s2", got.subjects)
			}
			if res := end(reexpireEndArgs{site: site, owner: "a", lastScore: got.scores[1], lastMember: "s2", settle: time.Second,
				emptied: []string{"s1"}, emptiedScores: got.scores[:1]}); res != endMoved {
				t.Fatalf("end of first batch %d, want moved", res)
			}
			got = start(site, "a")
			if !cmp.Equal(got.subjects, []string{"s3"}) {
				t.Fatalf("second batch %v, want s3", got.subjects)
			}
			if res := end(reexpireEndArgs{site: site, owner: "a", end: true, lastScore: got.scores[0], lastMember: "s3", settle: time.Second}); res != endCleared {
				t.Fatalf("end of walk %d, want cleared", res)
			}
			if e.c.Exists(e.ctx, reexpireKey(site)).Val() != 0 || e.c.ZScore(e.ctx, subjectsKey(site), "s1").Err() != redis.Nil {
				t.Errorf("flag left or emptied subject s1 still indexed")
			}
		}},
		{name: "a pass that began unsettled keeps the flag", run: func(t *testing.T, site string) {
			flag(site, time.Now())
			start(site, "a")
			if res := end(reexpireEndArgs{site: site, owner: "a", end: true, settle: time.Hour}); res != endKept {
				t.Fatalf("end %d, want kept", res)
			}
		}},
		{name: "other windows than the override's keep the flag", run: func(t *testing.T, site string) {
			flag(site, time.Now().Add(-time.Hour))
			e.c.HSet(e.ctx, retentionKey(site), "sessions", 9, "profiles", 9, "chats", 9, "consents", 9, "audit", 9)
			start(site, "a")
			if res := end(reexpireEndArgs{site: site, owner: "a", end: true, settle: time.Second}); res != endKept {
				t.Fatalf("end %d, want kept", res)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.run(t, "site-"+tc.name) })
	}
}

// pending.lua flags a site with stored subjects whose schema is older than the
// version given, once, and answers whether the flag is set; a site without data
// is recorded at the version given, so that its first subjects start no pass.
func TestPendingScript(t *testing.T) {
	t.Parallel()
	e := luaStart(t)
	for _, tc := range []struct {
		name     string
		schema   string // stored schema version, "" for none
		subjects bool
		flagged  bool
		want     bool
	}{
		{name: "no data"},
		{name: "data of an older layout", schema: "1", subjects: true, want: true},
		{name: "data without a version", subjects: true, want: true},
		{name: "data of the current layout", schema: schemaVersion, subjects: true},
		{name: "a window shrank", schema: schemaVersion, subjects: true, flagged: true, want: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			site := "site-" + tc.name
			if tc.schema != "" {
				e.c.Set(e.ctx, schemaKey(site), tc.schema, 0)
			}
			if tc.subjects {
				e.c.ZAdd(e.ctx, subjectsKey(site), redis.Z{Member: "s", Score: float64(ms(luaT0))})
			}
			if tc.flagged {
				e.c.Set(e.ctx, reexpireKey(site), ms(luaT0), 0)
			}
			c := pendingArgs{site: site, version: schemaVersion, now: luaT0}.call()
			e.run(t, c)
			if got, err := decodeLeft(c); err != nil || got != tc.want {
				t.Fatalf("pending %v, %v; want %v", got, err, tc.want)
			}
			if e.c.Get(e.ctx, schemaKey(site)).Val() != schemaVersion {
				t.Errorf("schema version not brought to %s", schemaVersion)
			}
			if tc.subjects {
				return
			}
			// The site's first subjects came after the check: no pass.
			e.c.ZAdd(e.ctx, subjectsKey(site), redis.Z{Member: "s", Score: float64(ms(luaT0))})
			c = pendingArgs{site: site, version: schemaVersion, now: luaT0}.call()
			e.run(t, c)
			if got, err := decodeLeft(c); err != nil || got {
				t.Errorf("pending after the first subjects of a site checked without data: %v, %v; want false", got, err)
			}
		})
	}
}

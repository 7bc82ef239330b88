package gearstest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/require"
)

func TestClusterSlotMath(t *testing.T) {
	for key, want := range map[string]int{"foo": 12182, "bar": 5061, "{user1000}.following": 3443, "{}x": keySlot([]byte("{}x")), "a{b}c": keySlot([]byte("b"))} {
		if got := keySlot([]byte(key)); got != want {
			t.Errorf("keySlot(%q) = %d, want %d", key, got, want)
		}
	}
	if got := keySlot([]byte("{}x")); got != int(crc16([]byte("{}x"))&16383) {
		t.Errorf("an empty tag hashes the whole key: %d", got)
	}
	for n, want := range map[int][][2]int{
		1: {{0, 16383}},
		3: {{0, 5460}, {5461, 10922}, {10923, 16383}},
		5: {{0, 3276}, {3277, 6553}, {6554, 9829}, {9830, 13106}, {13107, 16383}},
	} {
		got := splitSlots(n)
		if len(got) != len(want) {
			t.Fatalf("splitSlots(%d) = %v", n, got)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Errorf("splitSlots(%d) = %v, want %v", n, got, want)
				break
			}
		}
	}
	for slot := 0; slot < clusterSlots; slot += 97 {
		if tag := slotTag(slot); keySlot([]byte(tag)) != slot || len(tag) > 3 {
			t.Errorf("slotTag(%d) = %q, whose slot is %d", slot, tag, keySlot([]byte(tag)))
		}
	}
}

// clusterClients returns a RESP2 client on every shard of cl, in slot order.
func clusterClients(t *testing.T, cl *Cluster) []*redis.Client {
	var out []*redis.Client
	for _, a := range cl.Addrs() {
		out = append(out, newRDB(t, a, 2))
	}
	return out
}

// replyTexts describes the elements of an array reply: "error <text>" for an error element, else
// "value <v>".
func replyTexts(v any) []string {
	var out []string
	arr, _ := v.([]any)
	for _, e := range arr {
		if err, ok := e.(redis.Error); ok {
			out = append(out, "error "+err.Error())
		} else {
			out = append(out, fmt.Sprintf("value %v", e))
		}
	}
	return out
}

// The other shards replay a registering script in replica mode: its top level's execute() does
// nothing there and its log() is silent, while the registrations and their onRegistered callbacks are
// applied on every shard. A shard whose worker restarts gets the session back in replica mode.
func TestClusterReplicaModeEmul(t *testing.T) {
	logs := &syncBuffer{}
	cl := RunCluster(t, 3, WithLogger(logs))
	ctx := ctxT(t)
	rdbs := clusterClients(t, cl)
	tags := make([]string, 3)
	for i, s := range cl.Shards() {
		tags[i] = s.shard.hashtag
	}
	script := "execute('INCR', 'runs{%s}' % hashtag())\nlog('top level of the replica test')\n" +
		"GB('CommandReader').map(lambda x: hashtag()).register(trigger='where', mode='sync', " +
		"onRegistered=lambda: execute('INCR', 'onreg{%s}' % hashtag()))\nGB().run()\n"
	require.Equal(t, "OK", rdbs[1].Do(ctx, "RG.PYEXECUTE", script, "ID", "rs").Val())
	for i, rdb := range rdbs {
		runs := rdb.Get(ctx, "runs{"+tags[i]+"}").Val()
		if i == 1 {
			require.Equal(t, "1", runs, "the top level ran on the shard that got the script")
		} else {
			require.Equal(t, "", runs, "the top level's execute() ran on shard %d", i)
		}
		require.Equal(t, "1", rdb.Get(ctx, "onreg{"+tags[i]+"}").Val(), "onRegistered on shard %d", i)
		require.Equal(t, []any{tags[i]}, rdb.Do(ctx, "RG.TRIGGER", "where").Val(), "shard %d", i)
		if i != 1 {
			require.Empty(t, rdb.Do(ctx, "RG.DUMPEXECUTIONS").Val(), "no run() execution on shard %d", i)
		}
	}
	require.Equal(t, 1, strings.Count(logs.String(), "top level of the replica test"), "log() on one shard only:\n%s", logs.String())

	// A replica shard's worker restarts: the registration comes back, the top level still does not run.
	regs := rdbs[2].Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)
	require.Len(t, regs, 1)
	require.NoError(t, cl.Shards()[2].KillWorker())
	// A command sent while the old worker is dying gets an error; the restored one answers.
	require.Eventually(t, func() bool {
		v, err := rdbs[2].Do(ctx, "RG.TRIGGER", "where").Result()
		return err == nil && fmt.Sprint(v) == fmt.Sprint([]any{tags[2]})
	}, 2*time.Minute, 20*time.Millisecond, "the worker never came back")
	require.Equal(t, regs[0].([]any)[1], rdbs[2].Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)[0].([]any)[1])
	require.Equal(t, "", rdbs[2].Get(ctx, "runs{"+tags[2]+"}").Val())
	require.Equal(t, 1, strings.Count(logs.String(), "top level of the replica test"))

	// The origin's worker restarts: its session comes back as on a stand-alone server, whose restore
	// runs the script's top level again (a documented difference).
	require.NoError(t, cl.Shards()[1].KillWorker())
	require.Eventually(t, func() bool {
		v, err := rdbs[1].Do(ctx, "RG.TRIGGER", "where").Result()
		return err == nil && fmt.Sprint(v) == fmt.Sprint([]any{tags[1]})
	}, 2*time.Minute, 20*time.Millisecond, "the worker never came back")
	require.Equal(t, regs[0].([]any)[1], rdbs[1].Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)[0].([]any)[1])
	require.Equal(t, "2", rdbs[1].Get(ctx, "runs{"+tags[1]+"}").Val())
	require.Equal(t, 2, strings.Count(logs.String(), "top level of the replica test"))
}

// A shard that cannot apply a registration answers "-ERR shard-<id>: <reason>" in RG.PYEXECUTE's array
// reply; the shards that could keep it. A replay that registers less than the origin did is refused.
func TestClusterShardErrorsEmul(t *testing.T) {
	cl := RunCluster(t, 3)
	ctx := ctxT(t)
	rdbs := clusterClients(t, cl)
	shards := cl.Shards()
	require.Equal(t, "OK", rdbs[0].Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').map(lambda x: 'a').register(trigger='T', mode='sync')", "ID", "a").Val())
	id := rdbs[0].Do(ctx, "RG.DUMPREGISTRATIONS").Val().([]any)[0].([]any)[1].(string)
	require.Equal(t, shards[0].shard.id+"-1", id)
	// Shard 0 alone loses it (as if an earlier apply failed there).
	shards[0].lock.acquire("test")
	require.True(t, shards[0].unregisterLocal(id, false))
	shards[0].lock.release("test")

	v, err := rdbs[0].Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').map(lambda x: 'b').register(trigger='T', mode='sync')", "ID", "b").Result()
	require.NoError(t, err)
	require.Equal(t, []string{
		"error -ERR shard-" + shards[1].shard.id + ": trigger already registered",
		"error -ERR shard-" + shards[2].shard.id + ": trigger already registered",
	}, replyTexts(v))
	require.Equal(t, []any{"b"}, rdbs[0].Do(ctx, "RG.TRIGGER", "T").Val())
	for i := 1; i < 3; i++ {
		require.Equal(t, []any{"a"}, rdbs[i].Do(ctx, "RG.TRIGGER", "T").Val(), "shard %d", i)
		require.Equal(t, []any{"Session b does not exists"}, rdbs[i].Do(ctx, "RG.PYDUMPSESSIONS", "SESSIONS", "b").Val())
	}

	// The replay's execute() returns None: a registration made only when it returned something is
	// missing on the other shards, which refuse to apply a part of the session.
	v, err = rdbs[2].Do(ctx, "RG.PYEXECUTE", "if execute('PING'):\n    GB('CommandReader').register(trigger='U')", "ID", "c").Result()
	require.NoError(t, err)
	const why = ": the script registered 0 registrations here, fewer than on the shard that ran it " +
		"(gearstest replays it on every shard, where execute() returns None at its top level)"
	require.Equal(t, []string{
		"error -ERR shard-" + shards[0].shard.id + why,
		"error -ERR shard-" + shards[1].shard.id + why,
	}, replyTexts(v))
	for i := 0; i < 2; i++ {
		require.EqualError(t, rdbs[i].Do(ctx, "RG.TRIGGER", "U").Err(), "ERR subcommand not found", "shard %d", i)
	}
	// An async registration's trigger runs on every shard (the plan travels with the execution, as
	// the real server serializes it), registered there or not.
	require.Equal(t, []any{"['U']", "['U']", "['U']"}, rdbs[2].Do(ctx, "RG.TRIGGER", "U").Val())
}

// K1 is cluster-wide: while an RG.PYEXECUTE of session s runs on one shard, another of s sent to
// another shard is refused (on a real cluster the two applies meet on every shard: the crash).
func TestClusterK1AcrossShardsEmul(t *testing.T) {
	cl := RunCluster(t, 3, AllowHazards())
	ctx := ctxT(t)
	shards := cl.Shards()
	rdb1 := newRDB(t, shards[1].Addr(), 2)
	require.NoError(t, rdb1.Ping(ctx).Err())
	gate, first := startHeld(t, ctx, shards[0], "t1", "ID", "s1")
	const k1 = "HAZARD concurrent RG.PYEXECUTE of session 's1': this crashes RedisGears 1.2.13 (SIGSEGV)"
	require.EqualError(t, rdb1.Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').register(trigger='t2')", "ID", "s1").Err(), k1)
	require.EqualError(t, rdb1.Do(ctx, "RG.PYEXECUTE", "x = 1", "ID", "s9", "REPLACE_WITH", "s1").Err(), k1)
	openGate(t, gate)
	require.NoError(t, <-first)
	require.Equal(t, []string{"K1", "K1"}, hazardIDs(shards[1]))
	require.Empty(t, hazardIDs(shards[0]))
	require.Equal(t, []any{"['t1']", "['t1']", "['t1']"}, newRDB(t, shards[2].Addr(), 2).Do(ctx, "RG.TRIGGER", "t1").Val(),
		"an async trigger runs on the 3 shards")
	// Once the first replied, the session can be upgraded through any shard.
	require.Equal(t, "OK", rdb1.Do(ctx, "RG.PYEXECUTE", "GB('CommandReader').register(trigger='t1')", "ID", "s1", "UPGRADE").Val())
}

// Two applies from other shards reaching one shard at once exclude each other: each has a lock token
// of its own (tokens are re-entrant).
func TestClusterReplicaTokensExcludeEachOtherEmul(t *testing.T) {
	cl := RunCluster(t, 2)
	s := cl.Shards()[1]
	first := s.replicaToken()
	s.lock.acquire(first)
	require.False(t, s.lock.tryAcquire(s.replicaToken()), "a second apply entered while the first held the lock")
	s.lock.release(first)
}

// A part of a distributed execution that holds another shard's global lock (atomic() in the part
// that runs on shard 2) gives it back when the worker that runs it dies: shard 2 goes on answering.
func TestClusterDistributedLockReleasedOnWorkerDeathEmul(t *testing.T) {
	cl := RunCluster(t, 3)
	ctx := ctxT(t)
	shards := cl.Shards()
	dir := t.TempDir()
	started, gate := filepath.Join(dir, "started"), filepath.Join(dir, "gate")
	script := fmt.Sprintf(`
import os, time
def hold(r):
    if r == %q:
        with atomic():
            open(%q, 'w').close()
            while not os.path.exists(%q):
                time.sleep(0.001)
    return r
GB('ShardsIDReader').foreach(hold).run()
`, shards[2].shard.id, started, gate)
	rdb0, rdb2 := newRDB(t, shards[0].Addr(), 2), newRDB(t, shards[2].Addr(), 2)
	require.NoError(t, rdb2.Ping(ctx).Err()) // connected before the lock is held
	id, err := rdb0.Do(ctx, "RG.PYEXECUTE", script, "UNBLOCKING").Text()
	require.NoError(t, err)
	require.Regexp(t, "^"+shards[0].shard.id+"-[0-9]+$", id)
	for {
		if _, err := os.Stat(started); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the part on shard 2 never took its lock: %v", ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
	require.NoError(t, shards[0].KillWorker())
	key := "{" + shards[2].shard.hashtag + "}k"
	require.NoError(t, rdb2.Set(ctx, key, "v", 0).Err(), "shard 2 answers once the lock of the dead worker's part is released")
	require.Equal(t, "v", rdb2.Get(ctx, key).Val())
	openGate(t, gate)
}

// All parts of a distributed execution run in the worker of the shard that started it, so they share
// its session globals (a real shard has its own copy: there each part would answer 1).
func TestClusterDistributedPartsShareGlobalsEmul(t *testing.T) {
	cl := RunCluster(t, 3)
	ctx := ctxT(t)
	rdb := newRDB(t, cl.Shards()[1].Addr(), 2)
	v, err := rdb.Do(ctx, "RG.PYEXECUTE", "seen = []\nGB('ShardsIDReader').foreach(lambda r: seen.append(r)).map(lambda r: len(seen)).run()").Result()
	require.NoError(t, err)
	got := v.([]any)[0].([]any)
	sort.Slice(got, func(a, b int) bool { return got[a].(string) < got[b].(string) })
	require.Equal(t, []any{"1", "2", "3"}, got)
}

// BenchmarkPyExecuteRegister: an RG.PYEXECUTE … UPGRADE that registers one CommandReader trigger, on a
// stand-alone server and through one shard of a 3-shard cluster (which applies it on every shard).
func BenchmarkPyExecuteRegister(b *testing.B) {
	for _, shards := range []int{0, 3} {
		name := "standalone"
		if shards > 0 {
			name = fmt.Sprintf("cluster%d", shards)
		}
		b.Run(name, func(b *testing.B) {
			addr := ""
			if shards == 0 {
				addr = Run(b).Addr()
			} else {
				addr = RunCluster(b, shards).Addrs()[0]
			}
			rdb := redis.NewClient(&redis.Options{Addr: addr})
			b.Cleanup(func() { _ = rdb.Close() })
			ctx := context.Background()
			script := "GB('CommandReader').map(lambda x: 1).register(trigger='bench', mode='sync')"
			require.NoError(b, rdb.Do(ctx, "RG.PYEXECUTE", script, "ID", "bench").Err())
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if err := rdb.Do(ctx, "RG.PYEXECUTE", script, "ID", "bench", "UPGRADE").Err(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// A worker RPC's token names the shard it acts on: "@<index>" routes a distributed part's calls on a
// cluster; anything else (and every token of a stand-alone server) stays on the worker's own server.
func TestClusterTokenTargetEmul(t *testing.T) {
	cl := RunCluster(t, 3)
	shards := cl.Shards()
	wk := &workerProc{s: shards[1]}
	for tok, want := range map[string]*Server{
		"x12@2": shards[2], "x12@0": shards[0], "c7": shards[1], "": shards[1], "x12@": shards[1],
		"x12@two": shards[1], "x12@3": nil, "x12@-1": nil,
	} {
		require.Same(t, want, wk.target(tok), "token %q", tok)
	}
	srv := Run(t)
	require.Same(t, srv, (&workerProc{s: srv}).target("x12@2"), "stand-alone")
}

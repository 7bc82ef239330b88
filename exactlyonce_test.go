package gears_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
	"github.com/gearsgo/gears/internal/testtarget"
)

// The exactly-once tests start separate OS processes — this test binary re-executed with
// GEARS_HELPER_MODE set, running only TestHelperProcess — each with its own connections, and make them
// call the same Command at the same moment. On gearstest, an RG.PYEXECUTE of a session while another one
// of that session is in flight is a HAZARD (it crashes a real RedisGears 1.2.13) and fails the test: the
// registration lock is what keeps these tests green. Against a real server: GEARS_ADDR=host:port.

const (
	helperEnv = "GEARS_HELPER_MODE" // "once": call once; "loop": call until told to stop
	helperN   = 12                  // processes started together
)

// versionedScript is the function the helper processes register: version v answers "<v>:<arg>".
func versionedScript(v string) gears.Script {
	return gears.Script{
		Function: "answer",
		Source:   fmt.Sprintf("def answer(arg):\n    return '%s:' + arg\n", v),
	}
}

// versionNumber is the WithVersion of script version "v<N>".
func versionNumber(v string) uint64 {
	n, _ := strconv.ParseUint(strings.TrimPrefix(v, "v"), 10, 64)
	return n
}

// TestHelperProcess is one helper process: connect (to a cluster when GEARS_HELPER_ADDR lists several
// nodes), say "ready", wait for "go" on stdin, then call the
// Command. Mode "once" calls it once and prints "ok <reply> <RG.PYEXECUTEs sent>" or "err <error>";
// mode "loop" (effectScript) calls it with distinct arguments until stdin says "stop" and prints
// "done <calls> <RG.TRIGGERs sent>" or "err <error>". It does nothing in a normal test run.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process of the exactly-once tests; runs only when re-executed by them")
	}
	addr, trig, arg := os.Getenv("GEARS_HELPER_ADDR"), os.Getenv("GEARS_HELPER_TRIGGER"), os.Getenv("GEARS_HELPER_ARG")
	v := os.Getenv("GEARS_HELPER_VERSION")
	proto, _ := strconv.Atoi(os.Getenv("GEARS_HELPER_PROTO"))
	hook := &countingHook{}
	var rdb redis.UniversalClient
	if strings.Contains(addr, ",") {
		// A cluster (TestClusterExactlyOnceAcrossProcesses): the hook goes on every node's client, which
		// also sees what is sent to one node directly (the session commands, to the lock's node).
		cc := redis.NewClusterClient(&redis.ClusterOptions{Addrs: strings.Split(addr, ","), Protocol: proto,
			ReadTimeout: 60 * time.Second})
		cc.OnNewNode(func(c *redis.Client) { c.AddHook(hook) })
		rdb = cc
	} else {
		c := newRedis(addr, proto)
		c.AddHook(hook)
		rdb = c
	}
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		fmt.Printf("err ping: %v\n", err)
		os.Exit(0)
	}
	var call gears.Func[string]
	if mode == "loop" {
		call = gears.Command[string](trig, rdb, effectScript(os.Getenv("GEARS_HELPER_KEY"), v),
			gears.WithMode(gears.AsyncLocal), gears.WithIdempotent(), gears.WithVersion(versionNumber(v)))
	} else {
		call = gears.Command[string](trig, rdb, versionedScript(v), gears.WithMode(gears.Sync),
			gears.WithVersion(versionNumber(v)))
	}
	fmt.Println("ready")
	in := bufio.NewReader(os.Stdin)
	if line, err := in.ReadString('\n'); err != nil || line != "go\n" {
		fmt.Printf("err no go: %q %v\n", line, err)
		os.Exit(0)
	}
	if mode == "once" {
		reply, err := call(ctx, arg)
		if err != nil {
			fmt.Printf("err %v\n", err)
		} else {
			fmt.Printf("ok %s %d\n", reply, hook.count("RG.PYEXECUTE"))
		}
		os.Exit(0)
	}
	stop := make(chan struct{})
	go func() {
		_, _ = in.ReadString('\n')
		close(stop)
	}()
	calls := 0
	for ; calls < 1_000_000; calls++ {
		select {
		case <-stop:
			fmt.Printf("done %d %d\n", calls, hook.count("RG.TRIGGER"))
			os.Exit(0)
		default:
		}
		id := arg + ":" + strconv.Itoa(calls)
		if got, err := call(ctx, id); err != nil || got != id {
			fmt.Printf("err call %s: %q %v\n", id, got, err)
			os.Exit(0)
		}
		if calls == 0 {
			fmt.Println("called") // the registration is done and a call went through
		}
	}
	fmt.Println("err never told to stop")
	os.Exit(0)
}

// effectScript counts each call in the hash key under its argument and returns the argument; version v
// only changes the code's text.
func effectScript(key, v string) gears.Script {
	return gears.Script{
		Function: "effect",
		Source: fmt.Sprintf("# version %s\ndef effect(arg):\n    execute('HINCRBY', %q, arg, 1)\n    return arg\n",
			v, key),
	}
}

// helperProc is a started helper process.
type helperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
}

// startHelpers starts one process per entry of versions (mode "once" or "loop") and returns once all
// are connected and have built their Func.
func startHelpers(t *testing.T, addr string, proto int, mode, trig, key string, versions []string) []*helperProc {
	t.Helper()
	procs := make([]*helperProc, len(versions))
	for i, v := range versions {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+mode, "GEARS_HELPER_VERSION="+v, "GEARS_HELPER_ADDR="+addr,
			"GEARS_HELPER_TRIGGER="+trig, "GEARS_HELPER_KEY="+key, "GEARS_HELPER_ARG="+strconv.Itoa(i),
			"GEARS_HELPER_PROTO="+strconv.Itoa(proto))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		require.NoError(t, err)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		p := &helperProc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout)}
		procs[i] = p
		t.Cleanup(func() {
			// Normally they have exited; make sure none outlives the test.
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		})
	}
	for i, p := range procs {
		require.True(t, p.out.Scan(), "helper %d did not start", i)
		require.Equal(t, "ready", p.out.Text())
	}
	return procs
}

// tell writes a line to every process.
func tell(t *testing.T, procs []*helperProc, line string) {
	t.Helper()
	for _, p := range procs {
		_, err := io.WriteString(p.stdin, line+"\n")
		require.NoError(t, err)
	}
}

// answers reads one line from every process.
func answers(t *testing.T, procs []*helperProc) []string {
	t.Helper()
	out := make([]string, len(procs))
	for i, p := range procs {
		require.True(t, p.out.Scan(), "helper %d gave no answer", i)
		out[i] = p.out.Text()
	}
	return out
}

// runHelpers starts one "once" process per entry of versions, releases them together, and returns
// their replies and the number of RG.PYEXECUTEs they sent in all.
func runHelpers(t *testing.T, addr string, proto int, trig string, versions []string) (replies []string, pyExecutes int) {
	t.Helper()
	procs := startHelpers(t, addr, proto, "once", trig, "", versions)
	tell(t, procs, "go")
	for i, a := range answers(t, procs) {
		var reply string
		var n int
		if _, err := fmt.Sscanf(a, "ok %s %d", &reply, &n); err != nil {
			t.Fatalf("process %d (%s): %s", i, versions[i], a)
		}
		replies = append(replies, reply)
		pyExecutes += n
		require.NoError(t, procs[i].cmd.Wait())
	}
	return replies, pyExecutes
}

// repeat is n copies of v.
func repeat(v string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func TestExactlyOnceAcrossProcesses(t *testing.T) {
	addr := testtarget.Addr(t)
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			e := newEnv(t, addr, proto)
			trig := e.name("once")
			sid := "gears_" + trig
			session := func() gears.SessionInfo {
				t.Helper()
				ss, err := e.c.PyDumpSessions(e.ctx, &gears.PyDumpSessionsOptions{Sessions: []string{sid}})
				require.NoError(t, err)
				require.Len(t, ss, 1)
				return ss[0]
			}
			wantReplies := func(v string, replies []string) {
				t.Helper()
				for i, r := range replies {
					assert.Equal(t, fmt.Sprintf("%s:%d", v, i), r, "process %d", i)
				}
			}

			// 12 processes of v1 at once: one RG.PYEXECUTE in all, one registration.
			replies, pyExecutes := runHelpers(t, addr, proto, trig, repeat("v1", helperN))
			wantReplies("v1", replies)
			assert.Equal(t, 1, pyExecutes, "one process registered, the others waited for it and found its code")
			regs := e.registrationsOf(trig)
			require.Len(t, regs, 1, "exactly one registration after %d processes registered at once", helperN)
			assert.Equal(t, sid, regs[0].Session.SessionName)
			assert.Equal(t, []string{regs[0].ID}, session().RegistrationIDs)
			assert.Regexp(t, `^gears:[0-9a-f]{32}/v1$`, session().Description)
			exists, err := e.rdb.Exists(e.ctx, gears.LockKey(sid)).Result()
			require.NoError(t, err)
			assert.Zero(t, exists, "the registration lock is released")

			// A racing upgrade: 12 processes of v2 at once upgrade the session once.
			replies, pyExecutes = runHelpers(t, addr, proto, trig, repeat("v2", helperN))
			wantReplies("v2", replies)
			assert.Equal(t, 1, pyExecutes, "one process upgraded")
			regs = e.registrationsOf(trig)
			require.Len(t, regs, 1)
			assert.Regexp(t, `/v2$`, session().Description)

			// Old and new releases overlapping: 6 of v2 and 6 of v3 at once. v3 is installed once and
			// stays: a v2 process that comes after it keeps it (WithVersion), whatever the order.
			mixed := append(repeat("v2", helperN/2), repeat("v3", helperN/2)...)
			replies, pyExecutes = runHelpers(t, addr, proto, trig, mixed)
			assert.Equal(t, 1, pyExecutes, "only the upgrade to v3 was sent")
			for i, r := range replies {
				if mixed[i] == "v3" {
					assert.Equal(t, fmt.Sprintf("v3:%d", i), r, "process %d", i)
				} else {
					assert.Contains(t, []string{fmt.Sprintf("v2:%d", i), fmt.Sprintf("v3:%d", i)}, r, "process %d", i)
				}
			}
			assert.Regexp(t, `/v3$`, session().Description)
			v3Regs := e.registrationsOf(trig)
			require.Len(t, v3Regs, 1)

			// A process of an older release that starts late uses the newer code and registers nothing.
			replies, pyExecutes = runHelpers(t, addr, proto, trig, []string{"v1"})
			assert.Equal(t, []string{"v3:0"}, replies)
			assert.Zero(t, pyExecutes)
			assert.Equal(t, v3Regs[0].ID, e.registrationsOf(trig)[0].ID, "same registration: nobody downgraded it")
		})
	}
}

// TestRollingUpgradeLosesNoCall: 12 processes call an idempotent async_local function in a loop while
// the session is upgraded 20 times. A real RedisGears answers some queued calls with [] during an
// UPGRADE without running them (gears-spec.md 8.1, "silent loss"); gearstest does the same. WithIdempotent
// retries those, so no caller sees an error and every call's effect happens exactly once.
func TestRollingUpgradeLosesNoCall(t *testing.T) {
	addr := testtarget.Addr(t)
	e := newEnv(t, addr, 3)
	trig, key := e.name("rolling"), e.name("effects")
	t.Cleanup(func() { _ = e.rdb.Del(context.Background(), key).Err() })
	procs := startHelpers(t, addr, 3, "loop", trig, key, repeat("v1", helperN))
	tell(t, procs, "go")
	for i, a := range answers(t, procs) {
		require.Equal(t, "called", a, "process %d", i)
	}

	progress := func() int64 {
		n, err := e.rdb.HLen(e.ctx, key).Result()
		require.NoError(t, err)
		return n
	}
	const upgrades = 20
	for u := 2; u < 2+upgrades; u++ {
		v := "v" + strconv.Itoa(u)
		// A newer release registers (UPGRADE under the lock); the loopers' WithVersion(1) keeps it.
		got, err := gears.Command[string](trig, e.rdb, effectScript(key, v), gears.WithMode(gears.AsyncLocal),
			gears.WithVersion(uint64(u)))(e.ctx, "upgrader:"+v)
		require.NoError(t, err)
		require.Equal(t, "upgrader:"+v, got)
		// Wait until the loopers made calls against this version before the next upgrade.
		before := progress()
		waitUntil(t, time.Minute, "calls between upgrades", func() bool { return progress() >= before+helperN })
	}
	tell(t, procs, "stop")
	calls, triggers := 0, 0
	for i, a := range answers(t, procs) {
		var c, n int
		if _, err := fmt.Sscanf(a, "done %d %d", &c, &n); err != nil {
			t.Fatalf("process %d: %s", i, a)
		}
		calls += c
		triggers += n
	}
	effects, err := e.rdb.HGetAll(e.ctx, key).Result()
	require.NoError(t, err)
	assert.Len(t, effects, calls+upgrades, "every call's effect, the upgraders' included")
	for id, n := range effects {
		if n != "1" {
			t.Errorf("call %s took effect %s times", id, n)
		}
	}
	t.Logf("%d calls by %d processes during %d upgrades; %d were answered [] and retried", calls, helperN,
		upgrades, triggers-calls)
}

// countingHook counts the commands a client sends, by name.
type countingHook struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}
func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.mu.Lock()
		if h.n == nil {
			h.n = map[string]int{}
		}
		h.n[strings.ToUpper(cmd.Name())]++
		h.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (h *countingHook) count(name string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.n[name]
}

func TestExactlyOnceInProcess(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		hook := &countingHook{}
		e.rdb.AddHook(hook)
		trig := e.name("inproc")
		call := gears.Command[string](trig, e.rdb, versionedScript("v1"), gears.WithMode(gears.AsyncLocal))

		const n = 50
		var wg sync.WaitGroup
		var failures atomic.Int32
		start := make(chan struct{})
		for i := 0; i < n; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				<-start
				got, err := call(e.ctx, strconv.Itoa(i))
				if err != nil || got != fmt.Sprintf("v1:%d", i) {
					failures.Add(1)
					t.Errorf("caller %d: %q, %v", i, got, err)
				}
			}(i)
		}
		close(start)
		wg.Wait()
		assert.Zero(t, failures.Load())
		assert.Equal(t, 1, hook.count("RG.PYEXECUTE"), "concurrent first calls share one registration")
		assert.Equal(t, 2, hook.count("RG.PYDUMPSESSIONS"), "one check before the registration lock, one under it")
		assert.Equal(t, n, hook.count("RG.TRIGGER"))
		assert.Len(t, e.registrationsOf(trig), 1)

		// A second Func for the same code (another part of the program, or a restarted process) finds the
		// registration by its hash and does not register again.
		again := gears.Command[string](trig, e.rdb, versionedScript("v1"), gears.WithMode(gears.AsyncLocal))
		got, err := again(e.ctx, "x")
		require.NoError(t, err)
		assert.Equal(t, "v1:x", got)
		assert.Equal(t, 1, hook.count("RG.PYEXECUTE"))
		assert.Equal(t, 3, hook.count("RG.PYDUMPSESSIONS"), "code already there: one check, no lock")
	})
}

func TestLostRegistrationIsRestored(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		hook := &countingHook{}
		e.rdb.AddHook(hook)
		trig := e.name("lost")
		call := gears.Command[string](trig, e.rdb, versionedScript("v1"), gears.WithMode(gears.Sync))
		got, err := call(e.ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, "v1:a", got)

		// Someone unregisters behind the library's back (or the server restarted without persistence).
		regs := e.registrationsOf(trig)
		require.Len(t, regs, 1)
		require.NoError(t, gears.NewClient(newRedis(e.addr, e.proto)).Unregister(e.ctx, regs[0].ID, false))

		// Many callers notice at once: each call succeeds, and the code is registered once.
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				got, err := call(e.ctx, strconv.Itoa(i))
				assert.NoError(t, err)
				assert.Equal(t, fmt.Sprintf("v1:%d", i), got)
			}(i)
		}
		wg.Wait()
		assert.Len(t, e.registrationsOf(trig), 1)
		assert.Equal(t, 2, hook.count("RG.PYEXECUTE"), "one registration at first, one after the loss")
	})
}

func TestRegistrationRetriedAfterFailure(t *testing.T) {
	forEachProtocol(t, func(t *testing.T, e *gEnv) {
		trig := e.name("retry")
		// Another session owns the trigger and holds a second registration, so Upgrade must not take it.
		other := e.name("other")
		e.register(fmt.Sprintf("GB('CommandReader').map(lambda x: 'theirs').register(trigger='%s', mode='sync')\n"+
			"GB('CommandReader').register(trigger='%s', mode='sync')", trig, e.name("second")), &gears.PyExecuteOptions{ID: other})

		call := gears.Command[string](trig, e.rdb, versionedScript("mine"), gears.WithMode(gears.Sync))
		_, err := call(e.ctx, "a")
		require.ErrorIs(t, err, gears.ErrTriggerRegistered)
		var re *gears.RegistrationError
		require.ErrorAs(t, err, &re)
		assert.Equal(t, trig, re.Trigger)
		assert.Contains(t, err.Error(), other)

		// Not cached: once the other session is gone, the next call registers and succeeds.
		for _, r := range e.registrationsOf(trig) {
			require.NoError(t, e.c.Unregister(e.ctx, r.ID, false))
		}
		got, err := call(e.ctx, "a")
		require.NoError(t, err)
		assert.Equal(t, "mine:a", got)
	})
}

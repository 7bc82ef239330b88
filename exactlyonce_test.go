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

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gearsgo/gears"
	"github.com/gearsgo/gears/internal/testtarget"
)

// The exactly-once tests start separate OS processes — this test binary re-executed with
// GEARS_HELPER_MODE set, running only TestHelperProcess — each with its own connections, and make them
// call the same Command at the same moment.

const (
	helperEnv = "GEARS_HELPER_MODE" // "v1" or "v2": which version of the script the process uses
	helperN   = 10                  // processes started together (the issue asks for at least 8)
)

// versionedScript is the function the helper processes register: version v answers "<v>:<arg>".
func versionedScript(v string) gears.Script {
	return gears.Script{
		Function: "answer",
		Source:   fmt.Sprintf("def answer(arg):\n    return '%s:' + arg\n", v),
	}
}

// TestHelperProcess is one helper process: connect, say "ready", wait for "go" on stdin, call the
// Command once, print "ok <reply>" or "err <error>". It does nothing in a normal test run.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process of the exactly-once tests; runs only when re-executed by them")
	}
	addr, trig, arg := os.Getenv("GEARS_HELPER_ADDR"), os.Getenv("GEARS_HELPER_TRIGGER"), os.Getenv("GEARS_HELPER_ARG")
	proto, _ := strconv.Atoi(os.Getenv("GEARS_HELPER_PROTO"))
	rdb := newRedis(addr, proto)
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.Ping(ctx).Err(); err != nil {
		fmt.Printf("err ping: %v\n", err)
		os.Exit(0)
	}
	call := gears.Command[string](trig, rdb, versionedScript(mode), gears.WithMode(gears.Sync))
	fmt.Println("ready")
	if line, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil || line != "go\n" {
		fmt.Printf("err no go: %q %v\n", line, err)
		os.Exit(0)
	}
	reply, err := call(ctx, arg)
	if err != nil {
		fmt.Printf("err %v\n", err)
	} else {
		fmt.Printf("ok %s\n", reply)
	}
	os.Exit(0)
}

// helperProc is a started helper process.
type helperProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bufio.Scanner
	arg   string
}

// runHelpers starts n processes with script version v, waits until all are connected, releases them
// together and returns each one's answer line.
func runHelpers(t *testing.T, addr string, proto int, trig, v string, n int) []string {
	t.Helper()
	procs := make([]*helperProc, n)
	for i := range procs {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperEnv+"="+v, "GEARS_HELPER_ADDR="+addr, "GEARS_HELPER_TRIGGER="+trig,
			"GEARS_HELPER_ARG="+strconv.Itoa(i), "GEARS_HELPER_PROTO="+strconv.Itoa(proto))
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		require.NoError(t, err)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		require.NoError(t, cmd.Start())
		p := &helperProc{cmd: cmd, stdin: stdin, out: bufio.NewScanner(stdout), arg: strconv.Itoa(i)}
		procs[i] = p
		t.Cleanup(func() {
			// Normally they have exited; make sure none outlives the test.
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		})
	}
	for _, p := range procs {
		require.True(t, p.out.Scan(), "helper did not start")
		require.Equal(t, "ready", p.out.Text())
	}
	for _, p := range procs {
		_, err := io.WriteString(p.stdin, "go\n")
		require.NoError(t, err)
	}
	answers := make([]string, n)
	for i, p := range procs {
		require.True(t, p.out.Scan(), "helper %d gave no answer", i)
		answers[i] = p.out.Text()
		require.NoError(t, p.cmd.Wait())
	}
	return answers
}

func TestExactlyOnceAcrossProcesses(t *testing.T) {
	addr := testtarget.Addr(t)
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			e := newEnv(t, addr, proto)
			trig := e.name("once")

			answers := runHelpers(t, addr, proto, trig, "v1", helperN)
			for i, a := range answers {
				assert.Equal(t, fmt.Sprintf("ok v1:%d", i), a, "process %d", i)
			}
			regs := e.registrationsOf(trig)
			require.Len(t, regs, 1, "exactly one registration after %d processes registered at once", helperN)
			assert.Equal(t, "gears_"+trig, regs[0].Session.SessionName)
			ss, err := e.c.PyDumpSessions(e.ctx, &gears.PyDumpSessionsOptions{Sessions: []string{"gears_" + trig}})
			require.NoError(t, err)
			assert.Equal(t, []string{regs[0].ID}, ss[0].RegistrationIDs)
			v1Desc := ss[0].Description
			assert.Regexp(t, `^gears:[0-9a-f]{32}$`, v1Desc)

			// Upgrade: a process with a changed script replaces the old code atomically.
			answers = runHelpers(t, addr, proto, trig, "v2", 1)
			assert.Equal(t, []string{"ok v2:0"}, answers)
			regs = e.registrationsOf(trig)
			require.Len(t, regs, 1)
			recs, err := e.c.Trigger(e.ctx, trig, "z")
			require.NoError(t, err)
			assert.Equal(t, []any{"v2:z"}, recs, "the old code is gone")
			ss, err = e.c.PyDumpSessions(e.ctx, &gears.PyDumpSessionsOptions{Sessions: []string{"gears_" + trig}})
			require.NoError(t, err)
			assert.NotEqual(t, v1Desc, ss[0].Description)
			v2Desc := ss[0].Description

			// Many v2 processes starting now find their code and register nothing.
			answers = runHelpers(t, addr, proto, trig, "v2", helperN)
			for i, a := range answers {
				assert.Equal(t, fmt.Sprintf("ok v2:%d", i), a, "process %d", i)
			}
			regs2 := e.registrationsOf(trig)
			require.Len(t, regs2, 1)
			assert.Equal(t, regs[0].ID, regs2[0].ID, "same registration: nobody upgraded again")

			// A process still on v1 finds different code and (policy Upgrade) takes the trigger back.
			answers = runHelpers(t, addr, proto, trig, "v1", 1)
			assert.Equal(t, []string{"ok v1:0"}, answers)
			ss, err = e.c.PyDumpSessions(e.ctx, &gears.PyDumpSessionsOptions{Sessions: []string{"gears_" + trig}})
			require.NoError(t, err)
			assert.Equal(t, v1Desc, ss[0].Description)
			assert.NotEqual(t, v2Desc, ss[0].Description)
			assert.Len(t, e.registrationsOf(trig), 1)
		})
	}
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

package gearstest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// The warm pool: a process-wide spare worker per Python interpreter, started and initialised ahead of
// any server, so that Start hands a server a worker that has already paid CPython's start-up and the
// worker's imports (most of a cold Start's ~165 ms) instead of starting one.
//
// A spare is a whole `python3 worker.py --spare <dir>` process in a directory of its own (<dir>/worker
// holds the sources and is its working directory, as for a cold worker). It serves exactly one server,
// ever: Start takes it out of the pool and adopts it (the server's s.tmp becomes <dir>), sends it
// `init` with the server's options and config, and a new spare is started in the background for the
// next Start. Nothing per server reaches a spare before it is taken: what a worker reads at start (its
// environment: GEARS_NEST_MAX, GEARS_STEAL_AFTER_MS, ...; the interpreter) is the pool's key, and a
// spare started with another environment than the one Start sees is killed, not used.
//
// A spare never outlives the process: its stdin is the lifeline. The process holds the pipe's write
// end (close-on-exec, so no other child inherits it); when it exits, however it exits, the spare reads
// EOF before any `init` and removes its directory and exits (worker.py main/read_one).
//
// Why not a fork server (a zygote that imported everything and forks a child per server)? A fork is
// ~ms where taking a spare is ~µs, and the zygote must hand each child its pipes (fd passing over a Unix
// socket) and stay single-threaded until it forks (the worker starts threads); its children are not
// children of the Go process, so KillWorker, Close and the restart loop, built on exec.Cmd (process
// group, Wait, exit status), would need another way to watch and reap them. A pre-started spare keeps
// every worker an ordinary child started as before; its only cost is one idle process per interpreter.
//
// GEARS_WARM=0 or WithoutWarmWorker disables it for a Start; worker restarts (after a crash or
// KillWorker) always start a cold worker in the server's own directory.

// spare is a started worker process that no server owns yet.
type spare struct {
	key    string // the interpreter and the environment it was started with (warmKey)
	tmp    string // its directory; the adopting server's s.tmp
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *bufio.Reader
	pipe   *pipeReader // under stdout
	stderr io.ReadCloser
	ready  bool // its `ready` frame was read already (waitReady)
}

var warm struct {
	mu      sync.Mutex
	spares  map[string]*spare // by interpreter path: one spare each
	filling map[string]bool   // a spare for this interpreter is being started
	changed chan struct{}     // closed (and replaced) when a spare is added; for tests
}

// warmEnabled reports whether Start may take a spare.
func warmEnabled(o *options) bool {
	return !o.noWarm && os.Getenv("GEARS_WARM") != "0"
}

// warmKey is what a worker started now with interpreter py would read at start.
func warmKey(py string, env []string) string {
	return py + "\x00" + strings.Join(env, "\x00")
}

// takeSpare takes the spare for interpreter py (a resolved path) out of the pool, or returns nil when
// there is none or it was started with another environment (then it is killed).
func takeSpare(py string) *spare {
	warm.mu.Lock()
	sp := warm.spares[py]
	delete(warm.spares, py)
	warm.mu.Unlock()
	if sp != nil && sp.key != warmKey(py, os.Environ()) {
		sp.discard()
		return nil
	}
	return sp
}

// refillSpare starts a spare for interpreter py in the background, unless there is one already or
// one is starting.
func refillSpare(py string) {
	warm.mu.Lock()
	if warm.spares[py] != nil || warm.filling[py] {
		warm.mu.Unlock()
		return
	}
	if warm.filling == nil {
		warm.filling = map[string]bool{}
		warm.spares = map[string]*spare{}
	}
	warm.filling[py] = true
	warm.mu.Unlock()
	go func() {
		sp, err := startSpare(py)
		warm.mu.Lock()
		delete(warm.filling, py)
		old := warm.spares[py]
		if err == nil {
			warm.spares[py] = sp
			if warm.changed != nil {
				close(warm.changed)
				warm.changed = nil
			}
		}
		warm.mu.Unlock()
		if old != nil && err == nil {
			old.discard()
		}
	}()
}

// startSpare starts a spare worker for interpreter py in a new directory.
func startSpare(py string) (*spare, error) {
	tmp, err := os.MkdirTemp("", "gearstest-")
	if err != nil {
		return nil, fmt.Errorf("gearstest: %w", err)
	}
	dir := filepath.Join(tmp, "worker")
	if err := writeWorkerFiles(dir); err != nil {
		_ = os.RemoveAll(tmp)
		return nil, err
	}
	env := os.Environ()
	wc, err := workerCommand(py, dir, env, "--spare", tmp)
	if err == nil {
		err = wc.cmd.Start()
	}
	if err != nil {
		_ = os.RemoveAll(tmp)
		return nil, fmt.Errorf("gearstest: starting a spare python worker: %w", err)
	}
	return &spare{
		key: warmKey(py, env), tmp: tmp, cmd: wc.cmd,
		stdin: wc.stdin, stdout: bufio.NewReaderSize(wc.stdout, 64<<10), pipe: wc.stdout,
		stderr: wc.stderr,
	}, nil
}

// discard kills a spare that will not be used and removes its directory.
func (sp *spare) discard() {
	_ = killGroup(sp.cmd)
	_ = sp.stdin.Close()
	_ = sp.cmd.Wait()
	_ = os.RemoveAll(sp.tmp)
}

// waitReady reads the spare's `ready` frame (sent once it is warm), if not read yet.
func (sp *spare) waitReady() error {
	if sp.ready {
		return nil
	}
	sp.ready = true
	v, err := readValue(sp.stdout)
	if err != nil {
		return fmt.Errorf("gearstest: spare python worker: %w", err)
	}
	if v.Kind != kindArray || len(v.Arr) != 1 || string(v.Arr[0].Str) != "ready" {
		return fmt.Errorf("gearstest: spare python worker: unexpected first message")
	}
	return nil
}

package gearstest

import (
	"bufio"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"time"
)

//go:embed python/*.py
var pythonFiles embed.FS

// workerProc is one running Python worker process and the protocol state that lives as long as it.
type workerProc struct {
	s   *Server
	cmd *exec.Cmd
	out *outbox // messages to its stdin (worker_io.go)

	mu      sync.Mutex // guards pending, dead and locks
	pending map[int64]*pendingReq
	dead    bool
	locks   map[string]int // lock depth taken through `lock` messages, released if the worker dies

	exited chan struct{} // closed when the reader saw EOF and everything was failed

	// Results of `done`s readLoop read, handed to their requesters right before it reads the pipe
	// again (deliver, from pipeReader), after the answers it held: only readLoop's goroutine uses it.
	deliveries []delivery

	pin pairPin // the sync lane's CPU (pin_linux.go)
}

// delivery is a request's result waiting for readLoop's next read (workerProc.deliveries).
type delivery struct {
	pr *pendingReq
	v  value
}

func (s *Server) pythonPath() (string, error) {
	p, err := exec.LookPath(s.opts.python)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoPython, err)
	}
	return p, nil
}

// startWorker starts the first worker, or adopts sp (a warm spare, warm.go) when it is not nil, and
// waits until it is usable. A spare that fails is replaced by a cold worker.
func (s *Server) startWorker(sp *spare) error {
	var wk *workerProc
	if sp != nil {
		w, err := s.adoptSpare(sp)
		if err == nil {
			err = w.check()
		}
		if err == nil {
			wk = w
		} else {
			s.logf('#', "gearstest: the warm python worker failed (%v), starting one", err)
		}
	}
	if wk == nil {
		w, err := s.spawnWorker()
		if err != nil {
			return err
		}
		if err := w.check(); err != nil {
			return err
		}
		wk = w
	}
	if warmEnabled(&s.opts) {
		// This interpreter works: have a spare ready for the next Start.
		refillSpare(wk.cmd.Path)
	}
	s.wmu.Lock()
	s.wk = wk
	s.wkReady = make(chan struct{})
	close(s.wkReady)
	s.wmu.Unlock()
	return nil
}

// spawnWorker starts a worker process, registered in s.procs until it exits, and sends it `init`.
func (s *Server) spawnWorker() (*workerProc, error) {
	py, err := s.pythonPath()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.tmp, "worker")
	if err := writeWorkerFiles(dir); err != nil {
		return nil, err
	}
	wc, err := workerCommand(py, dir, os.Environ())
	if err != nil {
		return nil, err
	}
	wk := s.newWorkerProc(wc.cmd)
	// Registered before it starts, under wmu: Close (which stops every registered worker) either sees
	// it or this sees that the server is closed.
	s.wmu.Lock()
	if s.closed.Load() {
		s.wmu.Unlock()
		return nil, errServerClosed
	}
	if err := wc.cmd.Start(); err != nil {
		s.wmu.Unlock()
		return nil, fmt.Errorf("gearstest: starting python worker: %w", err)
	}
	s.procs[wk] = struct{}{}
	s.wmu.Unlock()
	s.runWorker(wk, wc.stdin, wc.stdout, bufio.NewReaderSize(wc.stdout, 64<<10), wc.stderr, nil)
	return wk, nil
}

// adoptSpare makes a warm spare this server's worker (registered in s.procs until it exits) and sends
// it `init`; its directory is already s.tmp (Start).
func (s *Server) adoptSpare(sp *spare) (*workerProc, error) {
	wk := s.newWorkerProc(sp.cmd)
	s.wmu.Lock()
	if s.closed.Load() {
		s.wmu.Unlock()
		sp.discard()
		return nil, errServerClosed
	}
	s.procs[wk] = struct{}{}
	s.wmu.Unlock()
	s.runWorker(wk, sp.stdin, sp.pipe, sp.stdout, sp.stderr, sp)
	return wk, nil
}

func (s *Server) newWorkerProc(cmd *exec.Cmd) *workerProc {
	return &workerProc{
		s: s, cmd: cmd, out: newOutbox(),
		pending: map[int64]*pendingReq{}, locks: map[string]int{}, exited: make(chan struct{}),
	}
}

// workerCmd is a worker process not started yet, with its pipes.
type workerCmd struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout *pipeReader
	stderr io.ReadCloser
}

// workerCommand prepares `python -u <dir>/worker.py args...` in dir with environment env (+ the
// worker's own settings) and its three pipes.
func workerCommand(py, dir string, env []string, args ...string) (workerCmd, error) {
	cmd := exec.Command(py, append([]string{"-u", filepath.Join(dir, "worker.py")}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(env, "PYTHONDONTWRITEBYTECODE=1", "PYTHONIOENCODING=utf-8")
	ownProcessGroup(cmd)
	wc := workerCmd{cmd: cmd}
	var err error
	if wc.stdin, err = cmd.StdinPipe(); err != nil {
		return wc, fmt.Errorf("gearstest: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return wc, fmt.Errorf("gearstest: %w", err)
	}
	// Blocking reads of the worker's stdout: readLoop's goroutine sleeps in read(2) on its own thread,
	// and the worker's write wakes that thread directly. Through the netpoller every message the
	// worker wrote took an epoll wake-up, a hand-off to a goroutine and often a futex wake of another
	// thread: under redis-benchmark with 50 clients a third of Go's CPU per trigger was the scheduler
	// (perf), and the sync critical path has one such message per execute(). A blocked read cannot be
	// interrupted by closing the pipe; nothing needs that: readLoop ends at EOF, when the worker
	// exits, and every path that gives up on a worker kills it (killGroup).
	if f, ok := stdout.(*os.File); ok {
		f.Fd() // puts the file in blocking mode
	}
	wc.stdout = &pipeReader{r: stdout}
	if wc.stderr, err = cmd.StderrPipe(); err != nil {
		return wc, fmt.Errorf("gearstest: %w", err)
	}
	return wc, nil
}

// runWorker starts the goroutines that serve a started worker and sends it `init`. For a spare (sp not
// nil), its `ready` frame is read first unless a test read it already.
func (s *Server) runWorker(wk *workerProc, stdin io.WriteCloser, pipe *pipeReader, stdout *bufio.Reader, stderr io.Reader, sp *spare) {
	wk.out.try = nonBlockingWrite(stdin) // before anything is queued: see outbox
	pipe.wk.Store(wk)                    // readLoop's answers leave in batches (pipeReader)
	wk.pin.cpu = pickPairCPU(wk.cmd.Process.Pid)
	s.wg.Add(3)
	go func() {
		defer s.wg.Done()
		s.logStderr(stderr)
	}()
	go func() {
		defer s.wg.Done()
		if sp != nil {
			if err := sp.waitReady(); err != nil && !errors.Is(err, io.EOF) {
				s.logf('#', "%v", err)
			}
		}
		wk.pin.bind()
		wk.readLoop(stdout)
	}()
	go func() {
		defer s.wg.Done()
		wk.out.writeLoop(stdin, wk.exited)
	}()
	init, _ := json.Marshal(map[string]any{
		"config":  s.state.cfg.pythonView(),
		"check37": s.opts.check37,
		"reqdir":  filepath.Join(s.tmp, "requirements"),
		"shard":   s.state.myid,
		"cluster": s.shardInit(), // cluster.go: node id and hashtag() of a shard, null stand-alone
		"pin_cpu": wk.pin.cpu,    // pin_linux.go, -1: off
	})
	_ = wk.send(bulk("init"), bulkBytes(init))
}

// writeWorkerFiles writes the embedded worker sources to directory dir.
func writeWorkerFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("gearstest: %w", err)
	}
	entries, err := pythonFiles.ReadDir("python")
	if err != nil {
		return fmt.Errorf("gearstest: %w", err)
	}
	for _, e := range entries {
		b, err := pythonFiles.ReadFile("python/" + e.Name())
		if err != nil {
			return fmt.Errorf("gearstest: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return fmt.Errorf("gearstest: %w", err)
		}
	}
	return nil
}

// logStderr forwards the worker's stderr to the server log, line by line.
func (s *Server) logStderr(stderr io.Reader) {
	sc := bufio.NewScanner(stderr)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		s.logf('#', "python: %s", sc.Text())
	}
	_, _ = io.Copy(io.Discard, stderr)
}

// ErrWorkerStart is returned by Start when the Python worker does not come up.
var ErrWorkerStart = errors.New("gearstest: the python worker did not start (see the log)")

// check makes a round trip to a fresh worker, so that an interpreter that cannot run it (too old,
// broken) is reported by Start instead of by the first command.
func (wk *workerProc) check() error {
	res := make(chan error, 1)
	go func() {
		_, err := wk.request("dropsession", nil, bulk("gearstest-startup-check"))
		res <- err
	}()
	select {
	case err := <-res:
		if err == nil {
			return nil
		}
		wk.stop()
	case <-time.After(30 * time.Second):
		wk.stop()
		<-res
	}
	return ErrWorkerStart
}

// currentWorker returns the current worker, or nil while it restarts.
func (s *Server) currentWorker() *workerProc {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	return s.wk
}

// worker returns the current worker, waiting while it restarts.
func (s *Server) worker() (*workerProc, error) {
	for {
		s.wmu.Lock()
		wk, ready := s.wk, s.wkReady
		s.wmu.Unlock()
		if wk != nil {
			return wk, nil
		}
		select {
		case <-ready:
		case <-s.stop:
			return nil, errWorkerDied
		case <-time.After(60 * time.Second):
			return nil, errWorkerDied
		}
	}
}

// stopWorkers stops every worker process for good (Close): the current one and one a restart is
// restoring. Every request waiting for them fails (readLoop), whatever their code was doing.
func (s *Server) stopWorkers() {
	s.wmu.Lock()
	procs := make([]*workerProc, 0, len(s.procs))
	for wk := range s.procs {
		procs = append(procs, wk)
	}
	s.wmu.Unlock()
	var wg sync.WaitGroup
	for _, wk := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wk.stop()
		}()
	}
	wg.Wait()
}

// stop ends the worker: EOF on its stdin once what is queued is written, then SIGKILL if it has not
// exited 2 s later (its code blocks, or it stopped reading). It returns once the process is gone
// and readLoop has failed every pending request.
func (wk *workerProc) stop() {
	wk.out.close()
	select {
	case <-wk.exited:
	case <-time.After(2 * time.Second):
		_ = killGroup(wk.cmd)
		<-wk.exited
	}
}

// onWorkerExit runs after a worker died: fail everything in flight, then restart it and restore the
// committed sessions, unless the server is closing.
func (s *Server) onWorkerExit(wk *workerProc) {
	s.wmu.Lock()
	if s.wk != wk {
		// A worker that never became current (it died or was stopped while restoring): the restart
		// loop that spawned it handles that.
		s.wmu.Unlock()
		return
	}
	s.wk = nil
	s.wkReady = make(chan struct{})
	ready := s.wkReady
	s.wmu.Unlock()
	s.state.workerDied()
	if s.closed.Load() {
		close(ready)
		s.dropQueuedEvents()
		return
	}
	s.logf('#', "gearstest: python worker exited (%v), restarting it", wk.cmd.ProcessState)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.restartWorker()
		close(ready)
		// The events raised meanwhile were queued (eventqueue.go): after close(ready), since the
		// delivery takes the global lock, which a command waiting for ready may hold.
		s.deliverQueuedEvents()
	}()
}

// restartWorker starts a new worker and restores the committed sessions in it, retrying with a
// growing pause until it succeeds or the server closes.
func (s *Server) restartWorker() {
	for attempt := 0; !s.closed.Load(); attempt++ {
		nw, err := s.spawnWorker()
		if err == nil {
			if err = s.state.restore(nw, func(final func() error) error { return s.publishWorker(nw, final) }); err == nil {
				s.logf('*', "gearstest: python worker restarted, sessions restored")
				return
			}
			nw.stop() // whatever it was doing; Close may have stopped it already
			if errors.Is(err, errServerClosed) {
				return
			}
		}
		s.logf('#', "gearstest: restarting python worker: %v", err)
		select {
		case <-s.stop:
			return
		case <-time.After(time.Duration(min(attempt+1, 10)) * 200 * time.Millisecond):
		}
	}
}

// publishWorker makes a restored worker the current one, after final (which tells it what was
// unregistered during the restore) ran, all under wmu.
func (s *Server) publishWorker(nw *workerProc, final func() error) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed.Load() {
		return errServerClosed
	}
	if err := final(); err != nil {
		return err
	}
	s.wk = nw
	// A CONFIGSET made after nw got its init message did not reach it.
	for k, v := range s.state.cfg.pythonView() {
		_ = nw.send(bulk("config"), bulk(k), bulk(fmt.Sprint(v)))
	}
	return nil
}

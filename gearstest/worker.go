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
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed python/*.py
var pythonFiles embed.FS

// workerProc is one running Python worker process and the protocol state that lives as long as it.
type workerProc struct {
	s     *Server
	cmd   *exec.Cmd
	stdin io.WriteCloser

	wmu sync.Mutex // serializes whole messages on stdin
	w   *bufio.Writer

	mu      sync.Mutex // guards pending, dead and locks
	pending map[int64]*pendingReq
	dead    bool
	locks   map[string]int // lock depth taken through `lock` messages, released if the worker dies

	exited chan struct{} // closed when the reader saw EOF and everything was failed
}

// pendingReq is a request sent to the worker that waits for its `done`.
type pendingReq struct {
	ch chan value // gets the result value; errWorkerDied is delivered as an error value
	// release, when set, is called when the request stops needing the global lock its sender holds:
	// on `yield` (a sync trigger waiting on a future) and on `done`, from the reader goroutine, so the
	// next command gets the lock without waiting for the sender to be scheduled. It must be idempotent.
	release func()
}

func (s *Server) pythonPath() (string, error) {
	p, err := exec.LookPath(s.opts.python)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrNoPython, err)
	}
	return p, nil
}

// startWorker starts the first worker and waits until it is usable.
func (s *Server) startWorker() error {
	wk, err := s.spawnWorker()
	if err != nil {
		return err
	}
	if err := wk.check(); err != nil {
		return err
	}
	s.wmu.Lock()
	s.wk = wk
	s.wkReady = make(chan struct{})
	close(s.wkReady)
	s.wmu.Unlock()
	return nil
}

func (s *Server) spawnWorker() (*workerProc, error) {
	py, err := s.pythonPath()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(s.tmp, "worker")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("gearstest: %w", err)
	}
	entries, err := pythonFiles.ReadDir("python")
	if err != nil {
		return nil, fmt.Errorf("gearstest: %w", err)
	}
	for _, e := range entries {
		b, err := pythonFiles.ReadFile("python/" + e.Name())
		if err != nil {
			return nil, fmt.Errorf("gearstest: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dir, e.Name()), b, 0o644); err != nil {
			return nil, fmt.Errorf("gearstest: %w", err)
		}
	}
	cmd := exec.Command(py, "-u", filepath.Join(dir, "worker.py"))
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PYTHONDONTWRITEBYTECODE=1", "PYTHONIOENCODING=utf-8")
	ownProcessGroup(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("gearstest: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("gearstest: %w", err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("gearstest: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("gearstest: starting python worker: %w", err)
	}
	wk := &workerProc{
		s: s, cmd: cmd, stdin: stdin, w: bufio.NewWriterSize(stdin, 64<<10),
		pending: map[int64]*pendingReq{}, locks: map[string]int{}, exited: make(chan struct{}),
	}
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			s.logf('#', "python: %s", sc.Text())
		}
		_, _ = io.Copy(io.Discard, stderr)
	}()
	go func() {
		defer s.wg.Done()
		wk.readLoop(bufio.NewReaderSize(stdout, 64<<10))
	}()
	init, _ := json.Marshal(map[string]any{
		"config":  s.state.cfg.pythonView(),
		"check37": s.opts.check37,
		"reqdir":  filepath.Join(s.tmp, "requirements"),
		"shard":   zeroShard,
	})
	if err := wk.send(bulk("init"), bulkBytes(init)); err != nil {
		_ = killGroup(cmd)
		return nil, fmt.Errorf("%w: %v", ErrWorkerStart, err)
	}
	return wk, nil
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

// shutdownWorker stops the worker for good (Close).
func (s *Server) shutdownWorker() {
	s.wmu.Lock()
	wk := s.wk
	s.wmu.Unlock()
	if wk != nil {
		wk.stop()
	}
}

// stop ends the worker: EOF on its stdin, then SIGKILL if it does not exit promptly.
func (wk *workerProc) stop() {
	_ = wk.stdin.Close()
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
		return
	}
	s.logf('#', "gearstest: python worker exited (%v), restarting it", wk.cmd.ProcessState)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer close(ready)
		for attempt := 0; !s.closed.Load(); attempt++ {
			nw, err := s.spawnWorker()
			if err == nil {
				err = s.state.restore(nw, func(final func() error) error {
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
				})
				if err == nil {
					s.logf('*', "gearstest: python worker restarted, sessions restored")
					return
				}
				if errors.Is(err, errServerClosed) {
					// Close ran while we restored: it did not see this worker, so stop it here.
					nw.stop()
					return
				}
				_ = killGroup(nw.cmd)
			}
			s.logf('#', "gearstest: restarting python worker: %v", err)
			select {
			case <-s.stop:
				return
			case <-time.After(time.Duration(min(attempt+1, 10)) * 200 * time.Millisecond):
			}
		}
	}()
}

// send writes one protocol message.
func (wk *workerProc) send(args ...value) error {
	wk.wmu.Lock()
	defer wk.wmu.Unlock()
	buf := appendValue(make([]byte, 0, 128), value{Kind: kindArray, Arr: args}, false)
	if _, err := wk.w.Write(buf); err != nil {
		return err
	}
	return wk.w.Flush()
}

// sendRaw writes a pre-encoded message.
func (wk *workerProc) sendRaw(b []byte) error {
	wk.wmu.Lock()
	defer wk.wmu.Unlock()
	if _, err := wk.w.Write(b); err != nil {
		return err
	}
	return wk.w.Flush()
}

// request sends a message whose second element is a fresh rid and waits for its `done`.
// release, when set, is called when the request no longer needs the global lock (see pendingReq).
func (s *Server) request(name string, release func(), args ...value) (value, error) {
	wk, err := s.worker()
	if err != nil {
		return value{}, err
	}
	return wk.request(name, release, args...)
}

func (wk *workerProc) request(name string, release func(), args ...value) (value, error) {
	rid := wk.s.rid.Add(1)
	pr := &pendingReq{ch: make(chan value, 1), release: release}
	wk.mu.Lock()
	if wk.dead {
		wk.mu.Unlock()
		return value{}, errWorkerDied
	}
	wk.pending[rid] = pr
	wk.mu.Unlock()
	msg := append([]value{bulk(name), bulk(strconv.FormatInt(rid, 10))}, args...)
	if err := wk.send(msg...); err != nil {
		wk.mu.Lock()
		delete(wk.pending, rid)
		wk.mu.Unlock()
		return value{}, errWorkerDied
	}
	v := <-pr.ch
	if v.Kind == kindError {
		return value{}, errWorkerDied
	}
	return v, nil
}

// readLoop reads the worker's messages until EOF.
func (wk *workerProc) readLoop(r *bufio.Reader) {
	defer func() {
		_ = wk.cmd.Wait()
		wk.mu.Lock()
		wk.dead = true
		pending := wk.pending
		wk.pending = map[int64]*pendingReq{}
		locks := wk.locks
		wk.locks = map[string]int{}
		wk.mu.Unlock()
		for _, pr := range pending {
			if pr.release != nil {
				pr.release()
			}
			pr.ch <- errValue(errWorkerDied.Error())
		}
		for tok, n := range locks {
			// Only the levels the worker took: a sync execution's token is also held by its command.
			for ; n > 0; n-- {
				wk.s.lock.release(tok)
			}
		}
		close(wk.exited)
		wk.s.onWorkerExit(wk)
	}()
	for {
		v, err := readValue(r)
		if err != nil {
			if !errors.Is(err, io.EOF) && !wk.s.closed.Load() {
				wk.s.logf('#', "gearstest: reading from python worker: %v", err)
				_ = killGroup(wk.cmd)
			}
			return
		}
		if v.Kind != kindArray || len(v.Arr) == 0 {
			wk.s.logf('#', "gearstest: unexpected message from python worker")
			continue
		}
		wk.dispatch(v.Arr)
	}
}

func (wk *workerProc) dispatch(m []value) {
	s := wk.s
	defer func() {
		if r := recover(); r != nil {
			s.logf('#', "gearstest: bad message from python worker %q: %v", m[0].Str, r)
		}
	}()
	arg := func(i int) value {
		if i < len(m) {
			return m[i]
		}
		return nilValue()
	}
	switch string(m[0].Str) {
	case "done":
		rid, _ := strconv.ParseInt(arg(1).String(), 10, 64)
		wk.mu.Lock()
		pr := wk.pending[rid]
		delete(wk.pending, rid)
		wk.mu.Unlock()
		if pr != nil {
			// Hand the result over first, then release: the goroutine that the release wakes (the next
			// command waiting for the global lock) then is the one the scheduler runs next, ahead of the
			// requester's reply to its client, which is off that critical path. The requester releases
			// too (idempotently) before it replies, so the lock is always free before the reply leaves.
			pr.ch <- arg(2)
			if pr.release != nil {
				pr.release()
			}
		}
	case "yield":
		rid, _ := strconv.ParseInt(arg(1).String(), 10, 64)
		wk.mu.Lock()
		pr := wk.pending[rid]
		wk.mu.Unlock()
		if pr != nil && pr.release != nil {
			pr.release()
		}
	case "call":
		wk.handleCall(arg(1).Str, arg(2).String(), m[min(3, len(m)):])
	case "lock":
		cid, tok := arg(1).Str, lockToken(arg(2).String())
		grant := func() {
			wk.mu.Lock()
			if wk.dead {
				// The worker died while we waited: nobody will unlock.
				wk.mu.Unlock()
				s.lock.release(tok)
				return
			}
			wk.locks[tok]++
			wk.mu.Unlock()
			_ = wk.sendRaw(replyMsg(cid, 'v', []byte("+OK\r\n")))
		}
		if s.lock.tryAcquire(tok) {
			grant()
			return
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.lock.acquire(tok)
			grant()
		}()
	case "unlock":
		tok := lockToken(arg(1).String())
		wk.mu.Lock()
		if wk.locks[tok] > 0 {
			wk.locks[tok]--
			if wk.locks[tok] == 0 {
				delete(wk.locks, tok)
			}
		}
		wk.mu.Unlock()
		s.lock.release(tok)
	case "newid":
		id := s.state.newFEPID()
		_ = wk.send(bulk("reply"), arg(1), bulk("v"), bulk(id))
	case "newexec":
		id := s.state.newRunExecution(arg(2))
		_ = wk.send(bulk("reply"), arg(1), bulk("v"), bulk(id))
	case "execdone":
		s.state.runDone(arg(1).String(), arg(2).String(), arg(3), arg(4))
	case "hazard":
		wk.hazardMessage(arg(1).Str, arg(2).String(), arg(3).String())
	case "configget":
		v := s.state.cfg.getForPython(arg(2).String())
		_ = wk.send(bulk("reply"), arg(1), bulk("v"), v)
	case "log":
		level, msg := arg(1).String(), arg(2).String()
		c := byte('*')
		switch level {
		case "debug":
			c = '.'
		case "verbose":
			c = '-'
		case "warning":
			c = '#'
		}
		s.logf(c, "GEARS: %s", msg)
	default:
		s.logf('#', "gearstest: unknown message from python worker: %q", m[0].Str)
	}
}

// lockToken maps the empty token (code running outside an execution, e.g. a thread the script started)
// to one shared anonymous owner.
func lockToken(tok string) string {
	if tok == "" {
		return "~anon"
	}
	return tok
}

// replyMsg builds `reply <cid> <kind> <raw value>` with the value bytes spliced in as they are.
func replyMsg(cid []byte, kind byte, raw []byte) []byte {
	b := make([]byte, 0, 32+len(cid)+len(raw))
	b = append(b, "*4\r\n$5\r\nreply\r\n$"...)
	b = strconv.AppendInt(b, int64(len(cid)), 10)
	b = append(b, '\r', '\n')
	b = append(b, cid...)
	b = append(b, "\r\n$1\r\n"...)
	b = append(b, kind)
	b = append(b, '\r', '\n')
	return append(b, raw...)
}

// handleCall runs execute() for Python. It is done inline on the reader goroutine when the lock can be
// had without waiting (the common case, and always for sync executions that already own it), else on
// a goroutine, so that the reader never waits for a lock whose owner waits for a message.
func (wk *workerProc) handleCall(cid []byte, token string, args []value) {
	s := wk.s
	tok := lockToken(token)
	if len(args) == 0 {
		_ = wk.sendRaw(replyMsg(cid, 'v', []byte("*0\r\n")))
		return
	}
	cargs := make([][]byte, len(args))
	for i, a := range args {
		cargs[i] = a.Str
		if a.Kind == kindInt {
			cargs[i] = []byte(a.String())
		}
	}
	if s.lock.tryAcquire(tok) {
		wk.doCall(cid, cargs)
		s.lock.release(tok)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.lock.acquire(tok)
		wk.doCall(cid, cargs)
		s.lock.release(tok)
	}()
}

// stateChanging are commands that change a connection's state; a pooled connection that ran one is
// not reused.
var stateChanging = map[string]bool{
	"SELECT": true, "MULTI": true, "WATCH": true, "SUBSCRIBE": true, "PSUBSCRIBE": true, "SSUBSCRIBE": true,
	"HELLO": true, "CLIENT": true, "MONITOR": true, "RESET": true, "AUTH": true, "QUIT": true,
}

func (wk *workerProc) doCall(cid []byte, args [][]byte) {
	s := wk.s
	name := strings.ToUpper(string(args[0]))
	if h, ok := rgCommands[name]; ok {
		wk.doRGCall(cid, name, h, args)
		return
	}
	var sc *storeConn
	do := s.st.direct
	if s.st.mini == nil {
		var err error
		if sc, err = s.st.get(); err != nil {
			_ = wk.sendRaw(replyMsg(cid, 'e', encBulk(msgStoreUnavailable+err.Error()+"\r\n")))
			return
		}
		do = sc.do
	}
	raw, err := runNonBlocking(do, args)
	if err != nil {
		if sc != nil {
			sc.close()
		}
		_ = wk.sendRaw(replyMsg(cid, 'e', encBulk(msgStoreFailed+err.Error()+"\r\n")))
		return
	}
	var msg []byte
	switch {
	case len(raw) > 0 && raw[0] == '-':
		msg = replyMsg(cid, 'e', encBulk(pythonCallError(string(raw[1:len(raw)-2]))))
	case len(raw) >= 5 && string(raw[:5]) == "*-1\r\n":
		msg = replyMsg(cid, 'v', []byte("$-1\r\n"))
	default:
		msg = replyMsg(cid, 'v', raw)
	}
	if sc != nil {
		if stateChanging[name] {
			sc.close()
		} else {
			s.st.put(sc)
		}
	}
	_ = wk.sendRaw(msg)
}

// doRGCall answers execute('RG.…') from a gear function. RedisModule_Call reaches module commands too,
// so a function may read RG.CONFIGGET or RG.DUMPREGISTRATIONS; it runs under the global lock the caller
// already holds. The commands that wait for executions or for the worker (RG.PYEXECUTE, RG.TRIGGER, …)
// would wait on the very worker thread that asks, so they are refused with a clear error instead.
func (wk *workerProc) doRGCall(cid []byte, name string, h *rgCommand, args [][]byte) {
	if !h.checkArity(len(args)) {
		_ = wk.sendRaw(replyMsg(cid, 'e', encBulk(msgInvalidArgRPC)))
		return
	}
	if h.ownLocking {
		_ = wk.sendRaw(replyMsg(cid, 'e', encBulk("ERR gearstest: "+name+" can not be called with execute() from a gear function\r\n")))
		return
	}
	v := h.fn(wk.s, &client{}, args) // a RESP2 caller; the lock is the one the gear already holds
	raw := appendValue(nil, v, false)
	if len(raw) > 0 && raw[0] == '-' {
		_ = wk.sendRaw(replyMsg(cid, 'e', encBulk(string(raw[1:len(raw)-2])+"\r\n")))
		return
	}
	_ = wk.sendRaw(replyMsg(cid, 'v', raw))
}

func isNilReply(raw []byte) bool {
	if len(raw) >= 3 && raw[0] == '_' {
		return true // RESP3 null
	}
	return len(raw) >= 3 && (raw[0] == '$' || raw[0] == '*') && raw[1] == '-' && raw[2] == '1'
}

func encBulk(s string) []byte { return appendValue(nil, bulk(s), false) }

// pythonCallError maps a data store error to the text a real RedisGears 1.2 raises in Python: RM_Call
// reports unknown commands and wrong arity through errno, everything else keeps its trailing CRLF
// (gears-spec.md §8).
func pythonCallError(text string) string {
	switch {
	case strings.HasPrefix(text, "ERR unknown command"):
		return "No such file or directory"
	case strings.HasPrefix(text, "ERR wrong number of arguments"):
		return "Invalid argument"
	}
	return text + "\r\n"
}

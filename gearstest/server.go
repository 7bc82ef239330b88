package gearstest

import (
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tidwall/redcon"
)

// Option configures a Server.
type Option func(*options)

type options struct {
	addr     string
	python   string
	redisURL string
	logw     io.Writer
	logger   *log.Logger
	check37  bool

	storeTimeout time.Duration // WithStoreTimeout

	allowHazards bool // AllowHazards: Run does not fail the test on hazards

	noWarm bool // WithoutWarmWorker

	shard *clusterShard // StartCluster: this server is a shard of a cluster (cluster.go)
}

// WithAddr sets the address to listen on (default "127.0.0.1:0", a free loopback port).
func WithAddr(addr string) Option { return func(o *options) { o.addr = addr } }

// WithPython sets the Python interpreter that runs the worker (default: $GEARS_PYTHON, else python3).
func WithPython(path string) Option { return func(o *options) { o.python = path } }

// WithRedis makes every data command, including execute() inside gear functions, go to an external
// Redis at url ("redis://127.0.0.1:6379") instead of the in-process store.
func WithRedis(url string) Option { return func(o *options) { o.redisURL = url } }

// WithLogger sends the server log (worker stderr, log() output, errors) to l, which is a *log.Logger or
// an io.Writer; nil discards it.
func WithLogger(l any) Option {
	return func(o *options) {
		o.logw, o.logger = nil, nil
		switch v := l.(type) {
		case *log.Logger:
			o.logger = v
		case io.Writer:
			o.logw = v
		case nil:
			o.logw = io.Discard
		}
	}
}

// WithStoreTimeout bounds the wait for each reply of the data store (default 30 s; 0: no bound). A
// command that waits for its reply holds the server's global lock, as a command holds Redis' main
// thread, so a hung external Redis (WithRedis) stalls every client for at most d; the command then
// fails with "ERR gearstest: data store: … i/o timeout". Blocking commands (BLPOP …) are not bounded.
// Close never waits for the store.
func WithStoreTimeout(d time.Duration) Option { return func(o *options) { o.storeTimeout = d } }

// WithoutPython37Check accepts scripts that are not valid Python 3.7 syntax (RedisGears 1.2 runs 3.7,
// so by default gearstest rejects them as the real server would).
func WithoutPython37Check() Option { return func(o *options) { o.check37 = false } }

// WithoutWarmWorker makes Start start a Python worker of its own instead of taking the process' warm
// spare, and start no spare for later Starts (as GEARS_WARM=0 does for every Start). Start then costs
// an interpreter start-up (~150 ms instead of a few ms); see the Performance section of the README.
func WithoutWarmWorker() Option { return func(o *options) { o.noWarm = true } }

// Server is a running gearstest server.
type Server struct {
	opts   options
	logMu  sync.Mutex
	closed atomic.Bool

	data *store // the data store (store.go); not to be confused with state, the RedisGears bookkeeping
	lock *globalLock
	lane syncLane // sync RG.TRIGGERs in a row under one hold of lock (lane.go)
	ln   net.Listener
	rc   *redcon.Server
	tmp  string // worker files and the requirements directory

	state *state

	// worker management
	wmu     sync.Mutex
	wk      *workerProc              // current worker; nil while (re)starting
	wkReady chan struct{}            // closed when wk is usable again
	procs   map[*workerProc]struct{} // every worker process alive, current or being restored
	rid     atomic.Int64             // request ids sent to the worker
	nextCid atomic.Int64             // client connection ids

	bridges  bridges      // Pub/Sub connections, detached from the command loop
	commands commandTable // COMMAND replies for the in-process store

	hz hazards  // hazards that happened (hazards.go)
	ev eventHub // keyspace events of KeysReader/StreamReader registrations (events.go)

	shard *clusterShard // nil for a stand-alone server; set for a shard of a Cluster (cluster.go)

	wg   sync.WaitGroup // every goroutine the server owns
	stop chan struct{}  // closed by Close
}

// ErrNoPython is returned by Start when no Python interpreter can be found.
var ErrNoPython = errors.New("gearstest: no python3 interpreter (set GEARS_PYTHON or use WithPython)")

// Start starts a server. The caller must Close it.
func Start(opts ...Option) (*Server, error) {
	o := options{addr: "127.0.0.1:0", check37: true, logw: os.Stderr, storeTimeout: defaultStoreTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	if o.python == "" {
		o.python = os.Getenv("GEARS_PYTHON")
	}
	if o.python == "" {
		o.python = "python3"
	}
	s := &Server{opts: o, lock: newGlobalLock(), stop: make(chan struct{}), procs: map[*workerProc]struct{}{}, shard: o.shard}
	s.state = newState(s)
	var err error
	var sp *spare // a warm worker (warm.go): its directory becomes the server's
	if warmEnabled(&o) {
		if py, lerr := exec.LookPath(o.python); lerr == nil {
			sp = takeSpare(py)
		}
	}
	if sp != nil {
		s.tmp = sp.tmp
	} else if s.tmp, err = os.MkdirTemp("", "gearstest-"); err != nil {
		return nil, fmt.Errorf("gearstest: %w", err)
	}
	if s.data, err = newStore(o.redisURL, o.storeTimeout); err != nil {
		if sp != nil {
			sp.discard()
		}
		_ = os.RemoveAll(s.tmp)
		return nil, err
	}
	if err = s.startWorker(sp); err != nil {
		s.wg.Wait() // the dead worker's reader goroutines
		s.data.close()
		_ = os.RemoveAll(s.tmp)
		return nil, err
	}
	s.ln, err = net.Listen("tcp", o.addr)
	if err != nil {
		s.closed.Store(true)
		s.stopWorkers()
		s.wg.Wait()
		s.data.close()
		_ = os.RemoveAll(s.tmp)
		return nil, fmt.Errorf("gearstest: listen %s: %w", o.addr, err)
	}
	s.rc = redcon.NewServer(o.addr, s.serveCommand, s.accept, s.closedConn)
	s.startNotify() // keyspace notifications of an external Redis (notify.go)
	guarded := &guardListener{Listener: s.ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		_ = s.rc.Serve(guarded)
	}()
	s.logf('*', "gearstest ready to accept connections on %s (data store %s)", s.ln.Addr(), s.storeName())
	return s, nil
}

func (s *Server) storeName() string {
	if s.data.mini != nil {
		return "in-process"
	}
	return s.data.addr
}

// Run starts a server for a test and stops it when the test ends. The test fails when a hazard
// happened on the server meanwhile (an action that crashes or hangs a real RedisGears 1.2.13, see
// Hazards), unless the server was started with AllowHazards.
func Run(t testing.TB, opts ...Option) *Server {
	t.Helper()
	tl := &testLog{t: t}
	opts = append([]Option{WithLogger(tl)}, opts...)
	s, err := Start(opts...)
	if err != nil {
		t.Fatalf("gearstest: %v", err)
	}
	t.Cleanup(func() {
		_ = s.Close()
		tl.mu.Lock()
		tl.done = true
		tl.mu.Unlock()
		reportHazards(t, s)
	})
	return s
}

// testLog writes the server log to t.Log until the test is over.
type testLog struct {
	t    testing.TB
	mu   sync.Mutex
	done bool
}

func (l *testLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.done {
		l.t.Log(string(trimNL(p)))
	}
	return len(p), nil
}

func trimNL(p []byte) []byte {
	for len(p) > 0 && (p[len(p)-1] == '\n' || p[len(p)-1] == '\r') {
		p = p[:len(p)-1]
	}
	return p
}

// Addr returns the address clients connect to ("127.0.0.1:PORT").
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server: the listener, every client connection, the worker and the data store.
func (s *Server) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(s.stop)
	// redcon's Close does nothing ("not serving") when its Serve goroutine has not started yet, which
	// left that Serve accepting forever and Close waiting for it. Closing our listener ends a Serve
	// that is running and one that starts later (its Accept fails with net.ErrClosed).
	_ = s.rc.Close()
	err := s.ln.Close()
	s.bridges.closeAll()
	s.data.interrupt() // commands waiting for a hung store fail now and release the global lock
	s.stopWorkers()
	s.state.abortAll()
	s.wg.Wait()
	s.data.close()
	_ = os.RemoveAll(s.tmp)
	if errors.Is(err, net.ErrClosed) {
		err = nil
	}
	return err
}

// KillWorker kills the Python worker (and what it started) with SIGKILL, as a crash would; the server restarts it and
// restores the registered sessions. It is meant for fault-injection tests.
func (s *Server) KillWorker() error {
	s.wmu.Lock()
	wk := s.wk
	s.wmu.Unlock()
	if wk == nil {
		return errors.New("gearstest: no worker running")
	}
	return killGroup(wk.cmd)
}

// logf writes one line in Redis' log style: "<pid>:M 28 Nov 2026 18:00:00.000 * <msg>".
func (s *Server) logf(level byte, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	if s.opts.logger != nil {
		s.opts.logger.Print(msg)
		return
	}
	if s.opts.logw == nil {
		return
	}
	line := fmt.Sprintf("%d:M %s %c %s\n", os.Getpid(), time.Now().Format("02 Jan 2006 15:04:05.000"), level, msg)
	s.logMu.Lock()
	_, _ = io.WriteString(s.opts.logw, line)
	s.logMu.Unlock()
}

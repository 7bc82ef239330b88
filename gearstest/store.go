package gearstest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/alicebob/miniredis/v2/server"
)

// store is the data store every non-RG command goes to: an in-process miniredis, or an external Redis.
// Each client connection gets its own store connection (so SELECT, WATCH, MULTI and RESP3 stay per
// client); Python execute() calls share a pool of RESP2 connections on DB 0.
type store struct {
	addr     string
	user     string
	password string
	mini     *miniredis.Miniredis // nil for an external Redis
	pool     chan *storeConn
	timeout  time.Duration // deadline of one command's reply (WithStoreTimeout); blocking ones have none

	mu     sync.Mutex // guards conns and closed
	conns  map[*storeConn]struct{}
	closed bool // interrupt ran: every connection is closed and dial fails

	cmdOnce  sync.Once
	commands map[string]bool // lower-cased command names of an external Redis

	stopClock chan struct{} // closed by close; ends runClock (in-process store only)
	clockDone chan struct{} // closed when runClock has returned

	tick atomic.Pointer[func(advance func())] // wraps each clock advance: expired events (events.go)

	mem memLimit // maxmemory and its evictions (in-process store only: evict.go)
}

// clockTick is how often the in-process store's clock advances. miniredis only counts TTLs down when
// told to (FastForward), so without this nothing would ever expire; 20 ms keeps expiry within a tick
// of real time, as Redis' own active expiry is (it runs 10 times a second).
const clockTick = 20 * time.Millisecond

// runClock advances miniredis' clock with the wall clock until stopClock is closed, so keys expire
// in real time as they do on a real Redis.
func (s *store) runClock() {
	defer close(s.clockDone)
	t := time.NewTicker(clockTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-s.stopClock:
			return
		case now := <-t.C:
			s.mini.SetTime(now)
			d := now.Sub(last)
			if h := s.tick.Load(); h != nil {
				(*h)(func() { s.mini.FastForward(d) })
			} else {
				s.mini.FastForward(d)
			}
			last = now
		}
	}
}

// storeConn is one connection to the data store. It is used by one goroutine at a time.
type storeConn struct {
	st  *store
	c   net.Conn
	r   *bufio.Reader
	buf []byte
}

// ErrBadRedisURL is returned by Start when WithRedis was given something that is not a redis:// URL.
var ErrBadRedisURL = errors.New("gearstest: redis URL must look like redis://[user:password@]host:port")

// defaultStoreTimeout bounds the wait for one reply of the data store (WithStoreTimeout). Client
// commands hold the global lock while they wait, so a store that hangs stalls every client for at
// most this long; Close does not wait for it (store.interrupt).
const defaultStoreTimeout = 30 * time.Second

func newStore(redisURL string, timeout time.Duration) (*store, error) {
	s := &store{pool: make(chan *storeConn, 128), timeout: timeout, conns: map[*storeConn]struct{}{}}
	if redisURL == "" {
		m := miniredis.NewMiniRedis()
		if err := m.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("gearstest: starting miniredis: %w", err)
		}
		s.mini = m
		s.addr = m.Addr()
		m.SetTime(time.Now())
		s.stopClock = make(chan struct{})
		s.clockDone = make(chan struct{})
		go s.runClock()
		return s, nil
	}
	addr := redisURL
	if strings.Contains(redisURL, "://") {
		u, err := url.Parse(redisURL)
		if err != nil || (u.Scheme != "redis" && u.Scheme != "tcp") || u.Host == "" {
			return nil, fmt.Errorf("%w: %q", ErrBadRedisURL, redisURL)
		}
		addr = u.Host
		if u.User != nil {
			s.user = u.User.Username()
			s.password, _ = u.User.Password()
		}
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("%w: %q", ErrBadRedisURL, redisURL)
	}
	s.addr = addr
	sc, err := s.dial()
	if err != nil {
		return nil, fmt.Errorf("gearstest: connecting to %s: %w", addr, err)
	}
	s.put(sc)
	return s, nil
}

// interrupt closes every connection to the data store, which ends any command waiting for a reply
// (with an error), and makes later dials fail. Close calls it first, so that nothing it waits for
// is stuck on a hung store.
func (s *store) interrupt() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = map[*storeConn]struct{}{}
	s.mu.Unlock()
	for sc := range conns {
		_ = sc.c.Close()
	}
}

// close interrupts everything and stops the in-process store.
func (s *store) close() {
	s.interrupt()
	if s.mini != nil {
		close(s.stopClock)
		<-s.clockDone
		s.mini.Close()
	}
}

func (s *store) dial() (*storeConn, error) {
	c, err := net.DialTimeout("tcp", s.addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	sc := &storeConn{st: s, c: c, r: bufio.NewReaderSize(c, 16<<10)}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = c.Close()
		return nil, errServerClosed
	}
	s.conns[sc] = struct{}{}
	s.mu.Unlock()
	if s.password != "" {
		args := [][]byte{[]byte("AUTH")}
		if s.user != "" {
			args = append(args, []byte(s.user))
		}
		args = append(args, []byte(s.password))
		raw, err := sc.do(args...)
		if err != nil {
			sc.close()
			return nil, err
		}
		if len(raw) > 0 && raw[0] == '-' {
			sc.close()
			return nil, fmt.Errorf("gearstest: AUTH failed: %s", bytes.TrimSpace(raw[1:]))
		}
	}
	return sc, nil
}

// get returns an idle pooled connection or dials a new one.
func (s *store) get() (*storeConn, error) {
	select {
	case sc := <-s.pool:
		return sc, nil
	default:
		return s.dial()
	}
}

// put returns a healthy connection to the pool.
func (s *store) put(sc *storeConn) {
	select {
	case s.pool <- sc:
	default:
		sc.close()
	}
}

func (sc *storeConn) close() {
	sc.st.mu.Lock()
	delete(sc.st.conns, sc)
	sc.st.mu.Unlock()
	_ = sc.c.Close()
}

// arm sets the deadline of what is sent and read next on sc: the store's timeout (with bounded
// set) or none (a blocking command, a Pub/Sub bridge, which Close ends by closing sc).
func (sc *storeConn) arm(bounded bool) {
	var d time.Time
	if bounded && sc.st.timeout > 0 {
		d = time.Now().Add(sc.st.timeout)
	}
	_ = sc.c.SetDeadline(d)
}

// do sends one command and returns the raw bytes of its reply, which must come within the store's
// timeout. The returned slice is only valid until the next call on sc.
func (sc *storeConn) do(args ...[]byte) ([]byte, error) {
	sc.arm(true)
	return sc.roundTrip(args)
}

// doBlocking is do for a command that may block (BLPOP 0): no deadline.
func (sc *storeConn) doBlocking(args ...[]byte) ([]byte, error) {
	sc.arm(false)
	return sc.roundTrip(args)
}

func (sc *storeConn) roundTrip(args [][]byte) ([]byte, error) {
	sc.buf = appendCommand(sc.buf[:0], args...)
	if _, err := sc.c.Write(sc.buf); err != nil {
		return nil, err
	}
	return sc.readReply()
}

func (sc *storeConn) readReply() ([]byte, error) {
	out, err := readRaw(sc.r, sc.buf[:0])
	sc.buf = out
	return out, err
}

// blockingCommands are the commands that may block; a client running one must not hold the global lock.
var blockingCommands = map[string]bool{
	"BLPOP": true, "BRPOP": true, "BRPOPLPUSH": true, "BLMOVE": true, "BZPOPMIN": true, "BZPOPMAX": true,
	"BLMPOP": true, "BZMPOP": true, "WAIT": true, "WAITAOF": true,
}

// mayBlock reports whether the command (upper-cased name) can block the connection that sends it.
func mayBlock(name string, args [][]byte) bool {
	if blockingCommands[name] {
		return true
	}
	if name == "XREAD" || name == "XREADGROUP" {
		for _, a := range args[1:] {
			if strings.EqualFold(string(a), "BLOCK") {
				return true
			}
		}
	}
	return false
}

// nonBlocking rewrites a blocking command for execute(): inside a real gear function blocking commands
// return at once with "no data" (RedisGears runs them with blocking disallowed). It returns the commands
// to try in order (the first non-nil reply wins) or a fixed reply.
func nonBlocking(name string, args [][]byte) (tries [][][]byte, fixed []byte) {
	b := func(s string) []byte { return []byte(s) }
	switch name {
	case "BLPOP", "BRPOP":
		if len(args) < 3 {
			return nil, nil
		}
		pop := b(name[1:])
		for _, k := range args[1 : len(args)-1] {
			tries = append(tries, [][]byte{b("EVAL"), b(popWithKey), b("1"), k, pop})
		}
		return tries, nil
	case "BZPOPMIN", "BZPOPMAX":
		if len(args) < 3 {
			return nil, nil
		}
		pop := b(name[1:])
		for _, k := range args[1 : len(args)-1] {
			tries = append(tries, [][]byte{b("EVAL"), b(zpopWithKey), b("1"), k, pop})
		}
		return tries, nil
	case "BRPOPLPUSH":
		if len(args) != 4 {
			return nil, nil
		}
		return [][][]byte{{b("RPOPLPUSH"), args[1], args[2]}}, nil
	case "BLMOVE":
		if len(args) != 6 {
			return nil, nil
		}
		return [][][]byte{{b("LMOVE"), args[1], args[2], args[3], args[4]}}, nil
	case "BLMPOP", "BZMPOP":
		if len(args) < 3 {
			return nil, nil
		}
		cmd := append([][]byte{b(name[1:])}, args[2:]...)
		return [][][]byte{cmd}, nil
	case "XREAD", "XREADGROUP":
		var cmd [][]byte
		for i := 0; i < len(args); i++ {
			if i > 0 && strings.EqualFold(string(args[i]), "BLOCK") && i+1 < len(args) {
				i++
				continue
			}
			cmd = append(cmd, args[i])
		}
		return [][][]byte{cmd}, nil
	case "WAIT", "WAITAOF":
		return nil, []byte(":0\r\n")
	}
	return nil, nil
}

// Lua helpers used to emulate BLPOP/BZPOPMIN's reply shape ([key, value...]) without blocking.
const (
	popWithKey  = "local v = redis.call(ARGV[1], KEYS[1]) if v then return {KEYS[1], v} end return false"
	zpopWithKey = "local v = redis.call(ARGV[1], KEYS[1]) if #v > 0 then return {KEYS[1], v[1], v[2]} end return false"
)

// directPeer is a reusable in-process miniredis client for execute() calls.
type directPeer struct {
	buf  bytes.Buffer
	w    *bufio.Writer
	args []string
}

var directPeers = sync.Pool{New: func() any {
	p := &directPeer{}
	p.w = bufio.NewWriterSize(&p.buf, 4096)
	return p
}}

// direct runs one command on the in-process miniredis without a network round trip (the hot path of
// execute()). Every call gets a fresh connection state on DB 0, as RedisGears' execute() has.
// The returned bytes are the reply in RESP2.
func (s *store) direct(args ...[]byte) ([]byte, error) { return s.directProto(false, args...) }

// directProto is direct with the reply in RESP3 when resp3 is set (a client command on the direct
// path, conn.go directCommands).
func (s *store) directProto(resp3 bool, args ...[]byte) ([]byte, error) {
	p := directPeers.Get().(*directPeer)
	p.buf.Reset()
	p.w.Reset(&p.buf)
	p.args = p.args[:0]
	for _, a := range args {
		p.args = append(p.args, string(a))
	}
	peer := server.NewPeer(p.w)
	peer.Resp3 = resp3
	s.mini.Server().Dispatch(peer, p.args)
	_ = p.w.Flush()
	out := append([]byte(nil), p.buf.Bytes()...)
	directPeers.Put(p)
	if len(out) == 0 {
		return nil, errors.New("no reply")
	}
	return out, nil
}

// knownCommand reports whether the data store knows the command (upper-cased), for MULTI's queue-time
// check.
func (s *store) knownCommand(name string) bool {
	if s.mini != nil {
		return s.mini.Server().IsRegisteredCommand(name)
	}
	s.cmdOnce.Do(s.loadCommands)
	if s.commands == nil {
		return true
	}
	return s.commands[strings.ToLower(name)]
}

// loadCommands reads the command table of an external Redis.
func (s *store) loadCommands() {
	sc, err := s.dial()
	if err != nil {
		return
	}
	defer sc.close()
	raw, err := sc.do([]byte("COMMAND"))
	if err != nil {
		return
	}
	v, err := readValue(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil || v.Kind != kindArray {
		return
	}
	m := map[string]bool{}
	for _, e := range v.Arr {
		if len(e.Arr) > 0 {
			m[strings.ToLower(e.Arr[0].String())] = true
		}
	}
	s.commands = m
}

// runNonBlocking runs a command with do, in its non-blocking form when it is a blocking command (inside
// a gear function or a transaction, where Redis does not block).
func runNonBlocking(do func(...[]byte) ([]byte, error), args [][]byte) ([]byte, error) {
	tries, fixed := nonBlocking(strings.ToUpper(string(args[0])), args)
	switch {
	case fixed != nil:
		return fixed, nil
	case tries != nil:
		var raw []byte
		var err error
		for _, t := range tries {
			raw, err = do(t...)
			if err != nil || !isNilReply(raw) {
				break
			}
		}
		return raw, err
	}
	return do(args...)
}

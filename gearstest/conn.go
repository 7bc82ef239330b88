package gearstest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/tidwall/redcon"
)

// client is the per-connection state.
type client struct {
	id    int64
	token string // global lock owner token of this connection
	resp3 bool
	be    *storeConn // this client's own data store connection, dialed on first use

	inMulti  bool
	inExec   bool       // running the queue of EXEC
	multiErr bool       // a queue-time error: EXEC answers EXECABORT
	txQueue  [][][]byte // commands queued by MULTI
	rgQueue  []int      // the positions of the RG commands among them

	out []byte // scratch buffer for encoding replies
}

func (s *Server) accept(conn redcon.Conn) bool {
	if s.closed.Load() {
		return false
	}
	id := s.nextCid.Add(1)
	conn.SetContext(&client{id: id, token: "c" + strconv.FormatInt(id, 10)})
	return true
}

func (s *Server) closedConn(conn redcon.Conn, err error) {
	if c, ok := conn.Context().(*client); ok && c.be != nil {
		c.be.close()
		c.be = nil
	}
}

func (c *client) write(conn redcon.Conn, v value) {
	c.out = appendValue(c.out[:0], v, c.resp3)
	conn.WriteRaw(c.out)
}

func (s *Server) backend(c *client) (*storeConn, error) {
	if c.be != nil {
		return c.be, nil
	}
	be, err := s.data.dial()
	if err != nil {
		return nil, err
	}
	if c.resp3 {
		// The client switched with a plain HELLO 3 while it had no store connection (hello): the
		// new one must speak RESP3 too, since its replies are relayed as they are.
		raw, err := be.do([]byte("HELLO"), []byte("3"))
		if err == nil && (len(raw) == 0 || raw[0] == '-') {
			err = fmt.Errorf("HELLO 3: %q", raw)
		}
		if err != nil {
			be.close()
			return nil, err
		}
	}
	c.be = be
	return be, nil
}

// serveCommand handles one client command. Nothing a client sends may crash the server: a panic is
// logged and answered with an error. Long: one switch over the commands gearstest answers itself
// (MULTI/EXEC, PING, HELLO, INFO, …), each case a few lines; the rest goes to the data store.
func (s *Server) serveCommand(conn redcon.Conn, cmd redcon.Command) {
	c, _ := conn.Context().(*client)
	if c == nil {
		conn.Close()
		return
	}
	defer func() {
		if r := recover(); r != nil {
			s.logf('#', "gearstest: panic handling %q: %v\n%s", cmd.Args[0], r, debug.Stack())
			conn.WriteError(fmt.Sprintf("ERR gearstest internal error: %v", r))
		}
	}()
	if len(cmd.Args) == 0 {
		return
	}
	name := strings.ToUpper(string(cmd.Args[0]))
	if s.shard != nil && s.clusterRoute(conn, c, name, cmd.Args) { // CLUSTER, MOVED, CROSSSLOT (cluster_cmds.go)
		return
	}
	if c.inMulti {
		switch name {
		case "EXEC", "DISCARD", "MULTI", "WATCH", "QUIT", "RESET":
		default:
			s.queueCommand(conn, c, name, cmd.Args)
			return
		}
	}
	if h, ok := rgCommands[name]; ok {
		if !h.checkArity(len(cmd.Args)) {
			conn.WriteError(msgWrongArity(strings.ToLower(name)))
			return
		}
		c.write(conn, s.runRG(c, h, cmd.Args))
		return
	}
	switch name {
	case "QUIT":
		conn.WriteString("OK")
		conn.Close()
		return
	case "EXEC":
		if c.inMulti {
			s.exec(conn, c)
			return
		}
	case "DISCARD":
		if c.inMulti {
			c.resetMulti()
			s.forward(conn, c, "UNWATCH", [][]byte{[]byte("UNWATCH")})
			return
		}
	case "MULTI":
		if c.inMulti {
			conn.WriteError(msgMultiNested)
			return
		}
		if len(cmd.Args) != 1 {
			conn.WriteError(msgWrongArity("multi"))
			return
		}
		c.inMulti = true
		conn.WriteString("OK")
		return
	case "WATCH":
		if c.inMulti {
			conn.WriteError(msgWatchInMulti)
			return
		}
	case "CLIENT":
		if len(cmd.Args) >= 2 && s.data.mini != nil {
			switch strings.ToUpper(string(cmd.Args[1])) {
			case "SETINFO":
				// miniredis lacks it; go-redis sends it in its handshake.
				if len(cmd.Args) != 4 {
					conn.WriteError(msgWrongArity("client|setinfo"))
				} else {
					conn.WriteString("OK")
				}
				return
			case "ID":
				conn.WriteInt64(c.id)
				return
			}
		}
	case "PING":
		// Answered here (under the lock, as Redis' main thread answers it), without a store round trip.
		switch len(cmd.Args) {
		case 1:
			s.lock.acquire(c.token)
			s.lock.release(c.token)
			conn.WriteString("PONG")
		case 2:
			s.lock.acquire(c.token)
			s.lock.release(c.token)
			conn.WriteBulk(cmd.Args[1])
		default:
			conn.WriteError(msgWrongArity("ping"))
		}
		return
	case "COMMAND":
		if s.data.mini != nil {
			s.command(conn, c, cmd.Args)
			return
		}
	case "INFO":
		if len(cmd.Args) == 2 && strings.EqualFold(string(cmd.Args[1]), "gearstest") {
			c.write(conn, bulk(s.gearstestInfo())) // with either store
			return
		}
		if s.data.mini != nil {
			s.info(conn, c, cmd.Args)
			return
		}
	case "SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE":
		s.startBridge(conn, c, cmd.Args)
		return
	case "CONFIG":
		if s.data.mini != nil && len(cmd.Args) >= 3 && strings.EqualFold(string(cmd.Args[1]), "GET") {
			// miniredis has no CONFIG; clients such as redis-benchmark read a few settings at start.
			c.write(conn, s.storeConfigGet(cmd.Args[2:]))
			return
		}
		if s.data.mini != nil && len(cmd.Args) >= 2 && strings.EqualFold(string(cmd.Args[1]), "SET") {
			c.write(conn, s.configSetStore(cmd.Args)) // maxmemory (evict.go)
			return
		}
	case "HELLO":
		s.hello(conn, c, cmd.Args)
		return
	}
	if s.data.mini != nil && !s.data.knownCommand(name) {
		// miniredis words this error differently from Redis.
		conn.WriteError(unknownCommand(cmd.Args))
		return
	}
	if s.runHook(conn, c, cmd.Args) { // CommandReader hook= (hooks.go)
		return
	}
	s.forward(conn, c, name, cmd.Args)
	if name == "RESET" {
		c.resetMulti()
		c.resp3 = false
	}
}

// forward sends a data command to this client's store connection and relays the reply byte for byte.
// Blocking commands run without the global lock so that they do not stall everybody else.
func (s *Server) forward(conn redcon.Conn, c *client, name string, args [][]byte) []byte {
	if c.be == nil && s.data.mini != nil && directCommands[name] {
		raw := s.storeDirect(conn, c, args)
		if raw != nil {
			conn.WriteRaw(raw)
		}
		return raw
	}
	raw, ok := s.storeDo(conn, c, args, !mayBlock(name, args))
	if ok {
		conn.WriteRaw(raw)
	}
	return raw
}

// storeDo runs one command on this client's store connection, under the global lock when locked is
// set, and returns its raw reply. When the store cannot be reached it writes the error to the client,
// drops the broken connection and returns ok false.
func (s *Server) storeDo(conn redcon.Conn, c *client, args [][]byte, locked bool) (raw []byte, ok bool) {
	be, err := s.backend(c)
	if err != nil {
		conn.WriteError(msgStoreUnavailable + err.Error())
		return nil, false
	}
	if locked {
		var oom bool
		if raw, oom, err = s.lockedStoreCall(c, args, be.do); oom {
			conn.WriteError(msgOOM)
			return nil, false
		}
	} else {
		if s.data.mem.limited() { // maxmemory (evict.go)
			s.lock.acquire(c.token)
			oom := s.checkMemoryFor(c.token, args)
			s.lock.release(c.token)
			if oom {
				conn.WriteError(msgOOM)
				return nil, false
			}
		}
		raw, err = be.doBlocking(args...)
		if err == nil {
			s.afterBlockingWrite(c.token, args, raw) // keyspace events (events.go)
		}
	}
	if err != nil {
		be.close()
		c.be = nil
		conn.WriteError(msgStoreFailed + err.Error())
		return nil, false
	}
	return raw, true
}

// directCommands are the data commands a client may run on the in-process store without its own
// store connection (store.directProto: miniredis' dispatcher called in process, a fresh DB 0 state in
// the client's protocol per command) while it has none: then its connection would be a fresh one on
// DB 0 in that protocol, whose state none of these commands reads or changes (no SELECT, WATCH,
// HELLO with options, CLIENT, blocking, Pub/Sub, transactions: those dial the connection, and every
// later command of the client uses it). It saves a loopback round trip to miniredis per command (GET
// is the hot path of every benchmark). The set is kept to plain key reads and writes on purpose
// (assumed: nothing else is as common, and these are the ones whose miniredis implementation depends
// on nothing but the DB and the keys).
var directCommands = func() map[string]bool {
	m := map[string]bool{}
	for _, n := range strings.Fields(`GET SET SETNX SETEX PSETEX GETSET GETDEL MGET MSET MSETNX INCR INCRBY
		DECR DECRBY INCRBYFLOAT APPEND STRLEN GETRANGE SETRANGE DEL UNLINK EXISTS EXPIRE PEXPIRE TTL PTTL
		PERSIST TYPE HGET HSET HSETNX HMGET HMSET HGETALL HDEL HEXISTS HINCRBY HLEN HKEYS HVALS LPUSH RPUSH
		LPOP RPOP LLEN LRANGE LINDEX SADD SREM SMEMBERS SISMEMBER SCARD ZADD ZREM ZSCORE ZCARD ZRANGE ZINCRBY`) {
		m[n] = true
	}
	return m
}()

// storeDirect runs one of directCommands for a client without a store connection, under the global
// lock with the keyspace-event bookkeeping storeDo does, and returns the reply, or nil after writing
// an error to the client.
func (s *Server) storeDirect(conn redcon.Conn, c *client, args [][]byte) []byte {
	raw, oom, err := s.lockedStoreCall(c, args, func(args ...[]byte) ([]byte, error) {
		return s.data.directProto(c.resp3, args...)
	})
	switch {
	case oom:
		conn.WriteError(msgOOM)
		return nil
	case err != nil:
		conn.WriteError(msgStoreFailed + err.Error())
		return nil
	}
	return raw
}

// lockedStoreCall runs a client's data command with do under the global lock, as Redis' main thread
// runs it: maxmemory first (evictions, or oom when it is refused), then the command between the
// keyspace-event bookkeeping, and returns its reply (replaced by a KeysReader commands= override).
func (s *Server) lockedStoreCall(c *client, args [][]byte, do func(...[]byte) ([]byte, error)) (raw []byte, oom bool, err error) {
	s.lock.acquire(c.token)
	if s.checkMemoryFor(c.token, args) { // maxmemory (evict.go)
		s.lock.release(c.token)
		return nil, true, nil
	}
	pre := s.preWrite(args) // keyspace events (events.go)
	raw, err = do(args...)
	var cc *cmdCtx
	if err == nil {
		cc = s.afterWrite(c.token, string(args[0]), args, raw, pre)
	}
	s.lock.release(c.token)
	return cc.reply(raw, c.resp3), false, err // KeysReader commands= (events.go)
}

func (c *client) resetMulti() {
	c.inMulti, c.multiErr, c.txQueue, c.rgQueue = false, false, nil, nil
}

// queueCommand handles a command sent between MULTI and EXEC: it is checked (unknown command, RG
// arity) and queued here; EXEC runs the queue.
func (s *Server) queueCommand(conn redcon.Conn, c *client, name string, args [][]byte) {
	if h, ok := rgCommands[name]; ok {
		if !h.checkArity(len(args)) {
			c.multiErr = true
			conn.WriteError(msgWrongArity(strings.ToLower(name)))
			return
		}
		c.rgQueue = append(c.rgQueue, len(c.txQueue))
	} else if !s.data.knownCommand(name) {
		c.multiErr = true
		conn.WriteError(unknownCommand(args))
		return
	}
	if s.data.mini != nil && s.data.mem.limited() {
		// server.c processCommand: inside MULTI any command is refused above maxmemory (evict.go).
		s.lock.acquire(c.token)
		oom := s.checkMemory(c.token, true)
		s.lock.release(c.token)
		if oom {
			c.multiErr = true
			conn.WriteError(msgOOM)
			return
		}
	}
	c.txQueue = append(c.txQueue, copyArgs(args))
	conn.WriteString("QUEUED")
}

// unknownCommand is Redis' error text for a command it does not know.
func unknownCommand(args [][]byte) string {
	// Redis quotes the arguments while the list is shorter than 128 bytes (server.c processCommand).
	var list []byte
	for _, a := range args[1:] {
		if len(list) >= 128 {
			break
		}
		if room := 128 - len(list); len(a) > room {
			a = a[:room]
		}
		list = append(list, '\'')
		list = append(list, a...)
		list = append(list, '\'', ' ')
	}
	return "ERR unknown command '" + string(args[0]) + "', with args beginning with: " + string(list)
}

func copyArgs(args [][]byte) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = append([]byte(nil), a...)
	}
	return out
}

// exec runs EXEC. A queue of data commands only is sent to the store as one MULTI/EXEC, whose reply is
// relayed as is. A queue with RG commands runs under the global lock (which excludes every other
// command, as Redis' main thread does): the WATCHed keys are checked with an empty MULTI/EXEC on the
// client's store connection, then the commands run one by one in order and their replies form the
// array. Long: the two ways above, in order, with their store error handling.
func (s *Server) exec(conn redcon.Conn, c *client) {
	if s.execOOM(c) {
		// An EXEC refused above maxmemory leaves the transaction open and flagged (evict.go).
		c.multiErr = true
		conn.WriteError(msgOOM)
		return
	}
	defer c.resetMulti()
	be, err := s.backend(c)
	if err != nil {
		conn.WriteError(msgStoreUnavailable + err.Error())
		return
	}
	if c.multiErr {
		_, _ = be.do([]byte("UNWATCH"))
		conn.WriteError(msgExecAbort)
		return
	}
	s.lock.acquire(c.token)
	defer s.lock.release(c.token)
	fail := func(err error) {
		be.close()
		c.be = nil
		conn.WriteError(msgStoreFailed + err.Error())
	}
	// A transaction without RG commands goes to the store as one MULTI … EXEC, unless KeysReader
	// registrations listen on the in-process store: then each command runs on its own, between the
	// keyspace-event bookkeeping (events.go), as Redis notifies each command of an EXEC. (An external
	// Redis notifies them itself: notify.go.)
	anyReg, _ := s.state.hasEventRegs()
	if len(c.rgQueue) == 0 && !(anyReg && s.data.mini != nil) {
		buf := appendCommand(nil, []byte("MULTI"))
		for _, a := range c.txQueue {
			buf = appendCommand(buf, a...)
		}
		buf = appendCommand(buf, []byte("EXEC"))
		be.arm(true)
		if _, err := be.c.Write(buf); err != nil {
			fail(err)
			return
		}
		for i := 0; i <= len(c.txQueue); i++ {
			if _, err := be.readReply(); err != nil {
				fail(err)
				return
			}
		}
		raw, err := be.readReply()
		if err != nil {
			fail(err)
			return
		}
		conn.WriteRaw(raw)
		return
	}
	if _, err := be.do([]byte("MULTI")); err != nil {
		fail(err)
		return
	}
	raw, err := be.do([]byte("EXEC"))
	if err != nil {
		fail(err)
		return
	}
	if len(raw) == 0 || raw[0] != '*' || isNilReply(raw) {
		conn.WriteRaw(raw) // a WATCHed key changed: nil
		return
	}
	out := append(c.out[:0], '*')
	out = strconv.AppendInt(out, int64(len(c.txQueue)), 10)
	out = append(out, '\r', '\n')
	c.inExec = true
	defer func() { c.inExec = false }()
	q := c.rgQueue
	for pos, args := range c.txQueue {
		if len(q) > 0 && q[0] == pos {
			h := rgCommands[strings.ToUpper(string(args[0]))]
			out = appendValue(out, s.runRG(c, h, args), c.resp3)
			q = q[1:]
			continue
		}
		pre := s.preWrite(args)
		raw, err := runNonBlocking(be.do, args)
		if err != nil {
			fail(err)
			return
		}
		s.afterWrite(c.token, "", args, raw, pre) // commands= replies are not overridden inside EXEC
		out = append(out, raw...)
	}
	c.out = out
	conn.WriteRaw(out)
}

// runRG runs an RG command handler with the locking it asks for.
func (s *Server) runRG(c *client, h *rgCommand, args [][]byte) (v value) {
	defer func() {
		if r := recover(); r != nil {
			s.logf('#', "gearstest: panic in %s: %v\n%s", args[0], r, debug.Stack())
			v = errValue(fmt.Sprintf("ERR gearstest internal error: %v", r))
		}
	}()
	if h.ownLocking {
		return h.fn(s, c, args)
	}
	defer s.holdLock(c)()
	return h.fn(s, c, args)
}

// storeConfig is what CONFIG GET answers for the in-process store (a Redis with persistence off).
var storeConfig = [][2]string{
	{"save", ""}, {"appendonly", "no"}, {"databases", "16"}, {"maxmemory", "0"},
	{"maxmemory-policy", "noeviction"}, {"proto-max-bulk-len", "536870912"}, {"timeout", "0"},
}

// info answers INFO for the in-process store: miniredis' sections plus a Server section, which
// clients read for redis_version, and the "# gearstest" section (hazards.go) with the default ones.
func (s *Server) info(conn redcon.Conn, c *client, args [][]byte) {
	wantServer := len(args) == 1
	wantHazards := len(args) == 1
	storeArgs := args
	for _, a := range args[1:] {
		switch strings.ToLower(string(a)) {
		case "gearstest":
			wantHazards = true
		case "all", "everything", "default":
			wantServer, wantHazards = true, true
			storeArgs = args[:1] // miniredis only knows its own section names
		case "server":
			wantServer = true
			if len(args) == 2 {
				c.write(conn, bulk(s.serverInfo()))
				return
			}
		case "memory":
			if len(args) == 2 {
				c.write(conn, bulk(s.memoryInfo())) // evict.go
				return
			}
		}
	}
	raw, ok := s.storeDo(conn, c, storeArgs, true)
	if !ok {
		return
	}
	if len(raw) == 0 || raw[0] != '$' {
		conn.WriteRaw(raw)
		return
	}
	body := raw[bytes.IndexByte(raw, '\n')+1 : len(raw)-2]
	body = crlf(body)
	body = s.withEvictedKeys(body) // evict.go
	if wantServer {
		server := s.serverInfo() + "\r\n" + s.memoryInfo()
		if len(body) > 0 {
			server += "\r\n"
		}
		body = append([]byte(server), body...)
	}
	if wantHazards {
		if len(body) > 0 && !bytes.HasSuffix(body, []byte("\r\n\r\n")) {
			if !bytes.HasSuffix(body, []byte("\r\n")) {
				body = append(body, '\r', '\n')
			}
			body = append(body, '\r', '\n')
		}
		body = append(body, s.gearstestInfo()...)
	}
	c.write(conn, bulkBytes(body))
}

func (s *Server) serverInfo() string {
	_, port, _ := net.SplitHostPort(s.Addr())
	return "# Server\r\nredis_version:7.0.15\r\nredis_mode:" + s.mode() + "\r\nos:" + runtime.GOOS + "\r\narch_bits:64\r\n" +
		"process_id:" + strconv.Itoa(os.Getpid()) + "\r\ntcp_port:" + port + "\r\nexecutable:gearstest\r\n"
}

// crlf turns lone LFs into CRLFs (miniredis ends some INFO lines with LF only; Redis uses CRLF).
func crlf(b []byte) []byte {
	out := make([]byte, 0, len(b)+8)
	for i, ch := range b {
		if ch == '\n' && (i == 0 || b[i-1] != '\r') {
			out = append(out, '\r')
		}
		out = append(out, ch)
	}
	return out
}

// hello runs HELLO on the client's store connection (which switches its protocol and applies AUTH and
// SETNAME) and remembers the client's protocol. The store's own reply is relayed for an external
// Redis; for the in-process store it is replaced by what a RedisGears 1.2.13 server (Redis 7.0.15 with
// the rg module) answers, since miniredis introduces itself under its own name and version.
func (s *Server) hello(conn redcon.Conn, c *client, args [][]byte) {
	// A plain HELLO, HELLO 2 or HELLO 3 (what client libraries send first) changes nothing but the
	// protocol, which gearstest keeps itself: a client without a store connection does not dial one
	// for it, so that its data commands keep the direct path (directCommands).
	plain := s.data.mini != nil && c.be == nil &&
		(len(args) == 1 || len(args) == 2 && (string(args[1]) == "2" || string(args[1]) == "3"))
	var raw []byte
	if !plain {
		var ok bool
		raw, ok = s.storeDo(conn, c, args, true)
		if !ok {
			return
		}
		if len(raw) == 0 || raw[0] == '-' {
			conn.WriteRaw(raw)
			return
		}
	} else {
		s.lock.acquire(c.token) // as every command, it runs on the "main thread"
		s.lock.release(c.token)
	}
	if len(args) > 1 {
		c.resp3 = string(args[1]) == "3"
	}
	if s.data.mini == nil {
		conn.WriteRaw(raw)
		return
	}
	for i := 2; i+1 < len(args); i++ {
		if strings.EqualFold(string(args[i]), "SETNAME") {
			// miniredis accepts SETNAME in HELLO but ignores it.
			_, _ = c.be.do([]byte("CLIENT"), []byte("SETNAME"), args[i+1])
		}
	}
	proto := int64(2)
	if c.resp3 {
		proto = 3
	}
	kv := func(b []byte, k string, v value) []byte {
		return appendValue(appendValue(b, bulk(k), c.resp3), v, c.resp3)
	}
	b := appendMapHeader(c.out[:0], 7, c.resp3)
	b = kv(b, "server", bulk("redis"))
	b = kv(b, "version", bulk("7.0.15"))
	b = kv(b, "proto", integer(proto))
	b = kv(b, "id", integer(c.id))
	b = kv(b, "mode", bulk(s.mode()))
	b = kv(b, "role", bulk("master"))
	b = appendValue(b, bulk("modules"), c.resp3)
	b = append(b, "*1\r\n"...)
	b = appendMapHeader(b, 4, c.resp3)
	b = kv(b, "name", bulk("rg"))
	b = kv(b, "ver", integer(10213))
	b = kv(b, "path", bulk("/var/opt/redislabs/lib/modules/redisgears.so"))
	b = kv(b, "args", array(bulk("Plugin"), bulk("/var/opt/redislabs/modules/rg/plugin/gears_python.so")))
	c.out = b
	conn.WriteRaw(b)
}

// appendMapHeader starts a map of n pairs: a RESP3 map, or a flat array of 2n elements for RESP2.
func appendMapHeader(b []byte, n int, resp3 bool) []byte {
	if resp3 {
		b = append(b, '%')
		b = strconv.AppendInt(b, int64(n), 10)
	} else {
		b = append(b, '*')
		b = strconv.AppendInt(b, int64(2*n), 10)
	}
	return append(b, '\r', '\n')
}

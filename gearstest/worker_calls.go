package gearstest

import "strings"

// handleCall runs execute() for Python. The reader goroutine must never wait (see outbox), so it runs
// the call inline only when that cannot block: the in-process store (no I/O) and a lock it gets
// without waiting (the common case, and always for sync executions that already own it). Otherwise
// (the lock is taken, or an external Redis, whose reply may take up to its deadline) the call runs
// on its own goroutine.
//
// On a shard of a cluster the call runs on the shard the token names (cluster_exec.go) and, when
// checked (a `call`: execute() from user code, not a reader's `rcall`), fails with "Operation not
// permitted" when its keys are not in that shard's slots, as RM_Call does on a cluster node.
func (wk *workerProc) handleCall(cid []byte, token string, args []value, checked bool) {
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
	s := wk.s
	if s.shard != nil {
		if s = wk.target(tok); s == nil {
			_ = wk.sendRaw(replyMsg(cid, 'e', encBulk("ERR gearstest: the shard of "+token+" is not running\r\n")))
			return
		}
		if checked && s.callDenied(cargs) {
			_ = wk.sendRaw(replyMsg(cid, 'e', encBulk(msgCallNotPermitted)))
			return
		}
	}
	// A write that may run a sync KeysReader execution waits for it: not on the reader (events.go).
	if s.data.mini != nil && !s.mayRunSync(tok, cargs) && s.lock.tryAcquire(tok) {
		wk.doCall(s, cid, tok, cargs, true)
		s.lock.release(tok)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.lock.acquire(tok)
		wk.doCall(s, cid, tok, cargs, false)
		s.lock.release(tok)
	}()
}

// stateChanging are commands that change a connection's state; a pooled connection that ran one is
// not reused.
var stateChanging = map[string]bool{
	"SELECT": true, "MULTI": true, "WATCH": true, "SUBSCRIBE": true, "PSUBSCRIBE": true, "SSUBSCRIBE": true,
	"HELLO": true, "CLIENT": true, "MONITOR": true, "RESET": true, "AUTH": true, "QUIT": true,
}

// doCall runs a call on server s: the worker's own, or on a cluster the shard a partition of a
// distributed execution runs on.
//
// inReader: it runs on readLoop's goroutine, whose answers may leave in batches (outbox.putHeld).
func (wk *workerProc) doCall(s *Server, cid []byte, tok string, args [][]byte, inReader bool) {
	name := strings.ToUpper(string(args[0]))
	if h, ok := rgCommands[name]; ok {
		wk.doRGCall(s, cid, name, h, args)
		return
	}
	var sc *storeConn
	do := s.data.direct
	if s.data.mini == nil {
		var err error
		if sc, err = s.data.get(); err != nil {
			_ = wk.sendRaw(replyMsg(cid, 'e', encBulk(msgStoreUnavailable+err.Error()+"\r\n")))
			return
		}
		do = sc.do
	}
	pre := s.preWrite(args) // keyspace events (events.go)
	raw, err := runNonBlocking(do, args)
	if err != nil {
		if sc != nil {
			sc.close()
		}
		_ = wk.sendRaw(replyMsg(cid, 'e', encBulk(msgStoreFailed+err.Error()+"\r\n")))
		return
	}
	s.afterWrite(tok, "", args, raw, pre)
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
			s.data.put(sc)
		}
	}
	if inReader {
		_ = wk.out.putHeld(msg)
		return
	}
	_ = wk.sendRaw(msg)
}

// doRGCall answers execute('RG.…') from a gear function. RedisModule_Call reaches module commands too,
// so a function may read RG.CONFIGGET or RG.DUMPREGISTRATIONS; it runs under the global lock the caller
// already holds. The commands that wait for executions or for the worker (RG.PYEXECUTE, RG.TRIGGER, …)
// would wait on the very worker thread that asks, so they are refused with a clear error instead.
func (wk *workerProc) doRGCall(s *Server, cid []byte, name string, h *rgCommand, args [][]byte) {
	if !h.checkArity(len(args)) {
		_ = wk.sendRaw(replyMsg(cid, 'e', encBulk(msgInvalidArgRPC)))
		return
	}
	if h.ownLocking {
		_ = wk.sendRaw(replyMsg(cid, 'e', encBulk("ERR gearstest: "+name+" can not be called with execute() from a gear function\r\n")))
		return
	}
	v := h.fn(s, &client{}, args) // a RESP2 caller; the lock is the one the gear already holds
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

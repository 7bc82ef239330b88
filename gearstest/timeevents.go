package gearstest

import (
	"strconv"
	"sync"
	"time"
)

// Time events: registerTE(seconds, callback, keyName=None), as gearsTimeEvent and TimeEvent_Callback
// of plugins/python/redisgears_python.c (RedisGears v1.2.13) implement it:
//   - the arguments are checked in the worker (runtime.registerTE), with the C code's texts;
//   - the callback is called with no arguments every `seconds`: the first time `seconds` after the
//     registerTE call, then `seconds` after the previous call returned (TimeEvent_Callback creates the
//     next Redis timer once the callback is done). It runs on Redis' main thread: nothing else runs
//     meanwhile (here: under the global lock, token "~te<id>"), and execute() works in it;
//   - a callback that raises stops its timer for good; the log says "Error occured on
//     TimeEvent_Callback, error=<text>" (the key, if any, stays);
//   - with keyName (a str; anything else is ignored, as the C code does), the timer is held by that
//     key: registerTE returns False and creates nothing when the key exists, and deleting the key
//     (DEL, an overwrite, expiry, FLUSHALL) stops the timer (TimeEvent_Free stops the Redis timer).
//     Without a key nothing can stop it, and it survives the session being upgraded or unregistered
//     (the timer holds the callback and a copy of the session);
//   - registerTE returns True when it created the timer.
//
// What gearstest does differently, and why:
//   - the key is a string holding a marker value, not a value of the module type "rg_timeev" (neither
//     miniredis nor an external Redis without RedisGears has that type): TYPE says "string", GET
//     returns the marker (a real server answers WRONGTYPE), a KeysReader sees type 'string'. The timer
//     checks its key before each call: a key that is gone or holds another value stops it then (on the
//     real server, at once; no callback runs in between either way). RENAME of the key stops it here
//     (the real timer moves with the value);
//   - the real server saves keyed timers in the RDB and restarts them when it loads it; gearstest has
//     no persistence. When gearstest's Python worker restarts (it died), a timer keeps going only if
//     its callback could be restored: a registerTE() called at the top level of a session that is
//     restored (one with registrations) gets its callback back, matched by the order of the calls
//     in that very script (its digest: an UPGRADE is another script); any other timer (created by a
//     script without registrations, from inside a function, or by a version of a session since
//     upgraded or unregistered) is stopped with a log line at its next call.
//   - seconds <= 0: the real timer fires again at once, each event-loop turn; here each call is
//     queued right after the previous one (clients' commands still run in between).

// timeEvent is one registerTE timer.
type timeEvent struct {
	id      string
	period  int64  // seconds
	key     string // "" when the timer has no key
	marker  string // the value its key holds
	sid     string // the session whose code created it
	ordinal int64  // > 0: created by the ordinal-th registerTE call of session sid's script top level
	src     string // the digest of that script (an UPGRADE of the session runs another)
	stop    chan struct{}
	once    sync.Once
}

func (te *timeEvent) halt() { te.once.Do(func() { close(te.stop) }) }

// timeEvents holds the running timers.
type timeEvents struct {
	mu    sync.Mutex
	next  int64
	nonce string
	byID  map[string]*timeEvent
	calls int64 // callback calls made (all timers)
}

// teToken is the lock token a timer's callback runs under.
func teToken(id string) string { return "~te" + id }

// onTimeEvent answers `te <cid> <token> <seconds> <key or nil> <sid> <ordinal> <restore 0/1> <digest>`
// (PROTOCOL.md): it creates a timer (reply: its id, or 0 when its key exists) or, for a restore,
// finds the timer the same call created before the worker restarted (reply: its id, or nil). It
// runs on its own goroutine: it may wait for the global lock.
func (wk *workerProc) onTimeEvent(cid []byte, token string, m []value) {
	s := wk.s
	arg := func(i int) value {
		if i < len(m) {
			return m[i]
		}
		return nilValue()
	}
	period, _ := strconv.ParseInt(arg(0).String(), 10, 64)
	key := arg(1)
	sid := arg(2).String()
	ordinal, _ := strconv.ParseInt(arg(3).String(), 10, 64)
	restore := arg(4).String() == "1"
	src := arg(5).String()
	tes := &s.ev.te
	if restore {
		// The newest timer of this call of this code (the same code run twice, e.g. an UPGRADE to
		// identical code, created two: either has the same callback).
		reply := nilValue()
		var best int64
		tes.mu.Lock()
		for _, te := range tes.byID {
			n, _ := strconv.ParseInt(te.id, 10, 64)
			if ordinal > 0 && te.sid == sid && te.ordinal == ordinal && te.src == src && n > best {
				best, reply = n, bulk(te.id)
			}
		}
		tes.mu.Unlock()
		_ = wk.send(bulk("reply"), bulkBytes(cid), bulk("v"), reply)
		return
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		tok := lockToken(token)
		s.lock.acquire(tok)
		tes.mu.Lock()
		if tes.byID == nil {
			tes.byID = map[string]*timeEvent{}
			tes.nonce = strconv.FormatInt(time.Now().UnixNano(), 36)
		}
		tes.next++
		te := &timeEvent{id: strconv.FormatInt(tes.next, 10), period: period, sid: sid, ordinal: ordinal,
			src: src, stop: make(chan struct{})}
		te.marker = "rg_timeev gearstest " + tes.nonce + " " + te.id
		tes.mu.Unlock()
		if key.Kind == kindBulk {
			te.key = key.String()
			if s.keyExists(key.Str) {
				s.lock.release(tok)
				_ = wk.send(bulk("reply"), bulkBytes(cid), bulk("v"), integer(0))
				return
			}
			// RedisModule_ModuleTypeSetValue raises no keyspace event: an external Redis' own
			// notification of this SET must not fire registrations (notify.go).
			s.ev.notify.Load().expect([]keyEvent{{event: "set", key: key.Str}})
			if err := s.setStoreKey(te.key, te.marker); err != nil {
				s.lock.release(tok)
				_ = wk.send(bulk("reply"), bulkBytes(cid), bulk("e"), bulk(msgStoreFailed+err.Error()+"\r\n"))
				return
			}
		}
		tes.mu.Lock()
		tes.byID[te.id] = te
		tes.mu.Unlock()
		s.wg.Add(1)
		go s.runTimeEvent(te)
		s.lock.release(tok)
		_ = wk.send(bulk("reply"), bulkBytes(cid), bulk("v"), bulk(te.id))
	}()
}

// setStoreKey sets a string key of DB 0 (the caller holds the global lock).
func (s *Server) setStoreKey(key, val string) error {
	if s.data.mini != nil {
		return s.data.mini.Set(key, val)
	}
	_, err := s.data.call([]byte("SET"), []byte(key), []byte(val))
	return err
}

// keyHolds reports whether string key of DB 0 holds val (the caller holds the global lock).
func (s *Server) keyHolds(key, val string) bool {
	if s.data.mini != nil {
		v, err := s.data.mini.Get(key)
		return err == nil && v == val
	}
	raw, err := s.data.call([]byte("GET"), []byte(key))
	if err != nil {
		return true // the store is unreachable: keep the timer, check again next time
	}
	v, err := parseRaw(raw)
	return err == nil && v.Kind == kindBulk && string(v.Str) == val
}

// runTimeEvent calls te's callback every te.period seconds until it stops.
func (s *Server) runTimeEvent(te *timeEvent) {
	defer s.wg.Done()
	defer s.forgetTimeEvent(te)
	d := time.Duration(te.period) * time.Second
	for {
		if d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-te.stop:
				t.Stop()
				return
			case <-s.stop:
				t.Stop()
				return
			}
		} else {
			select {
			case <-te.stop:
				return
			case <-s.stop:
				return
			default:
			}
		}
		if !s.callTimeEvent(te) {
			return
		}
	}
}

// callTimeEvent makes one call of te's callback; false stops the timer.
func (s *Server) callTimeEvent(te *timeEvent) bool {
	wk, err := s.worker() // waits while the worker restarts
	if err != nil {
		return !s.closed.Load()
	}
	tok := teToken(te.id)
	s.lock.acquire(tok)
	defer s.lock.release(tok)
	if te.key != "" && !s.keyHolds(te.key, te.marker) {
		// TimeEvent_Free: the key was deleted or overwritten.
		return false
	}
	res, err := wk.request("timer", nil, bulk(te.id), bulk(tok))
	if err != nil {
		return !s.closed.Load() // the worker died in the callback: try again after the restart
	}
	s.ev.te.mu.Lock()
	s.ev.te.calls++
	s.ev.te.mu.Unlock()
	r := resultArr(res)
	switch {
	case len(r) > 0 && r[0].String() == "ok":
		return true
	case len(r) > 1 && r[0].String() == "err":
		s.logf('#', "GEARS: Error occured on TimeEvent_Callback, error=%s", r[1].String())
	case len(r) > 0 && r[0].String() == "gone":
		s.logf('#', "gearstest: time event %s (key %q) stops: the python worker restarted and the callback "+
			"could not be restored (only registerTE() calls at the top level of a restored session are)",
			te.id, te.key)
	}
	return false
}

// forgetTimeEvent removes a stopped timer and tells the worker to drop its callback.
func (s *Server) forgetTimeEvent(te *timeEvent) {
	te.halt()
	s.ev.te.mu.Lock()
	delete(s.ev.te.byID, te.id)
	s.ev.te.mu.Unlock()
	if wk := s.currentWorker(); wk != nil && !s.closed.Load() {
		_ = wk.post("tedrop", bulk(te.id))
	}
}

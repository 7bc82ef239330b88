package gearstest

import (
	"bufio"
	"bytes"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// eventReg holds the reader arguments of a KeysReader or StreamReader registration (register()'s
// keyword arguments, checked by the worker: python/events.py).
type eventReg struct {
	args       value // the "args" RG.DUMPREGISTRATIONS shows (gears-spec §1.3)
	prefix     string
	eventTypes []string // nil: every event
	keyTypes   []string // nil: every type
	commands   []string // commands= (hookCommands): only events raised by these client commands
	readValue  bool

	// CommandReader hook= (hooks.go)
	hook, keyprefix string

	// StreamReader
	batch, durationMS, retrySec int64
	trim                        bool
	policy                      string
	sr                          *streamReg
}

// parseEventReg reads the reader arguments the worker sends as the 8th element of a reg.
func parseEventReg(reader string, v value) *eventReg {
	if v.Kind != kindArray {
		return nil
	}
	ev := &eventReg{readValue: true}
	a := v.Arr
	strs := func(x value) []string {
		if x.Kind != kindArray {
			return nil
		}
		out := make([]string, len(x.Arr))
		for i, e := range x.Arr {
			out[i] = e.String()
		}
		return out
	}
	for i := 0; i+1 < len(a); i += 2 {
		val := a[i+1]
		switch a[i].String() {
		case "regex", "stream":
			ev.prefix = val.String()
		case "eventTypes":
			ev.eventTypes = strs(val)
		case "keyTypes":
			ev.keyTypes = strs(val)
		case "hookCommands":
			ev.commands = strs(val)
		case "readValue":
			ev.readValue = val.Int != 0
		case "batchSize":
			ev.batch = val.Int
		case "durationMS":
			ev.durationMS = val.Int
		case "trimStream":
			ev.trim = val.Int != 0
		case "onFailedPolicy":
			ev.policy = val.String()
		case "retryInterval":
			ev.retrySec = val.Int
		case "hook":
			ev.hook = val.String()
		case "keyprefix":
			ev.keyprefix = val.String()
		}
	}
	switch reader {
	case "KeysReader":
		if len(a) >= 8 {
			ev.args = array(a[:8]...)
		}
	case "StreamReader":
		ev.args = v
		ev.sr = newStreamReg()
	}
	return ev
}

// regData renders the RegistrationData of a KeysReader (20 elements) or StreamReader (26) registration.
func (ev *eventReg) regData(r *registration, avg float64, lastErr value) value {
	head := statsHead(r, avg)
	if ev.hook != "" {
		// command_reader.c: a hook shows the hooked command's name as its trigger
		return array(append(head, bulk("lastError"), lastErr, bulk("args"),
			array(bulk("trigger"), bulk(ev.hook), bulk("inorder"), integer(0)))...)
	}
	if ev.sr == nil {
		return array(append(head, bulk("lastError"), lastErr, bulk("args"), ev.args)...)
	}
	// The lag fields: gearstest measures no lag (assumption: 0 as on a server that keeps up).
	head = append(head, bulk("lastEstimatedLagMS"), integer(0), bulk("avgEstimatedLagMS"), double(0),
		bulk("lastError"), lastErr, bulk("args"), ev.args, bulk("status"), bulk(ev.sr.statusText()))
	return array(head...)
}

// matchKey is KeysReader_ShouldFire minus the key type (checked by the caller, which reads the type):
// the event types (case-insensitive), the hooked commands, then the prefix (KeysReader_IsKeyMatch: a
// prefix ending in '*' matches by prefix, anything else matches the key exactly).
func (ev *eventReg) matchKey(event string, key []byte, cmd string) bool {
	if ev.eventTypes != nil {
		found := false
		for _, t := range ev.eventTypes {
			if strings.EqualFold(t, event) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if ev.commands != nil {
		if cmd == "" {
			return false
		}
		found := false
		for _, c := range ev.commands {
			if strings.EqualFold(c, cmd) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return prefixMatch(ev.prefix, key)
}

func prefixMatch(prefix string, key []byte) bool {
	if strings.HasSuffix(prefix, "*") {
		return bytes.HasPrefix(key, []byte(prefix[:len(prefix)-1]))
	}
	return string(key) == prefix
}

// eventHub is the event side of the server: which tokens run a sync KeysReader execution, the keys
// with a TTL (for "expired"), and the self-triggering chains of async registrations.
type eventHub struct {
	mu         sync.Mutex
	inCallback map[string]int     // tokens inside a sync KeysReader execution
	volatile   map[string]bool    // in-process store keys (DB 0) that have a TTL
	chains     map[string]chainAt // async execution id -> the registration and its self-trigger depth

	notify atomic.Pointer[notifier] // the keyspace subscriber of an external Redis (notify.go)

	queue eventQueue // executions of events raised while the worker restarts (eventqueue.go)
	te    timeEvents // registerTE timers (timeevents.go)
}

type chainAt struct {
	reg   string
	depth int
}

// selfTriggerWarn is the depth of self-triggering after which the server logs a warning (and at every
// multiple of it): a registration whose function writes under its own prefix in async mode.
const selfTriggerWarn = 1000

// lazyLocked makes the maps (the zero eventHub is ready to use); h.mu is held.
func (h *eventHub) lazyLocked() {
	if h.inCallback == nil {
		h.inCallback = map[string]int{}
		h.volatile = map[string]bool{}
		h.chains = map[string]chainAt{}
	}
}

// suppressed reports whether writes made with token raise no KeysReader event: Redis does not call a
// keyspace subscriber from inside itself (module.c moduleNotifyKeyspaceEvent, sub->active), and every
// KeysReader registration shares one subscriber (keys_reader.c KeysReader_RegisterKeySpaceEvent). So
// the writes of a sync KeysReader execution, which runs inside the notification, trigger no KeysReader
// registration at all (gears-spec 8.1: "in sync mode a function's own writes do not re-trigger it").
func (h *eventHub) suppressed(token string) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lazyLocked()
	return h.inCallback[token] > 0
}

func (h *eventHub) enter(token string, d int) {
	h.mu.Lock()
	h.lazyLocked()
	h.inCallback[token] += d
	if h.inCallback[token] <= 0 {
		delete(h.inCallback, token)
	}
	h.mu.Unlock()
}

// hasEventRegs reports whether any KeysReader or StreamReader registration exists, and whether one of
// them is sync.
func (st *state) hasEventRegs() (any, sync bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, r := range st.regs {
		if r.ev != nil && r.ev.hook == "" {
			any = true
			if r.mode == "sync" {
				sync = true
			}
		}
	}
	return any, sync
}

// writeFacts is what a write needs from before it ran (preWrite).
type writeFacts struct {
	existed map[string]bool
}

// preWrite records, under the global lock and before a command runs on the in-process store, the
// existence of the keys its events depend on. It returns nil when nothing listens.
func (s *Server) preWrite(args [][]byte) *writeFacts {
	if len(args) == 0 {
		return nil
	}
	name := strings.ToUpper(string(args[0]))
	if !isWriteCommand(name) && name != "GET" {
		return nil
	}
	if anyReg, _ := s.state.hasEventRegs(); !anyReg {
		return nil
	}
	f := &writeFacts{}
	if keys := preKeys(name, args); len(keys) > 0 {
		f.existed = map[string]bool{}
		for _, k := range keys {
			f.existed[string(k)] = s.keyExists(k)
		}
	}
	return f
}

// mayRunSync reports whether a write with token may run a sync KeysReader execution inline (then the
// caller must not run it on the worker's reading goroutine).
func (s *Server) mayRunSync(token string, args [][]byte) bool {
	if len(args) == 0 || !isWriteCommand(strings.ToUpper(string(args[0]))) {
		return false
	}
	_, sync := s.state.hasEventRegs()
	return sync && !s.ev.suppressed(token)
}

// afterWrite raises the keyspace events of a command that ran on the in-process store (called under
// the global lock, held for token, before the command's reply leaves). cmd is the client command's
// name for commands= (empty for execute() calls inside functions, which no client command links).
// It returns the command context of the executions of commands= registrations the write started
// (nil when none): the caller releases the lock, then takes the client's reply from it.
func (s *Server) afterWrite(token, cmd string, args [][]byte, raw []byte, f *writeFacts) *cmdCtx {
	if f == nil {
		return nil
	}
	var existed map[string]bool
	if f.existed != nil {
		existed = f.existed
	}
	evs := commandEvents(args, raw, eventFacts{existed: existed, exists: s.keyExists})
	if cmd == "" {
		// keymiss only for client commands (the reader's own reads of a missing key raise none).
		kept := evs[:0]
		for _, e := range evs {
			if e.event != "keymiss" {
				kept = append(kept, e)
			}
		}
		evs = kept
	}
	// An external Redis notifies these events too: they must not fire twice (notify.go).
	s.ev.notify.Load().expect(evs)
	return s.fire(token, cmd, evs)
}

// afterBlockingWrite raises the events of a blocking command (BLPOP, …), which ran without the
// global lock: it takes the lock to run them.
func (s *Server) afterBlockingWrite(token string, args [][]byte, raw []byte) {
	if len(args) == 0 || isNilReply(raw) || s.data.mini == nil {
		// An external Redis' own notifications fire the events of blocking commands (notify.go): they
		// ran without the global lock, so their notifications could be read before an expectation.
		return
	}
	s.lock.acquire(token)
	defer s.lock.release(token)
	s.afterWrite(token, string(args[0]), args, raw, s.preWrite(args))
}

// fire runs the registrations that listen to evs. Sync ones run here (their function runs before the
// write's reply, on token's global lock); async ones are queued. The executions of registrations with
// commands= run in the context of the client command cmd (see cmdCtx), which fire returns.
func (s *Server) fire(token, cmd string, evs []keyEvent) (cc *cmdCtx) {
	if len(evs) == 0 {
		return nil
	}
	s.ev.mu.Lock()
	s.ev.lazyLocked()
	for _, e := range evs {
		switch e.event {
		case "expire":
			s.ev.volatile[string(e.key)] = true
			if s.data.mini != nil && s.data.tick.Load() == nil {
				tick := s.expiryTick
				s.data.tick.CompareAndSwap(nil, &tick)
			}
		case "del", "expired", "persist", "rename_from", "set":
			// set without KEEPTTL clears the TTL; a later expire event adds the key again.
			delete(s.ev.volatile, string(e.key))
		}
	}
	s.ev.mu.Unlock()
	if s.ev.suppressed(token) {
		return nil
	}
	// While the worker restarts (and until what was queued then is delivered), the executions are
	// queued with what decided them now: the registrations, the key's type (eventqueue.go).
	wk := s.currentWorker()
	queue := wk == nil || s.ev.queueing()
	for _, e := range evs {
		for _, r := range s.state.keyRegsFor(e, cmd) {
			if r.ev.sr != nil {
				if queue {
					s.queueEvent(r, token, e, nil)
				} else {
					s.streamEvent(wk, r, e.key, token)
				}
				continue
			}
			if len(r.ev.keyTypes) > 0 && !s.keyTypeMatches(r.ev.keyTypes, e.key) {
				continue
			}
			var rc *cmdCtx
			if r.ev.commands != nil {
				// matchKey passed: cmd is one of the registration's commands
				if cc == nil {
					cc = &cmdCtx{}
				}
				rc = cc
			}
			if queue {
				s.queueEvent(r, token, e, rc)
			} else {
				s.runKeyEvent(wk, r, token, e, rc)
			}
		}
	}
	return cc
}

// cmdCtx is the command context of KeysReader registrations with commands= (keys_reader.c
// KeysReader_CommandHook, RedisGears v1.2.13): the hooked client command runs, and the executions its
// notifications start share its context. The client's reply waits for all of them — a sync one runs
// inline; for an async one the real server blocks the client (RedisModule_BlockClient in
// KeysReader_OnKeyTouched) until the last execution frees the context (KeyReader_CommandCtxFree) —
// and is the value an execution gave to override_reply(), or else the command's own reply.
//
// Assumption: the real server lets override_reply() succeed once per command ("Can only override
// reply once" for the next execution that tries); gearstest checks that per execution, and when several
// executions of one command override the reply, the first one to finish (in registration order for
// sync ones) wins.
type cmdCtx struct {
	wg       sync.WaitGroup
	mu       sync.Mutex
	override *value
}

// setOverride records an execution's override_reply() value (the 5th element of its result).
func (cc *cmdCtx) setOverride(res value) {
	a := resultArr(res)
	if len(a) < 5 || a[4].Kind != kindArray || len(a[4].Arr) != 1 {
		return
	}
	v := a[4].Arr[0]
	cc.mu.Lock()
	if cc.override == nil {
		cc.override = &v
	}
	cc.mu.Unlock()
}

// reply waits for the command's async executions (the caller no longer holds the global lock) and
// returns the reply for the client: the override, rendered for its protocol, or raw.
func (cc *cmdCtx) reply(raw []byte, resp3 bool) []byte {
	if cc == nil {
		return raw
	}
	cc.wg.Wait()
	cc.mu.Lock()
	defer cc.mu.Unlock()
	if cc.override == nil {
		return raw
	}
	return appendValue(nil, *cc.override, resp3)
}

// keyRegsFor returns the registrations an event fires, in registration order.
func (st *state) keyRegsFor(e keyEvent, cmd string) []*registration {
	st.mu.Lock()
	defer st.mu.Unlock()
	var out []*registration
	for _, r := range st.sortedRegsLocked() {
		if r.ev == nil || r.ev.hook != "" {
			continue
		}
		if r.ev.sr != nil {
			if e.event == "xadd" && prefixMatch(r.ev.prefix, e.key) {
				out = append(out, r)
			}
			continue
		}
		if r.ev.matchKey(e.event, e.key, cmd) {
			out = append(out, r)
		}
	}
	return out
}

// keyTypeMatches checks register(keyTypes=) against the key's type now.
func (s *Server) keyTypeMatches(types []string, key []byte) bool {
	t := "empty"
	if s.data.mini != nil {
		t = s.data.mini.Type(string(key))
	} else if raw, err := s.data.call([]byte("TYPE"), key); err == nil {
		t = strings.TrimSpace(strings.TrimPrefix(string(raw), "+"))
	}
	switch t {
	case "", "none":
		t = "empty"
	case "string", "list", "hash", "set", "zset", "stream":
	default:
		t = "module"
	}
	for _, want := range types {
		if want == t {
			return true
		}
	}
	return false
}

// startEvent counts an event execution of r and creates its execution (as startTrigger does).
func (st *state) startEvent(r *registration) *execution {
	st.mu.Lock()
	defer st.mu.Unlock()
	r.numTriggered++
	if r.sess != nil {
		r.sess.running++
	}
	e := &execution{num: st.epID, status: "running", trigger: true, registered: true, start: time.Now(), done: make(chan struct{})}
	st.epID++
	e.id = st.makeID(e.num)
	st.execs[e.id] = e
	st.execOrder = append(st.execOrder, e)
	st.evictLocked()
	return e
}

// runKeyEvent runs one KeysReader execution of r for e, in the command context cc when r has
// commands= (flag c: override_reply() is allowed).
func (s *Server) runKeyEvent(wk *workerProc, r *registration, token string, e keyEvent, cc *cmdCtx) {
	ex := s.state.startEvent(r)
	flags := "k"
	if cc != nil {
		flags = "kc"
	} else if s.shard != nil && r.mode == "async" {
		// On a cluster an async registration's execution runs on every shard (cluster_exec.go); one
		// with commands= stays here with its command's context (an assumption: the context is this
		// shard's client).
		flags = "kd"
	}
	if r.mode == "sync" {
		s.ev.enter(token, 1)
		res, err := wk.request("trigger", nil, bulk(r.id), bulk(ex.id), bulk(token), bulk(flags),
			bulk(e.event), bulkBytes(e.key))
		s.ev.enter(token, -1)
		s.state.finishTrigger(r, ex, res, err)
		if cc != nil && err == nil {
			cc.setOverride(res)
		}
		return
	}
	s.trackChain(token, r, ex.id)
	msg := []value{bulk(r.id), bulk(ex.id), bulk("x" + ex.id), bulk(flags), bulk(e.event), bulkBytes(append([]byte(nil), e.key...))}
	s.wg.Add(1)
	if cc != nil {
		cc.wg.Add(1)
	}
	go func() {
		defer s.wg.Done()
		res, err := wk.request("trigger", nil, msg...)
		s.state.finishTrigger(r, ex, res, err)
		if cc != nil {
			if err == nil {
				cc.setOverride(res)
			}
			cc.wg.Done()
		}
		s.ev.mu.Lock()
		delete(s.ev.chains, ex.id)
		s.ev.mu.Unlock()
	}()
}

// trackChain follows an async registration that triggers itself (its function writes under its own
// prefix): on the real server that never ends (gears-spec 8.1), and neither does it here; the log says so.
func (s *Server) trackChain(token string, r *registration, execID string) {
	depth := 0
	s.ev.mu.Lock()
	s.ev.lazyLocked()
	if strings.HasPrefix(token, "x") {
		if c, ok := s.ev.chains[token[1:]]; ok && c.reg == r.id {
			depth = c.depth + 1
		}
	}
	s.ev.chains[execID] = chainAt{reg: r.id, depth: depth}
	s.ev.mu.Unlock()
	if depth > 0 && depth%selfTriggerWarn == 0 {
		s.logf('#', "gearstest: registration %s keeps re-triggering itself (%d executions in a row were "+
			"triggered by its own writes under its prefix %q); a real RedisGears 1.2 does this without end",
			r.id, depth, r.ev.prefix)
	}
}

// parseRaw decodes one raw RESP reply.
func parseRaw(raw []byte) (value, error) {
	return readValue(bufio.NewReader(bytes.NewReader(raw)))
}

// clockToken owns the global lock while the in-process store's clock expires keys.
const clockToken = "~clock"

// expiryTick wraps one advance of the in-process store's clock (store.runClock): the keys with a TTL
// that it removes raise "expired" (expire.c activeExpireCycle / db.c expireIfNeeded), under the global
// lock as on Redis' main thread. miniredis has no notifications: the keys that had a TTL before the
// advance and are gone after it expired.
func (s *Server) expiryTick(advance func()) {
	s.ev.mu.Lock()
	n := len(s.ev.volatile)
	s.ev.mu.Unlock()
	if n == 0 {
		advance()
		return
	}
	s.lock.acquire(clockToken)
	defer s.lock.release(clockToken)
	s.ev.mu.Lock()
	var live []string
	for k := range s.ev.volatile {
		if s.data.mini.TTL(k) > 0 {
			live = append(live, k)
		} else {
			delete(s.ev.volatile, k) // persisted or deleted by a command gearstest saw no event of
		}
	}
	s.ev.mu.Unlock()
	advance()
	var evs []keyEvent
	for _, k := range live {
		if !s.data.mini.Exists(k) {
			evs = append(evs, keyEvent{event: "expired", key: []byte(k)})
		}
	}
	s.fire(clockToken, "", evs)
}

package gearstest

import (
	"bytes"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Keyspace notifications of an external Redis (WithRedis / gears serve --redis).
//
// Writes made by other clients directly to the external Redis fire KeysReader registrations too, as
// on a real RedisGears, whose KeysReader is a keyspace subscriber inside Redis: gearstest adds the
// flags it needs to notify-keyspace-events (keeping the user's) and reads __keyspace@0__:* on a
// connection of its own. Writes made through gearstest fire their events as before, from the command
// and its reply (keyspace.go), so that sync registrations run before the reply; Redis notifies them
// too, and those notifications must not fire a second time. A notification carries only the key and
// the event, so gearstest counts, per key and event, the notifications it expects from its own writes
// and skips that many:
//
//   - an expectation is recorded in afterWrite, under the global lock, after the write's reply came
//     back; the subscriber handles notifications under the global lock too, so a notification of a
//     gearstest write that arrives before its expectation waits for it;
//   - keyspace.go's table is an approximation (an event it predicts may never come, e.g. ZADD of an
//     existing member with the same score). Stale expectations would swallow a later external event,
//     so the subscriber sends a PING after expectations are recorded: Redis queues a write's
//     notifications on the subscriber's connection while the write runs, so once the PONG of a PING
//     sent after an expectation was recorded arrives, every notification of that write has been read,
//     and an expectation still there is dropped.
//
// Sync registrations fired by external writes run after the write (Redis replied to its client long
// before). Only DB 0 is subscribed (execute() and the readers work on DB 0). Events Redis has but
// RedisGears 1.2's subscriber does not take (new, and keymiss unless the user enabled it) are ignored.

// notifyToken owns the global lock while notifications of an external Redis run registrations.
const notifyToken = "~notify"

// notifyFlags are the notify-keyspace-events flags the subscriber needs: keyspace channels (K) for
// every event class (A = g$lshzxetd).
const notifyFlags = "KA"

// keyspaceChannel is the channel prefix of DB 0's keyspace notifications.
const keyspaceChannel = "__keyspace@0__:"

// notifier follows the keyspace notifications of an external Redis.
type notifier struct {
	s  *Server
	sc *storeConn

	wmu sync.Mutex // serialises writes to sc

	mu       sync.Mutex // guards what follows
	expected map[string][]uint64
	sent     uint64 // PINGs sent
	recv     uint64 // PONGs received
	kick     chan struct{}
}

// startNotify subscribes to the external Redis' keyspace notifications. A Redis that refuses CONFIG
// SET or PSUBSCRIBE leaves gearstest firing registrations for its own writes only (the log says so).
func (s *Server) startNotify() {
	if s.data.mini != nil {
		return
	}
	sc, err := s.data.dial()
	if err != nil {
		s.logf('#', "gearstest: keyspace notifications of the external Redis: %v", err)
		return
	}
	if err := ensureNotifyFlags(sc); err != nil {
		s.logf('#', "gearstest: cannot enable keyspace notifications on the external Redis (%v): writes made "+
			"by other clients of it fire no registration", err)
		sc.close()
		return
	}
	sc.arm(false) // a subscriber waits without a deadline; Close ends it by closing sc
	if _, err := sc.c.Write(encCommand("PSUBSCRIBE", keyspaceChannel+"*")); err != nil {
		sc.close()
		return
	}
	n := &notifier{s: s, sc: sc, expected: map[string][]uint64{}, kick: make(chan struct{}, 1)}
	s.ev.notify.Store(n)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		n.read()
	}()
	go func() {
		defer s.wg.Done()
		n.pinger()
	}()
}

// notifySetupTimeout bounds the CONFIG GET/SET of ensureNotifyFlags, whatever the store's timeout: a
// Redis that does not answer must not keep Start from returning (it is logged, and Start goes on).
const notifySetupTimeout = 5 * time.Second

// ensureNotifyFlags adds notifyFlags to the Redis' notify-keyspace-events, keeping the flags set.
func ensureNotifyFlags(sc *storeConn) error {
	do := func(args ...[]byte) ([]byte, error) {
		_ = sc.c.SetDeadline(time.Now().Add(notifySetupTimeout))
		return sc.roundTrip(args)
	}
	raw, err := do([]byte("CONFIG"), []byte("GET"), []byte("notify-keyspace-events"))
	if err != nil {
		return err
	}
	v, err := parseRaw(raw)
	if err != nil {
		return err
	}
	if v.Kind == kindError {
		return errorString(v.String())
	}
	cur := ""
	if len(v.Arr) == 2 {
		cur = v.Arr[1].String()
	}
	if strings.Contains(cur, "K") && (strings.Contains(cur, "A") || containsAll(cur, "g$lshzxetd")) {
		return nil
	}
	raw, err = do([]byte("CONFIG"), []byte("SET"), []byte("notify-keyspace-events"), []byte(cur+notifyFlags))
	if err != nil {
		return err
	}
	if len(raw) > 0 && raw[0] == '-' {
		return errorString(strings.TrimSpace(string(raw[1:])))
	}
	return nil
}

type errorString string

func (e errorString) Error() string { return string(e) }

func containsAll(s, chars string) bool {
	for _, c := range chars {
		if !strings.ContainsRune(s, c) {
			return false
		}
	}
	return true
}

// encCommand encodes a command as a RESP array of bulk strings.
func encCommand(args ...string) []byte {
	var b bytes.Buffer
	b.WriteString("*")
	b.WriteString(strconv.Itoa(len(args)))
	b.WriteString("\r\n")
	for _, a := range args {
		b.WriteString("$")
		b.WriteString(strconv.Itoa(len(a)))
		b.WriteString("\r\n")
		b.WriteString(a)
		b.WriteString("\r\n")
	}
	return b.Bytes()
}

func expectKey(event string, key []byte) string { return event + "\x00" + string(key) }

// expect records the notifications a write made through gearstest will cause (called under the
// global lock, after the write's reply).
func (n *notifier) expect(evs []keyEvent) {
	if n == nil || len(evs) == 0 {
		return
	}
	n.mu.Lock()
	for _, e := range evs {
		k := expectKey(e.event, e.key)
		n.expected[k] = append(n.expected[k], n.sent)
	}
	n.mu.Unlock()
	select {
	case n.kick <- struct{}{}:
	default:
	}
}

// pinger sends a PING on the subscriber connection after expectations were recorded (see the top).
func (n *notifier) pinger() {
	ping := encCommand("PING")
	for {
		select {
		case <-n.s.stop:
			return
		case <-n.kick:
		}
		n.mu.Lock()
		n.sent++
		n.mu.Unlock()
		n.wmu.Lock()
		_, err := n.sc.c.Write(ping)
		n.wmu.Unlock()
		if err != nil {
			return
		}
	}
}

// notice is one message read from the subscriber connection: a notification, or a PONG (pong set).
type notice struct {
	pong  bool
	event string
	key   []byte
}

// read handles the subscriber connection's messages until it closes.
func (n *notifier) read() {
	r := n.sc.r
	var batch []notice
	for {
		v, err := readValue(r)
		if err != nil {
			return
		}
		if nt, ok := decodeNotice(v); ok {
			batch = append(batch, nt)
		}
		if r.Buffered() > 0 && len(batch) < 1024 {
			continue
		}
		if len(batch) > 0 {
			n.handle(batch)
			batch = batch[:0]
		}
	}
}

// decodeNotice reads a pmessage of __keyspace@0__:<key> or the PONG of a subscribed connection.
func decodeNotice(v value) (notice, bool) {
	if v.Kind != kindArray || len(v.Arr) < 2 {
		return notice{}, false
	}
	switch strings.ToLower(v.Arr[0].String()) {
	case "pong":
		return notice{pong: true}, true
	case "pmessage":
		if len(v.Arr) != 4 {
			return notice{}, false
		}
		ch := v.Arr[2].Str
		if !bytes.HasPrefix(ch, []byte(keyspaceChannel)) {
			return notice{}, false
		}
		return notice{event: v.Arr[3].String(), key: append([]byte(nil), ch[len(keyspaceChannel):]...)}, true
	}
	return notice{}, false
}

// handle runs a batch of notices in order under the global lock: a notification gearstest expects is
// skipped, the others fire registrations; a PONG drops the expectations it proves stale.
func (n *notifier) handle(batch []notice) {
	s := n.s
	s.lock.acquire(notifyToken)
	defer s.lock.release(notifyToken)
	var evs []keyEvent
	n.mu.Lock()
	for _, nt := range batch {
		if nt.pong {
			n.recv++
			for k, stamps := range n.expected {
				i := 0
				for i < len(stamps) && stamps[i] < n.recv {
					i++
				}
				if i == len(stamps) {
					delete(n.expected, k)
				} else {
					n.expected[k] = stamps[i:]
				}
			}
			continue
		}
		switch nt.event {
		case "new":
			continue // not in REDISMODULE_NOTIFY_ALL: RedisGears 1.2's subscriber never sees it
		}
		k := expectKey(nt.event, nt.key)
		if stamps := n.expected[k]; len(stamps) > 0 {
			if len(stamps) == 1 {
				delete(n.expected, k)
			} else {
				n.expected[k] = stamps[1:]
			}
			continue
		}
		evs = append(evs, keyEvent{event: nt.event, key: nt.key})
	}
	n.mu.Unlock()
	if len(evs) > 0 {
		s.fire(notifyToken, "", evs)
	}
}

// keyExists reports whether key exists in the data store (DB 0).
func (s *Server) keyExists(key []byte) bool {
	if s.data.mini != nil {
		return s.data.mini.Exists(string(key))
	}
	raw, err := s.data.call([]byte("EXISTS"), key)
	n, ok := replyInt(raw)
	return err == nil && ok && n > 0
}

// call runs one command on a pooled connection of an external Redis (DB 0).
func (st *store) call(args ...[]byte) ([]byte, error) {
	sc, err := st.get()
	if err != nil {
		return nil, err
	}
	raw, err := sc.do(args...)
	if err != nil {
		sc.close()
		return nil, err
	}
	st.put(sc)
	return raw, nil
}

package gearstest

import (
	"strconv"
	"strings"
	"sync"
	"time"
)

// streamReg is the reading state of a StreamReader registration (streams_reader.c): per stream, the
// last entry id processed and the entries added since (pendingMessages), and the registration's status.
//
// Assumptions where gearstest differs in form (not in what a function sees): the real reader keeps its
// position in a consumer group (__Gears_Consumer_Group, XREADGROUP/XACK); gearstest keeps it in Go and
// reads with XRANGE, so no consumer group shows in XINFO. The real reader scans the matching streams
// when it is registered and reads what they hold; gearstest reads a stream's older entries (from 0-0)
// at its first new entry after the registration. Lag is not measured (0).
type streamReg struct {
	mu      sync.Mutex
	status  string // OK, PAUSED, ABORTED, WAITING_FOR_RETRY_ON_FAILURE
	streams map[string]*streamPos
	retry   bool // a retry timer is set
}

type streamPos struct {
	lastID  string
	pending int64
	running bool
	timer   *time.Timer // duration= timer
}

func newStreamReg() *streamReg {
	return &streamReg{status: "OK", streams: map[string]*streamPos{}}
}

func (sr *streamReg) statusText() string {
	sr.mu.Lock()
	defer sr.mu.Unlock()
	return sr.status
}

// storeCall runs one command on the data store for the server itself (DB 0, RESP2).
func (s *Server) storeCall(args ...[]byte) ([]byte, error) {
	if s.data.mini != nil {
		return s.data.direct(args...)
	}
	sc, err := s.data.get()
	if err != nil {
		return nil, err
	}
	raw, err := sc.do(args...)
	if err != nil {
		sc.close()
		return nil, err
	}
	s.data.put(sc)
	return raw, nil
}

// streamEvent counts a new entry of a stream a StreamReader registration reads and starts a batch when
// one is due (batch entries pending, or the duration timer). Called under the global lock.
func (s *Server) streamEvent(wk *workerProc, r *registration, key []byte, token string) {
	sr := r.ev.sr
	k := string(key)
	sr.mu.Lock()
	sp := sr.streams[k]
	if sp == nil {
		sp = &streamPos{lastID: "0-0"}
		sr.streams[k] = sp
	}
	sp.pending++
	due := sr.status == "OK" && !sp.running && sp.pending >= max(r.ev.batch, 1)
	if !due && sr.status == "OK" && !sp.running && r.ev.durationMS > 0 && sp.timer == nil {
		sp.timer = time.AfterFunc(time.Duration(r.ev.durationMS)*time.Millisecond, func() {
			s.lock.acquire(streamToken)
			defer s.lock.release(streamToken)
			sr.mu.Lock()
			sp.timer = nil
			sr.mu.Unlock()
			if w := s.currentWorker(); w != nil {
				s.streamBatch(w, r, k, streamToken)
			}
		})
	}
	sr.mu.Unlock()
	if due {
		s.streamBatch(wk, r, k, token)
	}
}

// streamToken owns the global lock for the stream reader's own reads and trims.
const streamToken = "~streams"

// streamBatch reads the next batch of stream key for r and runs it (under the global lock).
func (s *Server) streamBatch(wk *workerProc, r *registration, key, token string) {
	sr := r.ev.sr
	sr.mu.Lock()
	sp := sr.streams[key]
	if sp == nil || sp.running || sr.status != "OK" || sp.pending <= 0 {
		sr.mu.Unlock()
		return
	}
	sp.running = true
	if sp.timer != nil {
		sp.timer.Stop()
		sp.timer = nil
	}
	from := sp.lastID
	sr.mu.Unlock()
	batch := max(r.ev.batch, 1)
	raw, err := s.storeCall([]byte("XRANGE"), []byte(key), []byte("("+from), []byte("+"), []byte("COUNT"),
		[]byte(strconv.FormatInt(batch, 10)))
	var ids []string
	if err == nil {
		if v, perr := parseRaw(raw); perr == nil {
			for _, e := range v.Arr {
				if len(e.Arr) > 0 {
					ids = append(ids, e.Arr[0].String())
				}
			}
		}
	}
	if len(ids) == 0 {
		sr.mu.Lock()
		sp.running = false
		sp.pending = 0
		sr.mu.Unlock()
		return
	}
	first, last := ids[0], ids[len(ids)-1]
	ex := s.state.startEvent(r)
	msg := []value{bulk(r.id), bulk(ex.id), bulk(token), bulk("s"), bulk(key), bulk(first), bulk(last)}
	if r.mode == "sync" {
		s.ev.enter(token, 1)
		res, rerr := wk.request("trigger", nil, msg...)
		s.ev.enter(token, -1)
		s.streamDone(wk, r, key, ex, res, rerr, last, int64(len(ids)), token)
		return
	}
	msg[2] = bulk("x" + ex.id)
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		res, rerr := wk.request("trigger", nil, msg...)
		s.streamDone(wk, r, key, ex, res, rerr, last, int64(len(ids)), "")
	}()
}

// streamDone applies a batch's outcome (StreamReader_ExecutionDone): success or a failure under
// onFailedPolicy continue moves on (and trims the processed entries with trimStream); a failure whose
// text starts with PAUSE pauses the registration; abort stops it (ABORTED); retry waits
// onFailedRetryInterval seconds and reads the same entries again.
func (s *Server) streamDone(wk *workerProc, r *registration, key string, ex *execution, res value, err error,
	last string, n int64, token string) {
	_, errs := s.state.finishTrigger(r, ex, res, err)
	if token == "" {
		// an async batch: its follow-up runs on the stream reader's own lock
		token = streamToken
		s.lock.acquire(token)
		defer s.lock.release(token)
	}
	sr := r.ev.sr
	sr.mu.Lock()
	sp := sr.streams[key]
	sp.running = false
	advance := true
	if len(errs) > 0 {
		text := errs[0].String()
		switch {
		case strings.HasPrefix(text, "PAUSE") || sr.status == "PAUSED":
			sr.status, advance = "PAUSED", false
		case r.ev.policy == "abort":
			sr.status, advance = "ABORTED", false
		case r.ev.policy == "retry":
			sr.status, advance = "WAITING_FOR_RETRY_ON_FAILURE", false
			if !sr.retry {
				sr.retry = true
				time.AfterFunc(time.Duration(max(r.ev.retrySec, 0))*time.Second, func() {
					sr.mu.Lock()
					sr.retry = false
					if sr.status == "WAITING_FOR_RETRY_ON_FAILURE" {
						sr.status = "OK"
					}
					sr.mu.Unlock()
					s.streamKick(r)
				})
			}
		}
	}
	if advance {
		sp.lastID = last
		sp.pending = max(sp.pending-n, 0)
	}
	pending := sp.pending
	again := sr.status == "OK" && pending > 0 && (pending >= max(r.ev.batch, 1) || r.ev.durationMS > 0)
	sr.mu.Unlock()
	if advance && r.ev.trim {
		// StreamReader_AckAndTrimm: XTRIM <key> MAXLEN <pendingMessages>.
		_, _ = s.storeCall([]byte("XTRIM"), []byte(key), []byte("MAXLEN"), []byte(strconv.FormatInt(pending, 10)))
	}
	if again {
		s.streamBatch(wk, r, key, token)
	}
}

// streamKick restarts reading every known stream of r (after UNPAUSE or a retry interval).
func (s *Server) streamKick(r *registration) {
	wk := s.currentWorker()
	if wk == nil {
		return
	}
	s.lock.acquire(streamToken)
	defer s.lock.release(streamToken)
	sr := r.ev.sr
	sr.mu.Lock()
	var keys []string
	for k, sp := range sr.streams {
		// Unprocessed entries are read again from the last processed id: count what is there.
		if raw, err := s.storeCall([]byte("XRANGE"), []byte(k), []byte("("+sp.lastID), []byte("+")); err == nil {
			if v, perr := parseRaw(raw); perr == nil {
				sp.pending = int64(len(v.Arr))
			}
		}
		keys = append(keys, k)
	}
	sr.mu.Unlock()
	for _, k := range keys {
		s.streamBatch(wk, r, k, streamToken)
	}
}

// streamPause implements RG.PAUSEREGISTRATIONS / RG.UNPAUSEREGISTRATIONS for a StreamReader.
func (s *Server) streamPause(r *registration, pause bool) value {
	sr := r.ev.sr
	sr.mu.Lock()
	if pause {
		sr.status = "PAUSED"
		sr.mu.Unlock()
		return status("OK")
	}
	sr.status = "OK"
	sr.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		s.streamKick(r)
	}()
	return status("OK")
}

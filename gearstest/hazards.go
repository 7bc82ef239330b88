package gearstest

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// A hazard is a client action that crashes or hangs a real RedisGears 1.2.13 (gears-spec.md §8.1).
// gearstest refuses it (the action fails with an error whose code is HAZARD, naming what the real
// server does), logs it and counts it, and Run fails the test in which one happened (unless the
// server was started with AllowHazards). Suites that pass on gearstest then do not take a real server
// down.
//
// Every hazard is one entry of hazardTable; its detection point calls Server.hazard (Go side) or the
// worker's hazard() (python/runtime.py, python/worker.py), which asks Go for the text with a `hazard`
// message (python/PROTOCOL.md). Adding one is one entry plus its detection point.
type hazardDef struct {
	id       string // K1, C1, … as in gears-spec.md §8.1
	action   string // what the client does
	outcome  string // what the real server does then
	evidence string // where it was observed
	format   string // the error text; %s (at most one) is the detail the detection point gives
	detected string // where gearstest detects it
}

// hazardTable lists every hazard gearstest detects.
var hazardTable = []hazardDef{
	{
		id:       "K1",
		action:   "two RG.PYEXECUTE … ID s of one session id in flight at once (create, UPGRADE, REPLACE_WITH)",
		outcome:  "crash (SIGSEGV in RedisGearsPy_AddSessionRequirementsToDict)",
		evidence: "gears-spec.md §8.1 K1, §8 'Crash hazard: concurrent RG.PYEXECUTE of one session id'",
		format:   "HAZARD concurrent RG.PYEXECUTE of session '%s': this crashes RedisGears 1.2.13 (SIGSEGV)",
		detected: "rg.go cmdPyExecute (beginPyExecute, at the command's arrival)",
	},
	{
		id:       "K2",
		action:   "execute() or atomic() from a thread the script started (threading.Thread)",
		outcome:  "hang of the whole server (the thread holds the GIL and waits for the Redis lock)",
		evidence: "gears-spec.md §8.1 K2, §8 'Deadlock hazard'",
		format: "HAZARD %s from a thread the script started: this hangs RedisGears 1.2.13 (GIL vs Redis lock); " +
			"resolve a gearsFuture from the thread and do the Redis work in the next step",
		detected: "python/runtime.py _current_token and atomic.__enter__",
	},
	{
		id:       "C1",
		action:   "RG.NETWORKTEST on a server that is not in a cluster",
		outcome:  "crash (SIGSEGV in Cluster_MsgArrive)",
		evidence: "gears-spec.md §8.1 C1",
		format:   "HAZARD RG.NETWORKTEST outside a cluster: this crashes RedisGears 1.2.13 (SIGSEGV)",
		detected: "rg.go cmdNetworkTest (gearstest is never a cluster)",
	},
	{
		id:       "C2",
		action:   "execute('WAIT', …) in a gear function (any mode)",
		outcome:  "crash (assertion in module.c: blocked client)",
		evidence: "gears-spec.md §8.1 C2",
		format:   "HAZARD execute('WAIT') in a gear function: this crashes RedisGears 1.2.13 (assertion: blocked client)",
		detected: "python/runtime.py execute",
	},
	{
		id:       "C3",
		action:   "execute('SYNC') in a gear function",
		outcome:  "crash",
		evidence: "gears-spec.md §8.1 C3",
		format:   "HAZARD execute('SYNC') in a gear function: this crashes RedisGears 1.2.13",
		detected: "python/runtime.py execute",
	},
	{
		id:       "C4",
		action:   "execute('PSYNC', …) in a gear function",
		outcome:  "crash",
		evidence: "gears-spec.md §8.1 C4",
		format:   "HAZARD execute('PSYNC') in a gear function: this crashes RedisGears 1.2.13",
		detected: "python/runtime.py execute",
	},
	{
		id:       "C5",
		action:   "a sync-mode function runs CLIENT KILL matching its own caller",
		outcome:  "crash (async mode: safe)",
		evidence: "gears-spec.md §8.1 C5",
		format:   "HAZARD execute('CLIENT', 'KILL', %s) can kill the caller of a sync execution: this crashes RedisGears 1.2.13",
		detected: "python/runtime.py execute (_client_kill_may_hit_caller)",
	},
	{
		id:       "C6",
		action:   "a convertToStr=False function returns a list nested ~100,000 deep",
		outcome:  "crash (stack overflow while writing the reply)",
		evidence: "gears-spec.md §8.1 C6",
		format:   "HAZARD %s: this crashes RedisGears 1.2.13 (stack overflow while writing the reply)",
		detected: "python/worker.py Worker.finish (encode_deep; bound MAX_REPLY_DEPTH)",
	},
	{
		id:       "C7",
		action:   "recursion after sys.setrecursionlimit(1000000)",
		outcome:  "crash (stack overflow; with the default limit: a RecursionError reply)",
		evidence: "gears-spec.md §8.1 C7",
		format:   "HAZARD %s: recursion that deep crashes RedisGears 1.2.13 (C stack overflow)",
		detected: "python/runtime.py _setrecursionlimit (bound MAX_RECURSION_LIMIT)",
	},
	{
		id:       "H1",
		action:   "RG.ABORTEXECUTION of an async def function that does not yield (while True: pass)",
		outcome:  "the abort replies OK and the caller gets [], but the function keeps running and every other async def function hangs for good",
		evidence: "gears-spec.md §8.1 H1",
		format: "HAZARD RG.ABORTEXECUTION of %s while its async def function runs without yielding: on RedisGears 1.2.13 " +
			"the function keeps running and every other async def function hangs",
		detected: "python/worker.py dispatch 'abort' (the coroutine is running, not suspended at an await)",
	},
}

func hazardByID(id string) *hazardDef {
	for i := range hazardTable {
		if hazardTable[i].id == id {
			return &hazardTable[i]
		}
	}
	return nil
}

// text returns the error text of the hazard with detail.
func (h *hazardDef) text(detail string) string {
	if strings.Contains(h.format, "%s") {
		return fmt.Sprintf(h.format, detail)
	}
	return h.format
}

// HazardEvent is one hazard that happened on a server: a client action that gearstest refused (or,
// for H1, only reported) because it crashes or hangs a real RedisGears 1.2.13.
type HazardEvent struct {
	ID       string    // the hazard's id in gears-spec.md §8.1: K1, K2, C1 … C7, H1
	Text     string    // the error text, "HAZARD …"
	Outcome  string    // what the real server does
	Evidence string    // where that was observed
	Time     time.Time // when it happened
}

// AllowHazards lets a test served by Run pass although hazards happened during it (a test of the
// hazard detection itself, say). The hazards are still refused, logged and counted.
func AllowHazards() Option { return func(o *options) { o.allowHazards = true } }

// hazards is a server's hazard record and its RG.PYEXECUTE in-flight marks (K1).
type hazards struct {
	mu       sync.Mutex
	events   []HazardEvent
	counts   map[string]int64
	inflight map[string]bool // session ids with an RG.PYEXECUTE between its arrival and its reply
	changed  chan struct{}   // closed and replaced on every event (for tests that wait for one)
}

// Hazards returns the hazards that happened on this server so far, oldest first.
func (s *Server) Hazards() []HazardEvent {
	s.hz.mu.Lock()
	defer s.hz.mu.Unlock()
	return append([]HazardEvent(nil), s.hz.events...)
}

// hazardsChanged returns a channel that is closed at the next hazard event.
func (s *Server) hazardsChanged() <-chan struct{} {
	s.hz.mu.Lock()
	defer s.hz.mu.Unlock()
	if s.hz.changed == nil {
		s.hz.changed = make(chan struct{})
	}
	return s.hz.changed
}

// hazard records hazard id with detail, logs it and returns its error text.
func (s *Server) hazard(id, detail string) string {
	h := hazardByID(id)
	if h == nil {
		// A detection point with an id missing from the table: still refused, still counted.
		h = &hazardDef{id: id, outcome: "unknown", evidence: "none", format: "HAZARD " + id + " %s"}
	}
	text := h.text(detail)
	ev := HazardEvent{ID: h.id, Text: text, Outcome: h.outcome, Evidence: h.evidence, Time: time.Now()}
	s.hz.mu.Lock()
	s.hz.events = append(s.hz.events, ev)
	if s.hz.counts == nil {
		s.hz.counts = map[string]int64{}
	}
	s.hz.counts[h.id]++
	if s.hz.changed != nil {
		close(s.hz.changed)
		s.hz.changed = nil
	}
	s.hz.mu.Unlock()
	s.logf('#', "gearstest: %s [real outcome: %s; %s]", text, h.outcome, h.evidence)
	return text
}

// hazardError records hazard id and returns its error reply.
func (s *Server) hazardError(id, detail string) value {
	return errValue(s.hazard(id, detail))
}

// hazardMessage handles the worker's `hazard <cid> <id> <detail>` (PROTOCOL.md): it records the
// hazard and, unless cid is empty, answers with its error text, which the worker raises.
func (wk *workerProc) hazardMessage(cid []byte, id, detail string) {
	text := wk.s.hazard(id, detail)
	if len(cid) > 0 {
		_ = wk.send(bulk("reply"), bulkBytes(cid), bulk("v"), bulk(text))
	}
}

// beginPyExecute marks the session ids an RG.PYEXECUTE names (its ID, and the session REPLACE_WITH
// replaces) as in flight from the command's arrival until its reply. When one of them already is, the
// command is refused (K1): the real server crashes when two run at once. end clears the marks.
//
// In a cluster the marks are the cluster's: a registration is applied on every shard (cluster_regs.go),
// so two RG.PYEXECUTEs of one session sent to two shards overlap on every shard, as on a real cluster,
// where the second one's apply meets the first one's (FlatExecutionPlane_RegistrationCtxApply asserts
// "registering the same session on two shards at the same time"). The refusal is recorded on the shard
// that received the second one.
func (s *Server) beginPyExecute(ids ...string) (end func(), refused *value) {
	mu, inflight := &s.hz.mu, &s.hz.inflight
	if s.shard != nil {
		mu, inflight = &s.shard.cl.inflightMu, &s.shard.cl.inflight
	}
	mu.Lock()
	if *inflight == nil {
		*inflight = map[string]bool{}
	}
	marks := *inflight
	for _, id := range ids {
		if id != "" && marks[id] {
			mu.Unlock()
			v := s.hazardError("K1", id)
			return func() {}, &v
		}
	}
	var marked []string
	for _, id := range ids {
		if id != "" && !marks[id] {
			marks[id] = true
			marked = append(marked, id)
		}
	}
	mu.Unlock()
	return func() {
		mu.Lock()
		for _, id := range marked {
			delete(marks, id)
		}
		mu.Unlock()
	}, nil
}

// hazardInfo is the "# gearstest" section of INFO: the number of hazards and the count per id.
func (s *Server) hazardInfo() string {
	s.hz.mu.Lock()
	defer s.hz.mu.Unlock()
	var b strings.Builder
	b.WriteString("# gearstest\r\nhazards:")
	b.WriteString(strconv.Itoa(len(s.hz.events)))
	b.WriteString("\r\n")
	ids := make([]string, 0, len(hazardTable))
	for _, h := range hazardTable {
		ids = append(ids, h.id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		b.WriteString("hazards_")
		b.WriteString(id)
		b.WriteString(":")
		b.WriteString(strconv.FormatInt(s.hz.counts[id], 10))
		b.WriteString("\r\n")
	}
	return b.String()
}

// reportHazards fails t (Errorf) with every hazard that happened on s, unless s allows them. Run calls
// it when the test ends, the way the race detector fails a test.
func reportHazards(t testing.TB, s *Server) {
	if s.opts.allowHazards {
		return
	}
	evs := s.Hazards()
	if len(evs) == 0 {
		return
	}
	var b strings.Builder
	fmt.Fprintf(&b, "gearstest: %d hazard(s) during the test; each would crash or hang a real RedisGears 1.2.13 "+
		"(use gearstest.AllowHazards() if the test means it):", len(evs))
	for _, e := range evs {
		fmt.Fprintf(&b, "\n  %s: %s [real outcome: %s; %s]", e.ID, e.Text, e.Outcome, e.Evidence)
	}
	t.Errorf("%s", b.String())
}

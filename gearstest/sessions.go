package gearstest

import (
	"errors"
	"sort"
)

// sessionPlan is how a PYEXECUTE applies to the sessions.
type sessionPlan struct {
	mode     string   // the exec mode: create, upgrade or replace
	replaced value    // the session it replaces, as a protocol value (nil for create)
	old      *session // the session it replaces, or nil
}

// sessionPlan decides how a PYEXECUTE applies to the sessions, or returns the real server's error.
func (st *state) sessionPlan(id, replaceWith string, upgrade bool) (sessionPlan, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	existing := st.sessions[id]
	switch {
	case replaceWith != "":
		if existing != nil {
			return sessionPlan{}, errors.New(msgReplaceExisting(id, replaceWith))
		}
		old := st.sessions[replaceWith]
		if old == nil {
			return sessionPlan{}, errors.New(msgReplaceMissing(replaceWith))
		}
		return sessionPlan{"replace", bulk(replaceWith), old}, nil
	case existing != nil:
		if !upgrade {
			return sessionPlan{}, errors.New(msgSessionExists(id))
		}
		return sessionPlan{"upgrade", bulk(id), existing}, nil
	}
	return sessionPlan{"create", nilValue(), nil}, nil
}

// recordReqs stores the requirement metadata the worker reported.
func (st *state) recordReqs(list value) {
	st.mu.Lock()
	defer st.mu.Unlock()
	for _, ri := range list.Arr {
		if len(ri.Arr) < 5 {
			continue
		}
		rq := &requirement{name: ri.Arr[0].String(), basePath: ri.Arr[1].String(),
			downloaded: ri.Arr[3].Int != 0 || ri.Arr[3].String() == "1", installed: ri.Arr[4].Int != 0 || ri.Arr[4].String() == "1"}
		for _, w := range ri.Arr[2].Arr {
			rq.wheels = append(rq.wheels, w.String())
		}
		st.reqs[rq.name] = rq
	}
}

// commit applies a PYEXECUTE that registered something: the old session (UPGRADE/REPLACE_WITH) and
// its registrations go, the new ones come. On the shard that ran the script (from nil) it consumes the
// ids of the internal registration plan and execution (see state) and returns them. A cluster's other
// shards apply the registrations with the ids the origin gave them and run the origin's ShardIDReader
// execution under its ids (from: the origin's internal plan and execution): they consume no id, but a
// received id moves the counter past it (src/common.c SetId: lastID = MAX(id + 1, lastID)), so the next
// id a shard makes is above every id it has seen.
func (st *state) commit(ss *session, old *session, regs []value, from *internalIDs) (made internalIDs) {
	st.mu.Lock()
	defer st.mu.Unlock()
	if from == nil {
		made = st.internalPlanLocked()
	} else {
		st.sawIDsLocked(from.fep, from.ep)
		for _, rv := range regs {
			if len(rv.Arr) > 0 {
				if n, ok := parseID(rv.Arr[0].String()); ok {
					st.sawIDsLocked(n, -1)
				}
			}
		}
	}
	ss.replica = from != nil
	if old != nil {
		for _, id := range old.regIDs {
			if r := st.regs[id]; r != nil {
				delete(st.regs, id)
				if st.triggers[r.trigger] == r {
					delete(st.triggers, r.trigger)
				}
			}
		}
		delete(st.sessions, old.id)
		old.regIDs = nil
		st.unlinkLocked(old)
	}
	st.sessSeq++
	ss.seq = st.sessSeq
	for _, rv := range regs {
		a := rv.Arr
		if len(a) < 7 {
			continue
		}
		r := &registration{id: a[0].String(), reader: a[1].String(), mode: a[3].String(), trigger: a[4].String(),
			inorder: a[5].Int != 0 || a[5].String() == "1", steps: a[6], sess: ss}
		if a[2].Kind == kindBulk {
			r.desc, r.hasDesc = a[2].String(), true
		}
		if len(a) > 7 {
			r.ev = parseEventReg(r.reader, a[7]) // KeysReader/StreamReader (events.go)
		}
		st.regs[r.id] = r
		if r.reader == "CommandReader" && r.ev == nil { // hooks are not triggers (events.go)
			st.triggers[r.trigger] = r
		}
		ss.regIDs = append(ss.regIDs, r.id)
	}
	ss.origRegIDs = append([]string(nil), ss.regIDs...)
	st.sessions[ss.id] = ss
	return made
}

// unregister removes registration id from the state (RG.UNREGISTER). It reports whether it existed
// and returns its session when that lost its last registration and was dropped.
func (st *state) unregister(id string) (dropped *session, ok bool) {
	st.mu.Lock()
	defer st.mu.Unlock()
	r := st.regs[id]
	if r == nil {
		return nil, false
	}
	delete(st.regs, id)
	if st.triggers[r.trigger] == r {
		delete(st.triggers, r.trigger)
	}
	ss := r.sess
	if ss == nil {
		return nil, true
	}
	for i, rid := range ss.regIDs {
		if rid == id {
			ss.regIDs = append(ss.regIDs[:i:i], ss.regIDs[i+1:]...)
			break
		}
	}
	if len(ss.regIDs) == 0 && st.sessions[ss.id] == ss {
		delete(st.sessions, ss.id)
		st.unlinkLocked(ss)
		return ss, true
	}
	return nil, true
}

// restore re-runs every committed session in a fresh worker, reusing the registration ids, so that
// registrations survive a worker crash. It holds no lock while the scripts run (their top-level
// execute() calls lock per use, as commands keep running meanwhile).
//
// Sessions can only go away during a restore: a PYEXECUTE waits for the worker (Server.worker) and
// an RG.UNREGISTER changes the state, then tells the current worker, which is none yet. publish
// runs final (dropGone) and makes wk the current worker in one step under wmu, so each unregister is
// either seen by dropGone or sent to wk.
func (st *state) restore(wk *workerProc, publish func(final func() error) error) error {
	var restored []*session
	for _, ss := range st.committedSessions() {
		if len(ss.reqs) > 0 {
			res, err := wk.request("reqs", nil, append([]value{bulk("0")}, bulks(ss.reqs)...)...)
			if err != nil {
				return err
			}
			if r := resultArr(res); len(r) > 0 && r[0].String() != "ok" {
				st.s.logf('#', "gearstest: restoring session %s: requirements: %s", ss.id, resultText(res))
			}
		}
		// The script registers what it registered at first, so it gets all the original ids; the
		// registrations unregistered since then are dropped again right after. No lock token: the
		// script's execute() calls lock per use.
		// A session applied from another shard of a cluster is replayed in replica mode again
		// (cluster_regs.go): its top-level execute() calls never ran on this shard.
		flags := ""
		if ss.replica {
			flags = "r"
		}
		res, err := wk.request("exec", nil, bulk(ss.id), descValue(ss.desc, ss.hasDesc), bulk(ss.script),
			bulk("restore"), nilValue(), array(bulks(ss.reqs)...), array(bulks(ss.origRegIDs)...), bulk(""), bulk(flags))
		if err != nil {
			return err
		}
		if r := resultArr(res); len(r) == 0 || r[0].String() != "ok" {
			st.s.logf('#', "gearstest: restoring session %s failed: %s", ss.id, resultText(res))
			continue
		}
		restored = append(restored, ss)
	}
	return publish(func() error { return st.dropGone(wk, restored) })
}

// restoreToken owns the global lock while a restore reads the sessions.
const restoreToken = "~restore"

// committedSessions returns the committed sessions in commit order. It reads them under the global
// lock: a PYEXECUTE commits under it, also when its worker died right after answering.
func (st *state) committedSessions() []*session {
	st.s.lock.acquire(restoreToken)
	defer st.s.lock.release(restoreToken)
	st.mu.Lock()
	defer st.mu.Unlock()
	sessions := make([]*session, 0, len(st.sessions))
	for _, ss := range st.sessions {
		sessions = append(sessions, ss)
	}
	sort.Slice(sessions, func(i, j int) bool { return sessions[i].seq < sessions[j].seq })
	return sessions
}

// dropGone tells a restored worker about the registrations (and sessions) unregistered since their
// session was committed: the script registered them again under their original ids. It does not wait
// for the answers (it runs under wmu): the worker reads these before anything sent after them.
func (st *state) dropGone(wk *workerProc, restored []*session) error {
	var gone, dropped []value
	st.mu.Lock()
	for _, ss := range restored {
		for _, id := range ss.origRegIDs {
			if st.regs[id] == nil {
				gone = append(gone, bulk(id))
			}
		}
		if st.sessions[ss.id] != ss {
			dropped = append(dropped, bulk(ss.id))
		}
	}
	st.mu.Unlock()
	if len(gone) > 0 {
		if err := wk.post("unregister", gone...); err != nil {
			return err
		}
	}
	for _, sid := range dropped {
		if err := wk.post("dropsession", sid); err != nil {
			return err
		}
	}
	return nil
}

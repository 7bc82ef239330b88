package gearstest

import "sort"

// sessionPlan decides how a PYEXECUTE applies to the sessions: its exec mode, the session it replaces
// (as a protocol value and as a session), or the error reply. The caller holds sessMu.
func (st *state) sessionPlan(id, replaceWith string, upgrade bool) (string, value, *session, *value) {
	st.mu.Lock()
	defer st.mu.Unlock()
	fail := func(msg string) (string, value, *session, *value) {
		v := errValue(msg)
		return "", value{}, nil, &v
	}
	existing := st.sessions[id]
	switch {
	case replaceWith != "":
		if existing != nil {
			return fail(msgReplaceExisting(id, replaceWith))
		}
		old := st.sessions[replaceWith]
		if old == nil {
			return fail(msgReplaceMissing(replaceWith))
		}
		return "replace", bulk(replaceWith), old, nil
	case existing != nil:
		if !upgrade {
			return fail(msgSessionExists(id))
		}
		return "upgrade", bulk(id), existing, nil
	}
	return "create", nilValue(), nil, nil
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
// its registrations go, the new ones come. It consumes the ids of the internal registration plan and
// execution (see state).
func (st *state) commit(ss *session, old *session, regs []value) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.fepID++
	st.epID++
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
		st.regs[r.id] = r
		if r.reader == "CommandReader" {
			st.triggers[r.trigger] = r
		}
		ss.regIDs = append(ss.regIDs, r.id)
	}
	ss.origRegIDs = append([]string(nil), ss.regIDs...)
	st.sessions[ss.id] = ss
}

// restore re-runs every committed session in a fresh worker, reusing the registration ids, so that
// registrations survive a worker crash.
//
// It runs under the session lock and calls publish (which makes wk the current worker) before letting
// go of it, so that a PYEXECUTE or UNREGISTER either changes the state before the restore reads it, or
// finds the new worker in place. publish runs final first, under the lock that guards the current
// worker: an RG.UNREGISTER inside MULTI/EXEC does not wait for the session lock of a restore (the
// restore's scripts take the global lock EXEC holds), and final drops what it removed meanwhile.
func (st *state) restore(wk *workerProc, publish func(final func() error) error) error {
	st.restoring.Add(1)
	defer st.restoring.Add(-1)
	st.sessMu.Lock()
	defer st.sessMu.Unlock()
	st.mu.Lock()
	sessions := make([]*session, 0, len(st.sessions))
	for _, ss := range st.sessions {
		sessions = append(sessions, ss)
	}
	st.mu.Unlock()
	sort.Slice(sessions, func(i, j int) bool { return sessions[i].seq < sessions[j].seq })
	var restored []*session
	for _, ss := range sessions {
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
		// registrations unregistered since then are dropped again right after.
		res, err := wk.request("exec", nil, bulk(ss.id), descValue(ss.desc, ss.hasDesc), bulk(ss.script),
			bulk("restore"), nilValue(), array(bulks(ss.reqs)...), array(bulks(ss.origRegIDs)...),
			// No lock token: the restore does not hold the global lock (commands keep running while
			// the worker restarts), so the script's execute() calls lock per use.
			bulk(""))
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

// dropGone tells a restored worker about the registrations (and sessions) unregistered since their
// session was committed: the script registered them again under their original ids.
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
		if _, err := wk.request("unregister", nil, gone...); err != nil {
			return err
		}
	}
	for _, sid := range dropped {
		if _, err := wk.request("dropsession", nil, sid); err != nil {
			return err
		}
	}
	return nil
}

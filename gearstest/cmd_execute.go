package gearstest

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strings"
)

// RG.PYEXECUTE (redisgears_python.c RedisGearsPy_Execute) in four steps: parse the options, check
// the sessions and install the requirements (without the global lock), run the script and commit
// what it registered (under the global lock, as on the real server's main thread: runScript), then
// wait for the run() it started, if any (without the lock).
//
// A script whose top level blocks (time.sleep, a socket) holds the global lock, hence stalls every
// other client, for as long as it runs: it runs on a real server's main thread, which stalls the same
// way (as a blocking sync function does, gears-spec.md §8.1 H2).
// It ends when the script returns, or when the worker dies (KillWorker, a crash) or the server
// closes: the exec request then fails, and the lock is released.

// pyExecuteArgs are the options of one RG.PYEXECUTE.
type pyExecuteArgs struct {
	script                     string
	unblocking, upgrade, force bool
	id, replaceWith, desc      string
	hasDesc                    bool
	reqs                       []string
}

// parsePyExecute reads RG.PYEXECUTE's arguments (args[0] is the command name).
func parsePyExecute(args [][]byte) (pyExecuteArgs, error) {
	a := pyExecuteArgs{script: string(args[1])}
	next := func(i *int, missing string) (string, error) {
		if *i+1 >= len(args) {
			return "", errors.New(missing)
		}
		*i++
		return string(args[*i]), nil
	}
	var err error
	for i := 2; i < len(args) && err == nil; i++ {
		switch w := string(args[i]); strings.ToUpper(w) {
		case "UNBLOCKING":
			a.unblocking = true
		case "UPGRADE":
			a.upgrade = true
		case "FORCE_REINSTALL_REQUIREMENTS":
			a.force = true
		case "ID":
			if a.id, err = next(&i, msgIDMissing); err == nil && !validSessionID(a.id) {
				err = errors.New(msgBadSessionID)
			}
		case "DESCRIPTION":
			a.desc, err = next(&i, msgDescMissing)
			a.hasDesc = err == nil
		case "REPLACE_WITH":
			a.replaceWith, err = next(&i, msgReplaceWithMissing)
		case "REQUIREMENTS":
			for _, r := range args[i+1:] {
				a.reqs = append(a.reqs, string(r))
			}
			i = len(args)
		default:
			err = errors.New(msgUnknownArgument(w))
		}
	}
	return a, err
}

// cmdPyExecute implements RG.PYEXECUTE. It takes the global lock only in runScript.
func cmdPyExecute(s *Server, c *client, args [][]byte) value {
	if c.inExec {
		return errValue(msgGearsInMulti)
	}
	a, err := parsePyExecute(args)
	if err != nil {
		return errValue(err.Error())
	}
	// K1 (hazards.go): the session ids this command names are in flight from here, before it waits
	// for anything (requirements, the lock), until its reply; a second one meanwhile is refused.
	end, refused := s.beginPyExecute(a.id, a.replaceWith)
	if refused != nil {
		return *refused
	}
	defer end()
	if a.id == "" {
		a.id = randomHex40() // a random id cannot collide: not marked
	}
	// The session checks come first (as in RedisGearsPy_Execute); requirements are installed without
	// the lock, as the real server installs them on a background thread while the client is
	// blocked, and the checks are made again under the lock before the script runs.
	if _, err := s.state.sessionPlan(a.id, a.replaceWith, a.upgrade); err != nil {
		return errValue(err.Error())
	}
	if err := s.installReqs(a.reqs, a.force); err != nil {
		return errValue(err.Error())
	}
	e, applied, err := s.runScript(c, a)
	switch {
	case err != nil:
		return errValue(err.Error())
	case applied != nil && s.shard != nil:
		// A cluster applies the registrations on every shard before replying (cluster_regs.go).
		if errs := s.replicate(a, applied); len(errs) > 0 {
			return array(errs...)
		}
		return status("OK")
	case e == nil:
		return status("OK")
	case a.unblocking:
		return bulk(e.id)
	}
	return s.waitRun(e)
}

// installReqs makes the requirements importable in the worker (pip) and records what it reports.
func (s *Server) installReqs(reqs []string, force bool) error {
	if len(reqs) == 0 {
		return nil
	}
	f := "0"
	if force {
		f = "1"
	}
	res, err := s.request("reqs", nil, append([]value{bulk(f)}, bulks(reqs)...)...)
	if err != nil {
		return err
	}
	r := resultArr(res)
	if len(r) == 0 || r[0].String() != "ok" {
		return errors.New(resultText(res))
	}
	if len(r) > 1 {
		s.state.recordReqs(r[1])
	}
	return nil
}

// runScript runs the script and commits what it registered under the global lock, owned by the
// connection's token, which the worker passes back on the script's own execute()/atomic() calls
// (RedisGearsPy_Execute runs it on the main thread, the apply of its registrations and their
// onRegistered included). It returns the run() execution the script started, if it registered
// nothing: that one runs after the script, on the real server's thread pool, and nobody waits for it
// under the lock. When the script registered something, it returns what it committed instead.
func (s *Server) runScript(c *client, a pyExecuteArgs) (*execution, *appliedSession, error) {
	// The worker is fetched before the lock: a restart takes the lock to read the sessions it restores.
	wk, err := s.worker()
	if err != nil {
		return nil, nil, err
	}
	release := s.holdLock(c)
	defer release()
	st := s.state
	plan, err := st.sessionPlan(a.id, a.replaceWith, a.upgrade)
	if err != nil {
		return nil, nil, err
	}
	res, err := wk.request("exec", nil, bulk(a.id), descValue(a.desc, a.hasDesc), bulk(a.script), bulk(plan.mode),
		plan.replaced, array(bulks(a.reqs)...), nilValue(), bulk(c.token))
	if err != nil {
		return nil, nil, err
	}
	r := resultArr(res)
	if len(r) == 0 || r[0].String() != "ok" {
		return nil, nil, errors.New(resultText(res))
	}
	if len(r) > 1 && len(r[1].Arr) > 0 {
		ss := &session{id: a.id, desc: a.desc, hasDesc: a.hasDesc, reqs: a.reqs, script: a.script}
		made := st.commit(ss, plan.old, r[1].Arr, nil)
		applied := &appliedSession{regIDs: append([]string(nil), ss.origRegIDs...), plan: made}
		if plan.old != nil {
			applied.replaced = plan.old.id
		}
		return nil, applied, nil
	}
	if len(r) < 3 || r[2].Kind != kindBulk {
		return nil, nil, nil
	}
	e := st.getExecution(r[2].String())
	if e == nil {
		return nil, nil, errors.New(msgNoPlan)
	}
	return e, nil, nil
}

// waitRun waits for a run() execution (without any lock), drops it and replies its results.
func (s *Server) waitRun(e *execution) value {
	select {
	case <-e.done:
	case <-s.stop:
		return errValue(errServerClosed.Error())
	}
	s.state.dropExecution(e)
	return resultsAndErrors(e)
}

// randomHex40 returns a random session id, as RG.PYEXECUTE without ID makes one.
func randomHex40() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// validSessionID reports whether id uses only the characters RG.PYEXECUTE … ID accepts.
func validSessionID(id string) bool {
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

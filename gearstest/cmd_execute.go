package gearstest

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

func randomHex40() string {
	var b [20]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func validSessionID(id string) bool {
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// cmdPyExecute implements RG.PYEXECUTE (redisgears_python.c RedisGearsPy_Execute).
func cmdPyExecute(s *Server, c *client, args [][]byte) value {
	if c.inExec {
		return errValue(msgGearsInMulti)
	}
	script := string(args[1])
	var (
		unblocking, upgrade, force, hasDesc bool
		id, desc, replaceWith               string
		reqs                                []string
	)
	for i := 2; i < len(args); i++ {
		w := string(args[i])
		switch strings.ToUpper(w) {
		case "UNBLOCKING":
			unblocking = true
		case "UPGRADE":
			upgrade = true
		case "FORCE_REINSTALL_REQUIREMENTS":
			force = true
		case "ID":
			if i+1 >= len(args) {
				return errValue(msgIDMissing)
			}
			i++
			id = string(args[i])
			if !validSessionID(id) {
				return errValue(msgBadSessionID)
			}
		case "DESCRIPTION":
			if i+1 >= len(args) {
				return errValue(msgDescMissing)
			}
			i++
			desc, hasDesc = string(args[i]), true
		case "REPLACE_WITH":
			if i+1 >= len(args) {
				return errValue(msgReplaceWithMissing)
			}
			i++
			replaceWith = string(args[i])
		case "REQUIREMENTS":
			for _, r := range args[i+1:] {
				reqs = append(reqs, string(r))
			}
			i = len(args)
		default:
			return errValue(msgUnknownArgument(w))
		}
	}
	// K1 (hazards.go): the session ids this command names are in flight from here, before it waits
	// for anything (requirements, the locks), until its reply; a second one meanwhile is refused.
	end, refused := s.beginPyExecute(id, replaceWith)
	if refused != nil {
		return *refused
	}
	defer end()
	st := s.state
	if id == "" {
		id = randomHex40() // a random id cannot collide: not marked
	}
	// The session checks come first (as in RedisGearsPy_Execute); requirements are installed without
	// the session lock, as the real server installs them on a background thread, and the checks are
	// made again before the script runs.
	st.sessMu.Lock()
	_, _, _, errV := st.sessionPlan(id, replaceWith, upgrade)
	st.sessMu.Unlock()
	if errV != nil {
		return *errV
	}
	if len(reqs) > 0 {
		f := "0"
		if force {
			f = "1"
		}
		res, err := s.request("reqs", nil, append([]value{bulk(f)}, bulks(reqs)...)...)
		if err != nil {
			return errValue(err.Error())
		}
		r := resultArr(res)
		if len(r) == 0 || r[0].String() != "ok" {
			return errValue(resultText(res))
		}
		if len(r) > 1 {
			st.recordReqs(r[1])
		}
	}
	// The worker is fetched before the session lock: a restart restores sessions under that lock.
	wk, err := s.worker()
	if err != nil {
		return errValue(err.Error())
	}
	// The script runs and commits as on Redis' main thread (RedisGearsPy_Execute runs it there, the
	// apply of its registrations and their onRegistered included): under the global lock, owned by
	// this connection's token, which the worker passes back on the script's own execute()/atomic()
	// calls. The requirements above were installed without it, as the real server installs them in
	// the background while the client is blocked.
	tok := c.token
	s.lockForScript(tok)
	locked := true
	unlock := func() {
		if locked {
			locked = false
			st.sessMu.Unlock()
			s.lock.release(tok)
		}
	}
	defer unlock()
	mode, replaced, old, errV := st.sessionPlan(id, replaceWith, upgrade)
	if errV != nil {
		return *errV
	}
	res, err := wk.request("exec", nil, bulk(id), descValue(desc, hasDesc), bulk(script), bulk(mode), replaced,
		array(bulks(reqs)...), nilValue(), bulk(tok))
	if err != nil {
		return errValue(err.Error())
	}
	r := resultArr(res)
	if len(r) == 0 || r[0].String() != "ok" {
		return errValue(resultText(res))
	}
	var regs []value
	if len(r) > 1 {
		regs = r[1].Arr
	}
	execID := nilValue()
	if len(r) > 2 {
		execID = r[2]
	}
	if len(regs) > 0 {
		st.commit(&session{id: id, desc: desc, hasDesc: hasDesc, reqs: reqs, script: script}, old, regs)
		return status("OK")
	}
	// A run() the script started executes after the script returned, on the real server's thread
	// pool: nobody waits for it under the lock.
	unlock()
	if execID.Kind != kindBulk {
		return status("OK")
	}
	e := st.getExecution(execID.String())
	if e == nil {
		return errValue(msgNoPlan)
	}
	if unblocking {
		return bulk(e.id)
	}
	select {
	case <-e.done:
	case <-s.stop:
		return errValue(errServerClosed.Error())
	}
	st.dropExecution(e)
	return resultsAndErrors(e)
}

// lockForScript takes the global lock for tok, then the session lock. It only tries the session lock
// while it holds the global one and else waits for the session lock holding nothing: a restore holds
// the session lock while its scripts take the global lock per call, and RG.UNREGISTER inside
// MULTI/EXEC takes the session lock under EXEC's global lock.
func (s *Server) lockForScript(tok string) {
	st := s.state
	for {
		s.lock.acquire(tok)
		if st.sessMu.TryLock() {
			return
		}
		s.lock.release(tok)
		st.sessMu.Lock()
		st.sessMu.Unlock() //nolint:staticcheck // only waiting for the holder to finish
	}
}

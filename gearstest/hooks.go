package gearstest

import (
	"strings"

	"github.com/tidwall/redcon"
)

// msgHookOneResult is the error of a hook whose function did not give exactly one record.
const msgHookOneResult = "Command hook must return exactly one result"

// hookFor returns the hook registration that takes a client command: the last registered hook of the
// command (docs/commands_hook.md: the last registered runs first) whose keyprefix, if any, the
// command's first key starts with.
//
// Assumptions: only that one hook runs (call_next calls the command itself, not an earlier hook of the
// same command); the first key is the first argument; commands inside MULTI, and execute() calls from
// functions, are not hooked.
func (st *state) hookFor(args [][]byte) *registration {
	st.mu.Lock()
	defer st.mu.Unlock()
	var best *registration
	var bestN int64
	for _, r := range st.regs {
		if r.ev == nil || r.ev.hook == "" || !strings.EqualFold(r.ev.hook, string(args[0])) {
			continue
		}
		if r.ev.keyprefix != "" && (len(args) < 2 || !strings.HasPrefix(string(args[1]), r.ev.keyprefix)) {
			continue
		}
		if n, _ := parseID(r.id); best == nil || n > bestN {
			best, bestN = r, n
		}
	}
	return best
}

// runHook runs a client command through its hook, if it has one, and writes the reply: the hook's one
// result (gears-spec §2.4 end). It reports whether the command was hooked.
func (s *Server) runHook(conn redcon.Conn, c *client, args [][]byte) bool {
	if len(args) == 0 {
		return false
	}
	r := s.state.hookFor(args)
	if r == nil {
		return false
	}
	wk, err := s.worker()
	if err != nil {
		c.write(conn, errValue(err.Error()))
		return true
	}
	release := s.holdLock(c)
	defer release()
	ex := s.state.startEvent(r)
	msg := make([]value, 0, 4+len(args))
	msg = append(msg, bulk(r.id), bulk(ex.id), bulk(c.token), bulk("h"))
	for _, a := range args {
		msg = append(msg, bulkBytes(a))
	}
	res, err := wk.request("trigger", nil, msg...)
	release()
	records, errs := s.state.finishTrigger(r, ex, res, err)
	switch {
	case len(errs) > 0:
		c.write(conn, errValue(errs[0].String()))
	case len(records) != 1:
		c.write(conn, errValue(msgHookOneResult))
	default:
		c.write(conn, records[0])
	}
	return true
}

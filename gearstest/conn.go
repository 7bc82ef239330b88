package gearstest

import (
	"bufio"
	"bytes"
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"

	"github.com/tidwall/redcon"
)

// client is the per-connection state.
type client struct {
	id    int64
	token string // global lock owner token of this connection
	resp3 bool
	be    *storeConn // this client's own data store connection, dialed on first use

	inMulti  bool
	inExec   bool       // running the queue of EXEC
	multiErr bool       // a queue-time error: EXEC answers EXECABORT
	queued   int        // commands queued so far
	rgQueue  []rgQueued // RG commands queued, with their position in the transaction

	out []byte // scratch buffer for encoding replies
}

type rgQueued struct {
	pos  int
	args [][]byte
}

func (s *Server) accept(conn redcon.Conn) bool {
	if s.closed.Load() {
		return false
	}
	id := s.nextCid.Add(1)
	conn.SetContext(&client{id: id, token: "c" + strconv.FormatInt(id, 10)})
	return true
}

func (s *Server) closedConn(conn redcon.Conn, err error) {
	if c, ok := conn.Context().(*client); ok && c.be != nil {
		c.be.close()
		c.be = nil
	}
}

func (c *client) write(conn redcon.Conn, v Value) {
	c.out = appendValue(c.out[:0], v, c.resp3)
	conn.WriteRaw(c.out)
}

func (s *Server) backend(c *client) (*storeConn, error) {
	if c.be != nil {
		return c.be, nil
	}
	be, err := s.st.dial()
	if err != nil {
		return nil, err
	}
	c.be = be
	return be, nil
}

// serveCommand handles one client command. Nothing a client sends may crash the server: a panic is
// logged and answered with an error.
func (s *Server) serveCommand(conn redcon.Conn, cmd redcon.Command) {
	c, _ := conn.Context().(*client)
	if c == nil {
		conn.Close()
		return
	}
	defer func() {
		if r := recover(); r != nil {
			s.logf('#', "gearstest: panic handling %q: %v\n%s", cmd.Args[0], r, debug.Stack())
			conn.WriteError(fmt.Sprintf("ERR gearstest internal error: %v", r))
		}
	}()
	if len(cmd.Args) == 0 {
		return
	}
	name := strings.ToUpper(string(cmd.Args[0]))
	if c.inMulti {
		switch name {
		case "EXEC", "DISCARD", "MULTI", "WATCH", "QUIT", "RESET":
		default:
			s.queueCommand(conn, c, name, cmd.Args)
			return
		}
	}
	if h, ok := rgCommands[name]; ok {
		if !h.checkArity(len(cmd.Args)) {
			conn.WriteError("ERR wrong number of arguments for '" + strings.ToLower(name) + "' command")
			return
		}
		c.write(conn, s.runRG(c, h, cmd.Args))
		return
	}
	switch name {
	case "QUIT":
		conn.WriteString("OK")
		conn.Close()
		return
	case "EXEC":
		if c.inMulti {
			s.exec(conn, c)
			return
		}
	case "DISCARD":
		if c.inMulti {
			c.resetMulti()
		}
	case "MULTI":
		if c.inMulti {
			conn.WriteError("ERR MULTI calls can not be nested")
			return
		}
	case "CLIENT":
		if len(cmd.Args) >= 2 && s.st.mini != nil {
			switch strings.ToUpper(string(cmd.Args[1])) {
			case "SETINFO":
				// miniredis lacks it; go-redis sends it in its handshake.
				if len(cmd.Args) != 4 {
					conn.WriteError("ERR wrong number of arguments for 'client|setinfo' command")
				} else {
					conn.WriteString("OK")
				}
				return
			case "ID":
				conn.WriteInt64(c.id)
				return
			}
		}
	case "HELLO":
		raw := s.forward(conn, c, name, cmd.Args)
		if len(raw) > 0 && raw[0] != '-' && len(cmd.Args) > 1 {
			c.resp3 = string(cmd.Args[1]) == "3"
		}
		return
	}
	raw := s.forward(conn, c, name, cmd.Args)
	if name == "MULTI" && len(raw) > 0 && raw[0] == '+' {
		c.inMulti = true
	}
	if name == "RESET" {
		c.resetMulti()
		c.resp3 = false
	}
}

// forward sends a data command to this client's store connection and relays the reply byte for byte.
// Blocking commands run without the global lock so that they do not stall everybody else.
func (s *Server) forward(conn redcon.Conn, c *client, name string, args [][]byte) []byte {
	be, err := s.backend(c)
	if err != nil {
		conn.WriteError("ERR gearstest: data store unavailable: " + err.Error())
		return nil
	}
	blocking := mayBlock(name, args)
	if !blocking {
		s.lock.acquire(c.token)
	}
	raw, err := be.do(args...)
	if !blocking {
		s.lock.release(c.token)
	}
	if err != nil {
		be.close()
		c.be = nil
		conn.WriteError("ERR gearstest: data store: " + err.Error())
		return nil
	}
	conn.WriteRaw(raw)
	return raw
}

func (c *client) resetMulti() {
	c.inMulti, c.multiErr, c.queued, c.rgQueue = false, false, 0, nil
}

// queueCommand handles a command sent between MULTI and EXEC. Data commands are queued in the store's
// own transaction (so it reports unknown commands and arity errors itself); RG commands are queued here.
func (s *Server) queueCommand(conn redcon.Conn, c *client, name string, args [][]byte) {
	if h, ok := rgCommands[name]; ok {
		if !h.checkArity(len(args)) {
			c.multiErr = true
			conn.WriteError("ERR wrong number of arguments for '" + strings.ToLower(name) + "' command")
			return
		}
		c.rgQueue = append(c.rgQueue, rgQueued{pos: c.queued, args: copyArgs(args)})
		c.queued++
		conn.WriteString("QUEUED")
		return
	}
	raw := s.forward(conn, c, name, args)
	if len(raw) > 0 && raw[0] == '+' {
		c.queued++
	}
}

func copyArgs(args [][]byte) [][]byte {
	out := make([][]byte, len(args))
	for i, a := range args {
		out[i] = append([]byte(nil), a...)
	}
	return out
}

// exec runs EXEC. Without queued RG commands the store's EXEC reply is relayed as is. With RG commands
// the data commands run in the store's transaction (which checks WATCH) and the RG commands right
// after, all under the global lock, and the replies are merged back into queue order. Nobody can observe
// the difference except an RG command whose function reads a key that a later data command of the same
// transaction writes.
func (s *Server) exec(conn redcon.Conn, c *client) {
	defer c.resetMulti()
	be, err := s.backend(c)
	if err != nil {
		conn.WriteError("ERR gearstest: data store unavailable: " + err.Error())
		return
	}
	if c.multiErr {
		_, _ = be.do([]byte("DISCARD"))
		conn.WriteError("EXECABORT Transaction discarded because of previous errors.")
		return
	}
	if len(c.rgQueue) == 0 {
		s.forward(conn, c, "EXEC", [][]byte{[]byte("EXEC")})
		return
	}
	s.lock.acquire(c.token)
	defer s.lock.release(c.token)
	raw, err := be.do([]byte("EXEC"))
	if err != nil {
		be.close()
		c.be = nil
		conn.WriteError("ERR gearstest: data store: " + err.Error())
		return
	}
	if len(raw) == 0 || raw[0] != '*' || isNilReply(raw) {
		conn.WriteRaw(raw) // aborted by WATCH (nil) or EXECABORT
		return
	}
	r := bufio.NewReader(bytes.NewReader(raw))
	if _, err := readLine(r); err != nil {
		conn.WriteError("ERR gearstest: bad EXEC reply from the data store")
		return
	}
	out := []byte("*" + strconv.Itoa(c.queued) + "\r\n")
	c.inExec = true
	defer func() { c.inExec = false }()
	q := c.rgQueue
	for pos := 0; pos < c.queued; pos++ {
		if len(q) > 0 && q[0].pos == pos {
			h := rgCommands[strings.ToUpper(string(q[0].args[0]))]
			out = appendValue(out, s.runRG(c, h, q[0].args), c.resp3)
			q = q[1:]
			continue
		}
		if out, err = readRaw(r, out); err != nil {
			conn.WriteError("ERR gearstest: bad EXEC reply from the data store")
			return
		}
	}
	conn.WriteRaw(out)
}

// runRG runs an RG command handler with the locking it asks for.
func (s *Server) runRG(c *client, h *rgCommand, args [][]byte) (v Value) {
	defer func() {
		if r := recover(); r != nil {
			s.logf('#', "gearstest: panic in %s: %v\n%s", args[0], r, debug.Stack())
			v = errValue(fmt.Sprintf("ERR gearstest internal error: %v", r))
		}
	}()
	if h.ownLocking || c.inExec {
		return h.fn(s, c, args)
	}
	s.lock.acquire(c.token)
	defer s.lock.release(c.token)
	return h.fn(s, c, args)
}

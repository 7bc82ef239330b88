package gearstest

import (
	"bufio"
	"bytes"
	"sort"
	"strings"
	"sync"

	"github.com/tidwall/redcon"
)

// commandTable answers COMMAND for the in-process store. miniredis replies to every COMMAND form with
// its whole static table, which breaks clients that send COMMAND DOCS or COUNT (redis-cli asserts on
// it), so gearstest serves the subcommands itself, with the RG.* commands added as a RedisGears server
// lists them (module commands, flag readonly, no keys).
type commandTable struct {
	once    sync.Once
	entries []value
	byName  map[string]value
}

func (s *Server) loadCommandTable() {
	t := &s.commands
	raw, err := s.data.direct([]byte("COMMAND"))
	if err == nil {
		if v, err := readValue(bufio.NewReader(bytes.NewReader(raw))); err == nil {
			t.entries = v.Arr
		}
	}
	names := make([]string, 0, len(rgCommands))
	for name := range rgCommands {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		h := rgCommands[name]
		arity := int64(h.minArgs)
		if h.maxArgs != h.minArgs {
			arity = -arity
		}
		first, last := int64(0), int64(0)
		if name == "RG.TRIGGERONKEY" {
			first, last = 2, 2
		}
		step := int64(0)
		if first > 0 {
			step = 1
		}
		t.entries = append(t.entries, array(bulk(strings.ToLower(name)), integer(arity), array(status("readonly")),
			integer(first), integer(last), integer(step)))
	}
	t.byName = map[string]value{}
	for _, e := range t.entries {
		if len(e.Arr) > 0 {
			t.byName[strings.ToLower(e.Arr[0].String())] = e
		}
	}
}

func (s *Server) command(conn redcon.Conn, c *client, args [][]byte) {
	s.commands.once.Do(s.loadCommandTable)
	t := &s.commands
	if len(args) == 1 {
		c.write(conn, array(t.entries...))
		return
	}
	switch sub := strings.ToUpper(string(args[1])); sub {
	case "COUNT":
		c.write(conn, integer(int64(len(t.entries))))
	case "INFO":
		out := make([]value, 0, len(args)-2)
		for _, n := range args[2:] {
			if e, ok := t.byName[strings.ToLower(string(n))]; ok {
				out = append(out, e)
			} else {
				out = append(out, nilValue())
			}
		}
		c.write(conn, array(out...))
	case "LIST":
		out := make([]value, 0, len(t.entries))
		for _, e := range t.entries {
			out = append(out, e.Arr[0])
		}
		c.write(conn, array(out...))
	case "DOCS":
		// No documentation: an empty reply (a map under RESP3) makes redis-cli fall back to its own.
		if c.resp3 {
			conn.WriteRaw([]byte("%0\r\n"))
		} else {
			conn.WriteRaw([]byte("*0\r\n"))
		}
	default:
		conn.WriteError("ERR unknown subcommand '" + string(args[1]) + "'. Try COMMAND HELP.")
	}
}

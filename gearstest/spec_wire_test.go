package gearstest_test

// Wire forms that go-redis hides (gears-spec.md §0, §2.6, §8): status vs bulk, errors without an ERR
// prefix, error elements inside arrays, RESP3 doubles and nulls; and redis-cli, another client, seeing the
// same replies as go-redis.

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// rawConn is a bare RESP connection returning each reply's exact bytes.
type rawConn struct {
	t  testing.TB
	nc net.Conn
	rd *bufio.Reader
}

// dialRaw connects to addr; with proto 3 it sends HELLO 3 first. The connection is closed by t.Cleanup.
func dialRaw(t testing.TB, addr string, proto int) *rawConn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	rc := &rawConn{t: t, nc: nc, rd: bufio.NewReader(nc)}
	if proto == 3 {
		hello := rc.do("HELLO", "3")
		require.Equal(t, byte('%'), hello.kind, "HELLO 3 reply %q", hello.wire)
	}
	return rc
}

// respNode is one parsed reply with its type byte and exact wire bytes.
type respNode struct {
	kind  byte   // '+', '-', ':', '$', '*', '_', ',', '#', '%', '~', '=', '(', '!', '>'
	str   string // scalar payload
	null  bool   // $-1 / *-1 / _
	elems []respNode
	wire  []byte
}

func (rc *rawConn) do(args ...string) respNode {
	rc.t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "*%d\r\n", len(args))
	for _, a := range args {
		fmt.Fprintf(&b, "$%d\r\n%s\r\n", len(a), a)
	}
	require.NoError(rc.t, rc.nc.SetDeadline(time.Now().Add(2*time.Minute)))
	_, err := rc.nc.Write(b.Bytes())
	require.NoError(rc.t, err)
	var wire bytes.Buffer
	n, err := readNode(rc.rd, &wire)
	require.NoError(rc.t, err, "reading reply to %v", args)
	return n
}

func readNode(rd *bufio.Reader, wire *bytes.Buffer) (respNode, error) {
	start := wire.Len()
	line, err := rd.ReadString('\n')
	if err != nil {
		return respNode{}, err
	}
	wire.WriteString(line)
	if len(line) < 3 || !strings.HasSuffix(line, "\r\n") {
		return respNode{}, fmt.Errorf("bad line %q", line)
	}
	n := respNode{kind: line[0]}
	body := line[1 : len(line)-2]
	switch n.kind {
	case '+', '-', ':', ',', '#', '(':
		n.str = body
	case '_':
		n.null = true
	case '$', '=', '!':
		size, err := strconv.Atoi(body)
		if err != nil {
			return n, err
		}
		if size < 0 {
			n.null = true
			break
		}
		buf := make([]byte, size+2)
		if _, err := ioReadFull(rd, buf); err != nil {
			return n, err
		}
		wire.Write(buf)
		n.str = string(buf[:size])
	case '*', '~', '>', '%':
		count, err := strconv.Atoi(body)
		if err != nil {
			return n, err
		}
		if count < 0 {
			n.null = true
			break
		}
		if n.kind == '%' {
			count *= 2
		}
		for i := 0; i < count; i++ {
			e, err := readNode(rd, wire)
			if err != nil {
				return n, err
			}
			n.elems = append(n.elems, e)
		}
	default:
		return n, fmt.Errorf("unknown reply type %q", n.kind)
	}
	n.wire = append([]byte(nil), wire.Bytes()[start:]...)
	return n, nil
}

func ioReadFull(rd *bufio.Reader, buf []byte) (int, error) {
	read := 0
	for read < len(buf) {
		n, err := rd.Read(buf[read:])
		read += n
		if err != nil {
			return read, err
		}
	}
	return read, nil
}

// bulk is the RESP2 wire form of a bulk string.
func bulk(s string) string { return fmt.Sprintf("$%d\r\n%s\r\n", len(s), s) }

func TestWireForms(t *testing.T) {
	tg := newTarget(t)
	setup := tg.newClient(t, 3)
	trig := setup.regTrigger(".map(lambda x: ['+in', '-out', '+', 'x', 7, 1.5, None])", "mode='sync', convertToStr=False")
	strTrig := setup.regTrigger(".map(lambda x: -5)", "mode='sync'")
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rc := dialRaw(t, tg.addr, proto)
			// Status, not bulk.
			require.Equal(t, "+OK\r\n", string(rc.do("RG.PYEXECUTE", "x = 1").wire))
			// Errors carry no implicit ERR prefix (spec §0).
			require.Equal(t, "-execution plan does not exist\r\n", string(rc.do("RG.GETRESULTS", unknownExec).wire))
			require.Equal(t, "-ERR subcommand not found\r\n", string(rc.do("RG.TRIGGER", uniq(t, "none")).wire))
			// RedisModule_ReplyWithCString is a bulk string.
			require.Equal(t, bulk("no cluster mode"), string(rc.do("RG.INFOCLUSTER").wire))
			require.Equal(t, bulk("Free interpreter is not longer supported"), string(rc.do("RG.PYFREEINTERPRETER").wire))
			// UNBLOCKING replies the execution id as a bulk string.
			id := rc.do("RG.PYEXECUTE", "GB('ShardsIDReader').run()", "UNBLOCKING")
			require.Equal(t, byte('$'), id.kind, "UNBLOCKING reply %q", id.wire)
			// Encoding (§2.6, §8): '+x' status, '-x' error element, lone '+' bulk, float bulk "%lf", None PY RECORD.
			require.Equal(t, "*1\r\n*7\r\n+in\r\n-out\r\n"+bulk("+")+bulk("x")+":7\r\n"+bulk("1.500000")+bulk("PY RECORD"),
				string(rc.do("RG.TRIGGER", trig).wire))
			require.Equal(t, "*1\r\n-5\r\n", string(rc.do("RG.TRIGGER", strTrig).wire))
			// CONFIGSET elements are statuses; unknown CONFIGGET keys are error elements.
			key := uniq(t, "cfg")
			require.Equal(t, "*1\r\n+OK - value was saved in extra config dictionary\r\n", string(rc.do("RG.CONFIGSET", key, "v").wire))
			require.Equal(t, "*1\r\n"+bulk("v"), string(rc.do("RG.CONFIGGET", key).wire))
			require.Equal(t, "*1\r\n-(error) Unsupported config parameter: "+key+"x\r\n", string(rc.do("RG.CONFIGGET", key+"x").wire))
			require.Equal(t, "*1\r\n:1000\r\n", string(rc.do("RG.CONFIGGET", "MaxExecutions").wire))
			// run() results: [[...], []]
			require.Equal(t, "*2\r\n*1\r\n"+bulk("1")+"*0\r\n", string(rc.do("RG.PYEXECUTE", "GB('ShardsIDReader').run()").wire))
		})
	}
}

func TestWireDumpRegistrationsDoubleAndNull(t *testing.T) {
	tg := newTarget(t)
	setup := tg.newClient(t, 3)
	trig := setup.regTrigger("", "mode='sync'")
	setup.expect(L(fmt.Sprintf("['%s']", trig)), "RG.TRIGGER", trig)
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rc := dialRaw(t, tg.addr, proto)
			all := rc.do("RG.DUMPREGISTRATIONS")
			require.Equal(t, byte('*'), all.kind)
			var entry *respNode
			for i := range all.elems {
				e := &all.elems[i]
				data := e.elems[7]
				args := data.elems[len(data.elems)-1]
				if args.elems[1].str == trig {
					entry = e
				}
			}
			require.NotNil(t, entry, "registration of %s not dumped", trig)
			require.Len(t, entry.elems, 12)
			desc := entry.elems[5]
			data := entry.elems[7]
			require.Len(t, data.elems, 20)
			avg := data.elems[15]
			lastErr := data.elems[17]
			require.Equal(t, "avgRunDurationMS", data.elems[14].str)
			if proto == 2 {
				require.Equal(t, "$-1\r\n", string(desc.wire))
				require.Equal(t, "$-1\r\n", string(lastErr.wire))
				require.Equal(t, byte('$'), avg.kind, "avgRunDurationMS %q", avg.wire)
			} else {
				require.Equal(t, "_\r\n", string(desc.wire))
				require.Equal(t, "_\r\n", string(lastErr.wire))
				require.Equal(t, byte(','), avg.kind, "avgRunDurationMS %q", avg.wire)
			}
			_, err := strconv.ParseFloat(avg.str, 64)
			require.NoError(t, err, "avgRunDurationMS %q", avg.str)
			// Integers stay integers.
			require.Equal(t, ":1\r\n", string(data.elems[3].wire))
		})
	}
}

// formatCLI renders a reply the way redis-cli --no-raw prints it (cliFormatReplyTTY).
func formatCLI(n respNode, prefix string) string {
	switch n.kind {
	case '+':
		return n.str + "\n"
	case '-', '!':
		return "(error) " + n.str + "\n"
	case ':':
		return "(integer) " + n.str + "\n"
	case ',':
		return "(double) " + n.str + "\n"
	case '_':
		return "(nil)\n"
	case '$', '=':
		if n.null {
			return "(nil)\n"
		}
		return cliRepr(n.str) + "\n"
	case '*', '~', '%':
		if n.null {
			return "(nil)\n"
		}
		if len(n.elems) == 0 {
			return "(empty array)\n"
		}
		idxlen := len(strconv.Itoa(len(n.elems)))
		inner := prefix + strings.Repeat(" ", idxlen+2)
		var b strings.Builder
		for i, e := range n.elems {
			p := prefix
			if i == 0 {
				p = ""
			}
			fmt.Fprintf(&b, "%s%*d) ", p, idxlen, i+1)
			b.WriteString(formatCLI(e, inner))
		}
		return b.String()
	}
	return fmt.Sprintf("<unformatted %q>\n", n.wire)
}

// cliRepr quotes like sdscatrepr.
func cliRepr(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch ch {
		case '\\', '"':
			b.WriteByte('\\')
			b.WriteByte(ch)
		case '\n':
			b.WriteString(`\n`)
		case '\r':
			b.WriteString(`\r`)
		case '\t':
			b.WriteString(`\t`)
		case '\a':
			b.WriteString(`\a`)
		case '\b':
			b.WriteString(`\b`)
		default:
			if ch >= 0x20 && ch < 0x7f {
				b.WriteByte(ch)
			} else {
				fmt.Fprintf(&b, `\x%02x`, ch)
			}
		}
	}
	b.WriteByte('"')
	return b.String()
}

// nodeCanon converts a raw reply into the canonical go-redis form (see client).
func nodeCanon(n respNode) (any, error) {
	switch n.kind {
	case '+', '$', '=':
		if n.null {
			return nil, nil
		}
		return n.str, nil
	case ':':
		v, err := strconv.ParseInt(n.str, 10, 64)
		return v, err
	case ',':
		return strconv.ParseFloat(n.str, 64)
	case '_':
		return nil, nil
	case '-':
		return nil, fmt.Errorf("%s", n.str)
	case '*':
		out := make([]any, len(n.elems))
		for i, e := range n.elems {
			if e.kind == '-' {
				out[i] = errElem(e.str)
				continue
			}
			v, err := nodeCanon(e)
			if err != nil {
				return nil, err
			}
			out[i] = v
		}
		return out, nil
	}
	return nil, fmt.Errorf("unsupported kind %q", n.kind)
}

func TestRedisCLISeesTheSameReplies(t *testing.T) {
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("redis-cli is not on PATH (install the redis-tools package)")
	}
	tg := newTarget(t)
	setup := tg.newClient(t, 3)
	trig := setup.regTrigger(".map(lambda x: ['+st', '-er', x[1:], 2, b'\\x00\\xff'])", "mode='sync', convertToStr=False")
	host, port, err := net.SplitHostPort(tg.addr)
	require.NoError(t, err)
	commands := [][]string{
		{"RG.PYEXECUTE", "x = 1"},
		{"RG.PYEXECUTE", "GB('ShardsIDReader').count().run()"},
		{"RG.TRIGGER", trig, "a", "b c"},
		{"RG.GETRESULTS", unknownExec},
		{"RG.TRIGGER", uniq(t, "none")},
		{"RG.INFOCLUSTER"},
		{"RG.CONFIGGET", "MaxExecutions", "NoSuchKey" + uniq(t, "k")},
		{"RG.PYDUMPSESSIONS", "SESSIONS", "nosuch"},
		{"RG.PYSTATS"},
	}
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rc := dialRaw(t, tg.addr, proto)
			gc := tg.newClient(t, proto)
			for _, cmd := range commands {
				raw := rc.do(cmd...)
				args := []string{"-h", host, "-p", port, "--no-raw", fmt.Sprintf("-%d", proto)}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				// redis-cli exits non-zero after an error reply; what it printed is what counts.
				out, err := exec.CommandContext(ctx, cli, append(args, cmd...)...).CombinedOutput()
				cancel()
				if raw.kind != '-' {
					require.NoError(t, err, "redis-cli %v: %s", cmd, out)
				}
				if cmd[0] == "RG.PYSTATS" {
					// Memory figures move between the two calls; compare the shape only.
					require.Len(t, strings.Split(strings.TrimSpace(string(out)), "\n"), len(raw.elems), "redis-cli %v: %s", cmd, out)
					continue
				}
				require.Equal(t, formatCLI(raw, ""), string(out), "redis-cli %v", cmd)
				// go-redis decodes the same reply.
				want, wantErr := nodeCanon(raw)
				ia := make([]any, len(cmd))
				for i, a := range cmd {
					ia[i] = a
				}
				got, gotErr := gc.result(ia...)
				if wantErr != nil {
					require.Error(t, gotErr, "go-redis %v", cmd)
					require.Equal(t, wantErr.Error(), gotErr.Error())
					continue
				}
				require.NoError(t, gotErr, "go-redis %v", cmd)
				require.Equal(t, want, got, "go-redis %v", cmd)
			}
		})
	}
}

func TestConnectionKeepsWorkingAfterErrors(t *testing.T) {
	tg := newTarget(t)
	for _, proto := range protocols {
		t.Run(fmt.Sprintf("RESP%d", proto), func(t *testing.T) {
			rc := dialRaw(t, tg.addr, proto)
			require.Equal(t, "-ERR wrong number of arguments for 'rg.trigger' command\r\n", string(rc.do("rg.trigger").wire))
			// Redis 7 names the command as registered, whatever case the client used (golden unregister).
			require.Equal(t, "-ERR wrong number of arguments for 'rg.unregister' command\r\n", string(rc.do("RG.UNREGISTER").wire))
			require.Equal(t, "-ERR subcommand not found\r\n", string(rc.do("RG.TRIGGER", "nosuch-"+uniq(t, "x")).wire))
			require.Equal(t, "+PONG\r\n", string(rc.do("PING").wire))
			// Pipelined RG commands are answered in order.
			var b bytes.Buffer
			for i := 0; i < 3; i++ {
				fmt.Fprintf(&b, "*1\r\n$%d\r\n%s\r\n", len("RG.INFOCLUSTER"), "RG.INFOCLUSTER")
				fmt.Fprintf(&b, "*2\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len("RG.GETRESULTS"), "RG.GETRESULTS", len(unknownExec), unknownExec)
			}
			_, err := rc.nc.Write(b.Bytes())
			require.NoError(t, err)
			for i := 0; i < 3; i++ {
				var w bytes.Buffer
				n, err := readNode(rc.rd, &w)
				require.NoError(t, err)
				require.Equal(t, bulk("no cluster mode"), string(n.wire))
				n, err = readNode(rc.rd, &w)
				require.NoError(t, err)
				require.Equal(t, "-execution plan does not exist\r\n", string(n.wire))
			}
		})
	}
}

package gearstest

import (
	"net"
	"strconv"
	"sync"
)

// guardListener wraps every accepted connection in a guardConn.
type guardListener struct{ net.Listener }

func (l *guardListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	return &guardConn{Conn: c}, nil
}

// guardConn checks the RESP framing of what a client sends before the RESP library parses it. redcon
// trusts the lengths it is given (a bulk length near MaxInt64 overflows its index arithmetic and panics
// in a goroutine we cannot recover), so absurd array/bulk lengths and oversized inline commands are
// answered here the way Redis answers them ("-ERR Protocol error: ...") and the connection is closed,
// as Redis closes it.
type guardConn struct {
	net.Conn
	g       respGuard
	failMsg string
	once    sync.Once
}

func (c *guardConn) Read(p []byte) (int, error) {
	if c.failMsg != "" {
		c.once.Do(func() { _, _ = c.Conn.Write([]byte("-ERR " + c.failMsg + "\r\n")) })
		return 0, net.ErrClosed
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		ok, msg := c.g.feed(p[:n])
		if msg != "" {
			c.failMsg = msg
			return ok, nil
		}
	}
	return n, err
}

const (
	stStart = iota
	stHeader
	stSkip
	stInline
)

const maxInline = 64 << 10

// respGuard is a streaming scanner of client input that validates lengths.
type respGuard struct {
	state  int
	kind   byte
	hdr    []byte
	args   int64 // bulk strings still expected in the current multibulk
	skip   int64 // bytes of bulk payload (plus CRLF) still to pass
	inline int
	off    bool // framing went wrong in a way redcon reports itself: stop checking
}

// feed scans p. It returns how many bytes may be handed on and, on a violation, the error text.
// Long: one state machine over the bytes, each state a short case; split, its state would be spread.
func (g *respGuard) feed(p []byte) (int, string) {
	if g.off {
		return len(p), ""
	}
	cmdStart := 0
	for i := 0; i < len(p); {
		switch g.state {
		case stStart:
			c := p[i]
			if g.args == 0 {
				cmdStart = i
			}
			switch {
			case c == '*' && g.args == 0:
				g.state, g.kind, g.hdr = stHeader, '*', g.hdr[:0]
				i++
			case g.args > 0:
				if c != '$' {
					g.off = true
					return len(p), ""
				}
				g.state, g.kind, g.hdr = stHeader, '$', g.hdr[:0]
				i++
			default:
				g.state, g.inline = stInline, 0
			}
		case stHeader:
			c := p[i]
			i++
			if c != '\n' {
				g.hdr = append(g.hdr, c)
				if len(g.hdr) > 24 {
					return cmdStart, g.lenError()
				}
				continue
			}
			h := g.hdr
			if len(h) > 0 && h[len(h)-1] == '\r' {
				h = h[:len(h)-1]
			}
			n, err := strconv.ParseInt(string(h), 10, 64)
			if g.kind == '*' {
				if err != nil || n > maxArrayLen {
					return cmdStart, g.lenError()
				}
				if n > 0 {
					g.args = n
				}
				g.state = stStart
				continue
			}
			if err != nil || n < 0 || n > maxBulkLen {
				return cmdStart, g.lenError()
			}
			g.args--
			g.skip = n + 2
			g.state = stSkip
		case stSkip:
			k := int64(len(p) - i)
			if k > g.skip {
				k = g.skip
			}
			i += int(k)
			g.skip -= k
			if g.skip == 0 {
				g.state = stStart
			}
		case stInline:
			j := i
			for j < len(p) && p[j] != '\n' {
				j++
			}
			g.inline += j - i
			if g.inline > maxInline {
				return cmdStart, "Protocol error: too big inline request"
			}
			if j < len(p) {
				g.state = stStart
				j++
			}
			i = j
		}
	}
	return len(p), ""
}

func (g *respGuard) lenError() string {
	if g.kind == '*' {
		return errProtoArrayLen.Error()
	}
	return errProtoBulkLen.Error()
}

package gearstest

import (
	"bufio"
	"errors"
	"fmt"
	"strconv"
)

// Kinds of value, named after their RESP type byte.
const (
	kindBulk   = '$'
	kindNil    = '_'
	kindInt    = ':'
	kindArray  = '*'
	kindStatus = '+'
	kindError  = '-'
	kindDouble = ',' // only produced by gearstest itself (avgRunDurationMS); RESP2 clients get a bulk string
	kindMap    = '%' // produced by gearstest itself (cluster replies): Arr holds key, value, …; RESP2 gets the flat array
	kindVerb   = '=' // verbatim text (CLUSTER INFO/NODES): RESP3 "=len\r\ntxt:…", RESP2 a bulk string
)

// value is one RESP value as it travels between the worker, the handlers and the clients.
type value struct {
	Kind byte
	Str  []byte
	Int  int64
	Arr  []value
}

// Size limits on what gearstest reads, so a peer cannot make it allocate without bound.
// They mirror Redis' proto-max-bulk-len (512 MB) and its multibulk limit.
const (
	maxBulkLen  = 512 << 20
	maxArrayLen = 1 << 20 * 16
)

var (
	errProtoBulkLen  = errors.New("Protocol error: invalid bulk length")
	errProtoArrayLen = errors.New("Protocol error: invalid multibulk length")
)

func bulk(s string) value      { return value{Kind: kindBulk, Str: []byte(s)} }
func bulkBytes(b []byte) value { return value{Kind: kindBulk, Str: b} }
func status(s string) value    { return value{Kind: kindStatus, Str: []byte(s)} }
func errValue(s string) value  { return value{Kind: kindError, Str: []byte(s)} }
func integer(n int64) value    { return value{Kind: kindInt, Int: n} }
func array(vs ...value) value  { return value{Kind: kindArray, Arr: nonNil(vs)} }
func double(f float64) value {
	return value{Kind: kindDouble, Str: []byte(strconv.FormatFloat(f, 'g', 17, 64))}
}
func nilValue() value           { return value{Kind: kindNil} }
func nonNil(vs []value) []value { return append([]value{}, vs...) }

// String returns the textual content of a bulk, status or error value (and the decimal form of an integer).
func (v value) String() string {
	if v.Kind == kindInt {
		return strconv.FormatInt(v.Int, 10)
	}
	return string(v.Str)
}

// appendValue encodes v for a client speaking RESP2 (resp3=false) or RESP3.
func appendValue(b []byte, v value, resp3 bool) []byte {
	switch v.Kind {
	case kindBulk:
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(v.Str)), 10)
		b = append(b, '\r', '\n')
		b = append(b, v.Str...)
		return append(b, '\r', '\n')
	case kindNil:
		if resp3 {
			return append(b, "_\r\n"...)
		}
		return append(b, "$-1\r\n"...)
	case kindInt:
		b = append(b, ':')
		b = strconv.AppendInt(b, v.Int, 10)
		return append(b, '\r', '\n')
	case kindArray:
		b = append(b, '*')
		b = strconv.AppendInt(b, int64(len(v.Arr)), 10)
		b = append(b, '\r', '\n')
		for _, e := range v.Arr {
			b = appendValue(b, e, resp3)
		}
		return b
	case kindStatus, kindError:
		b = append(b, v.Kind)
		b = append(b, oneLine(v.Str)...)
		return append(b, '\r', '\n')
	case kindDouble:
		if resp3 {
			b = append(b, ',')
			b = append(b, v.Str...)
			return append(b, '\r', '\n')
		}
		return appendValue(b, value{Kind: kindBulk, Str: v.Str}, false)
	case kindMap:
		b = appendMapHeader(b, len(v.Arr)/2, resp3)
		for _, e := range v.Arr {
			b = appendValue(b, e, resp3)
		}
		return b
	case kindVerb:
		if resp3 {
			b = append(b, '=')
			b = strconv.AppendInt(b, int64(len(v.Str)+4), 10)
			b = append(b, "\r\ntxt:"...)
			b = append(b, v.Str...)
			return append(b, '\r', '\n')
		}
		return appendValue(b, value{Kind: kindBulk, Str: v.Str}, false)
	}
	return append(b, "$-1\r\n"...)
}

// oneLine replaces CR and LF by spaces, as Redis does for status and error replies.
func oneLine(s []byte) []byte {
	for i, c := range s {
		if c == '\r' || c == '\n' {
			out := append([]byte(nil), s...)
			for j := i; j < len(out); j++ {
				if out[j] == '\r' || out[j] == '\n' {
					out[j] = ' '
				}
			}
			return out
		}
	}
	return s
}

// readLine reads one CRLF-terminated line and returns it without the CRLF.
func readLine(r *bufio.Reader) ([]byte, error) {
	line, err := r.ReadSlice('\n')
	if err == bufio.ErrBufferFull {
		// A very long status/error line: collect it.
		buf := append([]byte(nil), line...)
		for err == bufio.ErrBufferFull {
			line, err = r.ReadSlice('\n')
			buf = append(buf, line...)
			if len(buf) > maxBulkLen {
				return nil, errProtoBulkLen
			}
		}
		line = buf
	}
	if err != nil {
		return nil, err
	}
	if len(line) < 2 || line[len(line)-2] != '\r' {
		return nil, fmt.Errorf("gearstest: malformed RESP line %q", line)
	}
	return line[:len(line)-2], nil
}

// readValue parses one RESP2 value (the worker protocol, and RESP2 store replies).
func readValue(r *bufio.Reader) (value, error) {
	line, err := readLine(r)
	if err != nil {
		return value{}, err
	}
	if len(line) == 0 {
		return value{}, errors.New("gearstest: empty RESP line")
	}
	switch line[0] {
	case '+', '-':
		return value{Kind: line[0], Str: append([]byte(nil), line[1:]...)}, nil
	case ':':
		n, err := strconv.ParseInt(string(line[1:]), 10, 64)
		if err != nil {
			return value{}, fmt.Errorf("gearstest: bad integer %q", line)
		}
		return integer(n), nil
	case '$':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n > maxBulkLen {
			return value{}, errProtoBulkLen
		}
		if n < 0 {
			return nilValue(), nil
		}
		buf := make([]byte, n+2)
		if _, err := readFull(r, buf); err != nil {
			return value{}, err
		}
		return bulkBytes(buf[:n]), nil
	case '*':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n > maxArrayLen {
			return value{}, errProtoArrayLen
		}
		if n < 0 {
			return nilValue(), nil
		}
		arr := make([]value, 0, min(n, 1024))
		for i := 0; i < n; i++ {
			e, err := readValue(r)
			if err != nil {
				return value{}, err
			}
			arr = append(arr, e)
		}
		return value{Kind: kindArray, Arr: arr}, nil
	}
	return value{}, fmt.Errorf("gearstest: unexpected RESP type %q", line[0])
}

func readFull(r *bufio.Reader, buf []byte) (int, error) {
	n := 0
	for n < len(buf) {
		m, err := r.Read(buf[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// readRaw reads one complete reply (RESP2 or RESP3) and appends its exact bytes to dst.
// It is used to pass data store replies to clients byte for byte.
func readRaw(r *bufio.Reader, dst []byte) ([]byte, error) {
	line, err := readLine(r)
	if err != nil {
		return dst, err
	}
	if len(line) == 0 {
		return dst, errors.New("gearstest: empty RESP line")
	}
	dst = append(dst, line...)
	dst = append(dst, '\r', '\n')
	switch line[0] {
	case '+', '-', ':', '_', ',', '#', '(':
		return dst, nil
	case '$', '!', '=':
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n > maxBulkLen {
			return dst, errProtoBulkLen
		}
		if n < 0 {
			return dst, nil
		}
		start := len(dst)
		dst = append(dst, make([]byte, n+2)...)
		_, err = readFull(r, dst[start:])
		return dst, err
	case '*', '~', '>', '%', '|':
		// line points into r's buffer, which reading the elements overwrites: keep the type.
		kind := line[0]
		n, err := strconv.Atoi(string(line[1:]))
		if err != nil || n > maxArrayLen {
			return dst, errProtoArrayLen
		}
		if kind == '%' || kind == '|' {
			n *= 2
		}
		for i := 0; i < n; i++ {
			if dst, err = readRaw(r, dst); err != nil {
				return dst, err
			}
		}
		if kind == '|' {
			// An attribute is followed by the reply it annotates.
			return readRaw(r, dst)
		}
		return dst, nil
	}
	return dst, fmt.Errorf("gearstest: unexpected RESP type %q", line[0])
}

// appendCommand encodes args as a RESP2 array of bulk strings.
func appendCommand(b []byte, args ...[]byte) []byte {
	b = append(b, '*')
	b = strconv.AppendInt(b, int64(len(args)), 10)
	b = append(b, '\r', '\n')
	for _, a := range args {
		b = append(b, '$')
		b = strconv.AppendInt(b, int64(len(a)), 10)
		b = append(b, '\r', '\n')
		b = append(b, a...)
		b = append(b, '\r', '\n')
	}
	return b
}

package gearstest

import "strconv"

// Compact frames (PROTOCOL.md "Framing"): a message to the worker whose elements are all bulk
// strings (every trigger, every reply whose value is a bulk string, …) goes as
//
//	!<len> <len> …\n<bytes><bytes>…
//
// the header's lengths in decimal, one per element, then the elements' bytes back to back. The
// worker reads it as the RESP array of the same bulks, with one find and one split instead of a
// length line per element (its reading is pure Python: the RESP frames of `trigger` and `reply`
// were a third of its CPU per trigger). Other messages keep their RESP2 encoding.

// encodeMsg encodes one message for the worker: a compact frame when every element is a bulk
// string, else a RESP2 array.
func encodeMsg(args []value) []byte {
	n := 0
	for _, a := range args {
		if a.Kind != kindBulk {
			return appendValue(make([]byte, 0, 128), value{Kind: kindArray, Arr: args}, false)
		}
		n += len(a.Str)
	}
	b := make([]byte, 0, n+8*len(args)+2)
	b = append(b, '!')
	for i, a := range args {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendInt(b, int64(len(a.Str)), 10)
	}
	b = append(b, '\n')
	for _, a := range args {
		b = append(b, a.Str...)
	}
	return b
}

// triggerFrame encodes `trigger <rid> <regid> <execid> <token> <flags> <args…>` (PROTOCOL.md; args
// without the trigger name, which RG.TRIGGER's args[0] is) as encodeMsg would, in one allocation.
func triggerFrame(rid int64, regid, execid, token, flags string, args [][]byte) []byte {
	n := len("trigger") + 20 + len(regid) + len(execid) + len(token) + len(flags)
	for _, a := range args[1:] {
		n += len(a)
	}
	b := make([]byte, 0, 2+n+8*(len(args)+5))
	var ridBuf [20]byte
	ridDigits := strconv.AppendInt(ridBuf[:0], rid, 10)
	b = append(b, "!7 "...)
	b = strconv.AppendInt(b, int64(len(ridDigits)), 10)
	for _, l := range [...]int{len(regid), len(execid), len(token), len(flags)} {
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(l), 10)
	}
	for _, a := range args[1:] {
		b = append(b, ' ')
		b = strconv.AppendInt(b, int64(len(a)), 10)
	}
	b = append(b, '\n')
	b = append(b, "trigger"...)
	b = append(b, ridDigits...)
	b = append(b, regid...)
	b = append(b, execid...)
	b = append(b, token...)
	b = append(b, flags...)
	for _, a := range args[1:] {
		b = append(b, a...)
	}
	return b
}

// replyMsg builds `reply <cid> <kind> <raw value>`, raw being the value's RESP2 bytes: a compact
// frame when the value is a bulk string (its bytes go as they are), else a RESP2 array with the
// value bytes spliced in.
func replyMsg(cid []byte, kind byte, raw []byte) []byte {
	if data, ok := bulkContent(raw); ok {
		b := make([]byte, 0, 24+len(cid)+len(data))
		b = append(b, "!5 "...)
		b = strconv.AppendInt(b, int64(len(cid)), 10)
		b = append(b, " 1 "...)
		b = strconv.AppendInt(b, int64(len(data)), 10)
		b = append(b, '\n')
		b = append(b, "reply"...)
		b = append(b, cid...)
		b = append(b, kind)
		return append(b, data...)
	}
	b := make([]byte, 0, 32+len(cid)+len(raw))
	b = append(b, "*4\r\n$5\r\nreply\r\n$"...)
	b = strconv.AppendInt(b, int64(len(cid)), 10)
	b = append(b, '\r', '\n')
	b = append(b, cid...)
	b = append(b, "\r\n$1\r\n"...)
	b = append(b, kind)
	b = append(b, '\r', '\n')
	return append(b, raw...)
}

// bulkContent returns the bytes of raw when raw is exactly one RESP2 bulk string ($<n>\r\n<n
// bytes>\r\n, not nil); ok is false for anything else.
func bulkContent(raw []byte) (data []byte, ok bool) {
	if len(raw) < 5 || raw[0] != '$' {
		return nil, false
	}
	n, i := 0, 1
	for ; i < len(raw) && raw[i] >= '0' && raw[i] <= '9'; i++ {
		if n > maxBulkLen {
			return nil, false
		}
		n = n*10 + int(raw[i]-'0')
	}
	if i == 1 || i+2+n+2 != len(raw) || raw[i] != '\r' || raw[i+1] != '\n' ||
		raw[len(raw)-2] != '\r' || raw[len(raw)-1] != '\n' {
		return nil, false
	}
	return raw[i+2 : i+2+n], true
}

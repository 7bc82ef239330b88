"""RESP2 framing for the Go <-> Python worker protocol (see PROTOCOL.md).

Decoding reads from a binary buffered stream with readline()/read(), or from a Reader (own buffer over
a file descriptor, index-based parsing: the worker's fast path); encoding builds bytes.
"""
import os
from select import select as _select
import struct


class Status(str):
    """A RESP simple string (+OK)."""


class Error(str):
    """A RESP error (-text)."""


class Raw(bytes):
    """Bytes that are already a complete RESP value; the encoder copies them as they are."""


class ProtocolError(Exception):
    """The peer sent bytes that are not a RESP2 value."""


# Refuse absurd lengths so a broken frame cannot make us allocate gigabytes.
MAX_BULK = 1 << 31
MAX_ARRAY = 1 << 24


def _compact_lens(hdr):
    """The element lengths of a compact frame's header (between '!' and '\n'): decimal numbers
    separated by single spaces, nothing else; raises ProtocolError otherwise."""
    if not hdr.replace(b' ', b'').isdigit():  # no sign, '_', CR, other space; not empty
        raise ProtocolError('broken compact frame header: %r' % hdr[:64])
    try:
        lens = [int(x) for x in hdr.split(b' ')]
    except ValueError:  # an empty field (two spaces, a leading or trailing one), too many digits
        raise ProtocolError('broken compact frame header: %r' % hdr[:64])
    if len(lens) > MAX_ARRAY or sum(lens) > MAX_BULK:
        raise ProtocolError('compact frame too long')
    return lens


# Compact frame header -> the struct that cuts its elements out of the buffer in one call (the
# headers of a registration's triggers and of execute() replies repeat: a handful of them).
_COMPACT = {}


def _compact_struct(hdr):
    st = struct.Struct('<' + ''.join(['%ds' % n for n in _compact_lens(hdr)]))
    if len(_COMPACT) >= 1024:
        _COMPACT.clear()
    _COMPACT[hdr] = st
    return st


class _Incomplete(Exception):
    """The buffer ends inside the value; `need` is the buffer length that would let it go on."""

    def __init__(self, need):
        Exception.__init__(self)
        self.need = need


def _parse(buf, pos):
    # Parses one value of buf at pos; returns (value, position after it). Same grammar and checks as
    # read_value's line-based reading, with index arithmetic over one buffer instead of a readline()
    # call per line (the worker's hot path: a trigger message is a dozen lines).
    nl = buf.find(b'\n', pos)
    if nl < 0:
        raise _Incomplete(len(buf) + 1)
    if nl == pos or buf[nl - 1] != 13:
        raise ProtocolError('line without CRLF: %r' % buf[pos:nl + 1][:64])
    t = buf[pos]
    if t == 36:  # '$'
        n = int(buf[pos + 1:nl - 1])
        if n < 0:
            return None, nl + 1
        if n > MAX_BULK:
            raise ProtocolError('bulk too long')
        stop = nl + 1 + n
        if stop + 2 > len(buf):
            raise _Incomplete(stop + 2)
        return buf[nl + 1:stop], stop + 2
    if t == 42:  # '*'
        n = int(buf[pos + 1:nl - 1])
        if n < 0:
            return None, nl + 1
        if n > MAX_ARRAY:
            raise ProtocolError('array too long')
        out = []
        p = nl + 1
        size = len(buf)
        find = buf.find
        for _ in range(n):
            # Bulk elements inline (nearly every element of every message is one): the same checks
            # as the '$' case above, without a call per element.
            if p < size and buf[p] == 36:
                # A one-digit length (most elements: names, flags, ids of short messages) is read
                # off its bytes; int() would give the same for a digit between '$' and CRLF.
                if p + 3 < size and buf[p + 2] == 13 and buf[p + 3] == 10 and 48 <= buf[p + 1] <= 57:
                    nl = p + 3
                    m = buf[p + 1] - 48
                elif (p + 4 < size and buf[p + 3] == 13 and buf[p + 4] == 10 and 49 <= buf[p + 1] <= 57
                      and 48 <= buf[p + 2] <= 57):
                    # Two digits (ids, registration and execution ids of 42 bytes): the same.
                    nl = p + 4
                    m = buf[p + 1] * 10 + buf[p + 2] - 528
                else:
                    nl = find(b'\n', p)
                    if nl < 0:
                        raise _Incomplete(size + 1)
                    if buf[nl - 1] != 13:
                        raise ProtocolError('line without CRLF: %r' % buf[p:nl + 1][:64])
                    m = int(buf[p + 1:nl - 1])
                if m < 0:
                    out.append(None)
                    p = nl + 1
                    continue
                if m > MAX_BULK:
                    raise ProtocolError('bulk too long')
                stop = nl + 1 + m
                if stop + 2 > size:
                    raise _Incomplete(stop + 2)
                out.append(buf[nl + 1:stop])
                p = stop + 2
                continue
            v, p = _parse(buf, p)
            out.append(v)
        return out, p
    if t == 58:  # ':'
        return int(buf[pos + 1:nl - 1]), nl + 1
    if t == 43:  # '+'
        return Status(buf[pos + 1:nl - 1].decode('utf-8', 'replace')), nl + 1
    if t == 45:  # '-'
        return Error(buf[pos + 1:nl - 1].decode('utf-8', 'replace')), nl + 1
    raise ProtocolError('unknown type byte: %r' % buf[pos:nl + 1][:64])


class Reader(object):
    """Reads RESP2 values from a file descriptor through its own buffer (one os.read per burst).

    before_block, when set, is called right before a read that may block (the buffer holds no
    complete value), e.g. to flush output that was held back while buffered input was processed.
    spin, when set, is how many times to poll for input (sched_yield in between) before such a read.
    Only one thread may read at a time.
    """

    CHUNK = 1 << 16

    def __init__(self, fd, before_block=None):
        self.fd = fd
        self.buf = b''
        self.pos = 0
        self.before_block = before_block
        self.spin = 0

    def read_value(self):
        """Reads one value; raises EOFError at end of stream, ProtocolError/ValueError on a broken
        value after skipping exactly what read_value() on a stream would have consumed."""
        buf, pos = self.buf, self.pos
        while True:
            if pos >= len(buf):
                # The usual case: every value read so far was handled; one os.read, no copy.
                if self.before_block is not None:
                    self.before_block()
                if self.spin:
                    # Poll up to `spin` times before the read blocks, yielding the CPU in between
                    # (the worker sets it while a sync execution waits for its reply, see _call).
                    for _ in range(self.spin):
                        if _select([self.fd], (), (), 0)[0]:
                            break
                        os.sched_yield()
                buf = os.read(self.fd, self.CHUNK)
                if not buf:
                    raise EOFError
                self.buf = buf
                pos = self.pos = 0
            if buf[pos] == 33:  # '!': a compact frame (PROTOCOL.md "Framing"), the hot messages
                nl = buf.find(b'\n', pos)
                if nl < 0:
                    need = len(buf) + 1
                else:
                    hdr = buf[pos + 1:nl]
                    st = _COMPACT.get(hdr)
                    if st is None:
                        try:
                            st = _compact_struct(hdr)
                        except ProtocolError:
                            self.pos = nl + 1  # the header line is skipped
                            raise
                    end = nl + 1 + st.size
                    if end <= len(buf):
                        self.pos = end
                        return list(st.unpack_from(buf, nl + 1))
                    need = end
                self._fill(need)
                buf, pos = self.buf, self.pos
                continue
            try:
                v, self.pos = _parse(buf, pos)
                return v
            except _Incomplete as e:
                self._fill(e.need)
                buf, pos = self.buf, self.pos
            except (ProtocolError, ValueError):
                # Replay the line-based reader over the same bytes to skip what it would skip.
                import io
                f = io.BytesIO(buf[pos:])
                try:
                    read_value(f)
                finally:
                    self.pos = pos + f.tell()
                raise ProtocolError('unparsable value')  # not reached: the replay raises

    def _fill(self, need):
        if self.pos:
            self.buf = self.buf[self.pos:]
            need -= self.pos
            self.pos = 0
        chunks = [self.buf]
        have = len(self.buf)
        while True:
            if self.before_block is not None:
                self.before_block()
            data = os.read(self.fd, max(self.CHUNK, need - have))
            if not data:
                raise EOFError
            chunks.append(data)
            have += len(data)
            if have >= need:
                break
        self.buf = b''.join(chunks)


def read_value(f):
    """Reads one RESP2 value from the binary stream f (or a Reader); raises EOFError at end of stream."""
    if type(f) is Reader:
        return f.read_value()
    line = f.readline()
    if not line:
        raise EOFError
    if line[0] == 33:  # '!': a compact frame
        if not line.endswith(b'\n'):
            raise EOFError
        lens = _compact_lens(line[1:-1])
        data = f.read(sum(lens))
        if len(data) != sum(lens):
            raise EOFError
        out = []
        p = 0
        for n in lens:
            out.append(data[p:p + n])
            p += n
        return out
    if line[-2:] != b'\r\n':
        if not line.endswith(b'\n'):
            raise EOFError
        raise ProtocolError('line without CRLF: %r' % line[:64])
    t = line[0]
    if t == 36:  # '$'
        n = int(line[1:-2])
        if n < 0:
            return None
        if n > MAX_BULK:
            raise ProtocolError('bulk too long')
        data = f.read(n + 2)
        if len(data) != n + 2:
            raise EOFError
        return data[:-2]
    if t == 42:  # '*'
        n = int(line[1:-2])
        if n < 0:
            return None
        if n > MAX_ARRAY:
            raise ProtocolError('array too long')
        return [read_value(f) for _ in range(n)]
    if t == 58:  # ':'
        return int(line[1:-2])
    if t == 43:  # '+'
        return Status(line[1:-2].decode('utf-8', 'replace'))
    if t == 45:  # '-'
        return Error(line[1:-2].decode('utf-8', 'replace'))
    raise ProtocolError('unknown type byte: %r' % line[:64])


def _one_line(s):
    return s.replace('\r', ' ').replace('\n', ' ')


def encode(v, out):
    """Appends the RESP2 encoding of a protocol value to the list of byte chunks out."""
    t = type(v)
    if t is bytes:  # the common case first: message names, ids, arguments
        out.append(b'$%d\r\n%s\r\n' % (len(v), v))
        return out
    if t is list:
        out.append(b'*%d\r\n' % len(v))
        for x in v:
            if type(x) is bytes:
                out.append(b'$%d\r\n%s\r\n' % (len(x), x))
            else:
                encode(x, out)
        return out
    if isinstance(v, Raw):
        out.append(v)
    elif isinstance(v, (bytes, bytearray)):
        out.append(b'$%d\r\n' % len(v))
        out.append(bytes(v))
        out.append(b'\r\n')
    elif isinstance(v, Status):
        out.append(b'+' + _one_line(v).encode('utf-8', 'replace') + b'\r\n')
    elif isinstance(v, Error):
        out.append(b'-' + _one_line(v).encode('utf-8', 'replace') + b'\r\n')
    elif isinstance(v, str):
        b = v.encode('utf-8', 'replace')
        out.append(b'$%d\r\n' % len(b))
        out.append(b)
        out.append(b'\r\n')
    elif v is None:
        out.append(b'$-1\r\n')
    elif isinstance(v, bool):
        out.append(b':%d\r\n' % int(v))
    elif isinstance(v, int):
        out.append(b':%d\r\n' % v)
    elif isinstance(v, (list, tuple)):
        out.append(b'*%d\r\n' % len(v))
        for x in v:
            encode(x, out)
    else:
        raise TypeError('cannot encode %r' % type(v))
    return out


def dumps(v):
    """Returns the RESP2 bytes of a protocol value."""
    return b''.join(encode(v, []))


def dumps_compact(parts):
    """Returns the compact frame of a message whose elements are all bytes (PROTOCOL.md "Framing":
    what Go sends for such messages; the worker reads it as the RESP array of the same bulks)."""
    return b'!%s\n%s' % (b' '.join([b'%d' % len(p) for p in parts]), b''.join(parts))


def encode_record(v, out):
    """Appends a gear record's reply encoding (gears-spec 2.6, PythonRecord_SendReply) to out."""
    if isinstance(v, list):
        out.append(b'*%d\r\n' % len(v))
        for x in v:
            encode_record(x, out)
    elif isinstance(v, int):  # bool included: True -> :1
        if not -(1 << 63) <= v < (1 << 63):
            v = -1  # PyLong_AsLongLong() overflows to -1 in the real server
        out.append(b':%d\r\n' % v)
    elif isinstance(v, float):
        # C "%lf" is Python "%f" (6 decimals, inf/nan spelled alike).
        b = ('%f' % v).encode()
        out.append(b'$%d\r\n%s\r\n' % (len(b), b))
    elif isinstance(v, str):
        if len(v) > 1 and v[0] == '+':
            out.append(b'+' + _one_line(v[1:]).encode('utf-8', 'replace') + b'\r\n')
        elif len(v) > 1 and v[0] == '-':
            out.append(b'-' + _one_line(v[1:]).encode('utf-8', 'replace') + b'\r\n')
        else:
            b = v.encode('utf-8', 'replace')
            out.append(b'$%d\r\n' % len(b))
            out.append(b)
            out.append(b'\r\n')
    elif isinstance(v, bytes):
        out.append(b'$%d\r\n' % len(v))
        out.append(v)
        out.append(b'\r\n')
    else:
        out.append(b'$9\r\nPY RECORD\r\n')
    return out


def records_bytes(records):
    """Returns the bytes of the records as one RESP array (gears-spec 2.6)."""
    if len(records) == 1:
        v = records[0]
        if type(v) is str and (len(v) < 2 or (v[0] != '+' and v[0] != '-')):
            # The usual trigger reply: one str record (encode_record's last str case).
            b = v.encode('utf-8', 'replace')
            return b'*1\r\n$%d\r\n%s\r\n' % (len(b), b)
    out = [b'*%d\r\n' % len(records)]
    for r in records:
        encode_record(r, out)
    return b''.join(out)


def records_raw(records):
    """Returns the records as one Raw RESP array (gears-spec 2.6)."""
    return Raw(records_bytes(records))

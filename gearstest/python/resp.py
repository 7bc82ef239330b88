"""RESP2 framing for the Go <-> Python worker protocol (see PROTOCOL.md).

Decoding reads from a binary buffered stream with readline()/read(); encoding builds bytes.
"""


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


def read_value(f):
    """Reads one RESP2 value from the binary stream f; raises EOFError at end of stream."""
    line = f.readline()
    if not line:
        raise EOFError
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


def records_raw(records):
    """Returns the records as one Raw RESP array (gears-spec 2.6)."""
    out = [b'*%d\r\n' % len(records)]
    for r in records:
        encode_record(r, out)
    return Raw(b''.join(out))

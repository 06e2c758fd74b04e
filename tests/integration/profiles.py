"""profiles.py — test fixtures made here: pprof messages written with a tiny
protobuf encoder (field numbers from common/proto/pprof.proto), a reader that sums a
pprof's sample values per sample type, folded text and multipart bodies.
Standard library only.
"""
import gzip
import struct


# ---- protobuf wire format ----
def varint(n):
    if n < 0:
        n += 1 << 64  # int64 two's complement
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def f_varint(num, v):
    return varint(num << 3) + varint(v)


def f_bytes(num, data):
    return varint((num << 3) | 2) + varint(len(data)) + data


def f_packed(num, values):
    return f_bytes(num, b"".join(varint(v) for v in values))


class Pprof:
    """Builds a Profile. Stacks are given root first (as folded text)."""

    def __init__(self, sample_types, period_type=("cpu", "nanoseconds"), period=10000000,
                 time_ns=0, duration_ns=0):
        self.strings = [""]
        self.index = {"": 0}
        self.sample_types = [(self.s(t), self.s(u)) for t, u in sample_types]
        self.period_type = (self.s(period_type[0]), self.s(period_type[1]))
        self.period = period
        self.time_ns = time_ns
        self.duration_ns = duration_ns
        self.functions = {}  # name -> id
        self.samples = []

    def s(self, text):
        if text not in self.index:
            self.index[text] = len(self.strings)
            self.strings.append(text)
        return self.index[text]

    def func(self, name):
        if name not in self.functions:
            self.functions[name] = len(self.functions) + 1
        return self.functions[name]

    def add(self, stack, values, labels=None):
        """stack root->leaf; values one per sample type; labels {k: str}."""
        assert len(values) == len(self.sample_types)
        self.samples.append(([self.func(f) for f in stack], list(values), dict(labels or {})))
        return self

    def encode(self):
        out = bytearray()
        for t, u in self.sample_types:
            out += f_bytes(1, f_varint(1, t) + f_varint(2, u))
        for fids, values, labels in self.samples:
            body = f_packed(1, list(reversed(fids)))  # location ids, leaf first
            body += f_packed(2, values)
            for k, v in labels.items():
                body += f_bytes(3, f_varint(1, self.s(k)) + f_varint(2, self.s(v)))
            out += f_bytes(2, body)
        for name, fid in self.functions.items():  # location id == function id
            line = f_varint(1, fid) + f_varint(2, 10 + fid)
            out += f_bytes(4, f_varint(1, fid) + f_bytes(4, line))
        for name, fid in self.functions.items():
            out += f_bytes(5, f_varint(1, fid) + f_varint(2, self.s(name)) +
                           f_varint(4, self.s(name.split(".")[0] + ".go")))
        strings = list(self.strings)  # string_table after every s() call above
        for text in strings:
            out += f_bytes(6, text.encode("utf-8"))
        if self.time_ns:
            out += f_varint(9, self.time_ns)
        if self.duration_ns:
            out += f_varint(10, self.duration_ns)
        out += f_bytes(11, f_varint(1, self.period_type[0]) + f_varint(2, self.period_type[1]))
        out += f_varint(12, self.period)
        return bytes(out)

    def encode_gz(self):
        return gzip.compress(self.encode())

    def totals(self):
        return [sum(v[i] for _, v, _ in self.samples) for i in range(len(self.sample_types))]


# ---- reading a pprof back (render format=pprof) ----
def _read_varint(buf, i):
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _fields(buf):
    i = 0
    while i < len(buf):
        key, i = _read_varint(buf, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = _read_varint(buf, i)
        elif wt == 2:
            n, i = _read_varint(buf, i)
            v = buf[i:i + n]
            i += n
        elif wt == 1:
            v = struct.unpack_from("<q", buf, i)[0]
            i += 8
        elif wt == 5:
            v = struct.unpack_from("<i", buf, i)[0]
            i += 4
        else:
            raise ValueError("wire type %d" % wt)
        yield num, wt, v


def _signed(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def pprof_totals(data):
    """{"type/unit": total} of a (maybe gzipped) pprof."""
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    types, strings, sums = [], [], []
    for num, wt, v in _fields(data):
        if num == 1:
            f = {n: x for n, _, x in _fields(v)}
            types.append((f.get(1, 0), f.get(2, 0)))
        elif num == 6:
            strings.append(bytes(v).decode("utf-8", "replace"))
        elif num == 2:
            values = []
            for n, w, x in _fields(v):
                if n == 2 and w == 2:
                    j = 0
                    while j < len(x):
                        val, j = _read_varint(x, j)
                        values.append(_signed(val))
                elif n == 2:
                    values.append(_signed(x))
            sums.append(values)
    out = {}
    for i, (t, u) in enumerate(types):
        out["%s/%s" % (strings[t], strings[u])] = sum(s[i] for s in sums if i < len(s))
    return out


def multipart(parts, boundary="----flamedbboundary7MA4YWxk"):
    """parts: [(name, filename, content_type, bytes)] -> (body, content type)."""
    out = bytearray()
    for name, filename, ctype, data in parts:
        out += b"--" + boundary.encode() + b"\r\n"
        disp = 'form-data; name="%s"' % name
        if filename:
            disp += '; filename="%s"' % filename
        out += ("Content-Disposition: %s\r\n" % disp).encode()
        if ctype:
            out += ("Content-Type: %s\r\n" % ctype).encode()
        out += b"\r\n" + data + b"\r\n"
    out += b"--" + boundary.encode() + b"--\r\n"
    return bytes(out), "multipart/form-data; boundary=" + boundary


def folded(stacks):
    """{"a;b;c": n} -> folded text bytes."""
    return "".join("%s %d\n" % (k, v) for k, v in stacks.items()).encode()

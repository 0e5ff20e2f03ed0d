"""A minimal reader for R's serialization format and lazy-load databases, without R.

Enough to read the data objects of an installed R package (for example the novels in
Debian's r-cran-janeaustenr: <site-library>/janeaustenr/data/Rdata.{rdx,rdb}), which are
character vectors, lists and data frames. Supports the XDR ("X\\n") format, versions 2 and 3,
the common SEXP types, reference tables, and ALTREP compact sequences / wrappers.

    objects = read_lazyload_db(".../janeaustenr/data/Rdata")   # {name: python value}

Values: character vector -> list of str (None for NA); integer/logical -> list of int;
double -> list of float; list (VECSXP) -> RList (a list with .attrs); pairlists -> list of
(tag, value); anything with attributes -> the value, with attributes available through
RList/RVector wrappers (.attrs dict).
"""

import bz2
import gzip
import lzma
import struct
import zlib


class RVector(list):
    """An atomic vector (list subclass) carrying R attributes in .attrs."""

    def __init__(self, values=(), rtype=None):
        super().__init__(values)
        self.attrs = {}
        self.rtype = rtype


class RList(RVector):
    """A generic vector (VECSXP)."""


class RObject:
    """Anything else (environments, closures, symbols ...)."""

    def __init__(self, kind, payload=None):
        self.kind = kind
        self.payload = payload
        self.attrs = {}

    def __repr__(self):
        return "RObject(%s)" % self.kind


NILSXP, SYMSXP, LISTSXP, CLOSXP, ENVSXP, PROMSXP, LANGSXP = 0, 1, 2, 3, 4, 5, 6
SPECIALSXP, BUILTINSXP, CHARSXP, LGLSXP, INTSXP, REALSXP, CPLXSXP = 7, 8, 9, 10, 13, 14, 15
STRSXP, DOTSXP, VECSXP, EXPRSXP, BCODESXP, EXTPTRSXP, WEAKREFSXP = 16, 17, 19, 20, 21, 22, 23
RAWSXP, S4SXP = 24, 25
REFSXP, NILVALUE_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP = 255, 254, 253, 252, 251
BASENAMESPACE_SXP, NAMESPACESXP, PACKAGESXP, PERSISTSXP = 250, 249, 248, 247
EMPTYENV_SXP, BASEENV_SXP, ATTRLANGSXP, ATTRLISTSXP, ALTREP_SXP = 242, 241, 240, 239, 238
NA_INTEGER = -2147483648


class _Reader:
    def __init__(self, data):
        self.d = data
        self.i = 0
        self.refs = []

    def int(self):
        v = struct.unpack_from(">i", self.d, self.i)[0]
        self.i += 4
        return v

    def double(self):
        v = struct.unpack_from(">d", self.d, self.i)[0]
        self.i += 8
        return v

    def bytes(self, n):
        b = self.d[self.i:self.i + n]
        self.i += n
        return b

    def length(self):
        n = self.int()
        if n == -1:
            hi, lo = self.int(), self.int()
            n = (hi << 32) + lo
        return n

    def header(self):
        fmt = self.bytes(2)
        if fmt != b"X\n":
            raise ValueError("only the XDR serialization format is supported, got %r" % fmt)
        version = self.int()
        self.int()  # writer R version
        self.int()  # minimal reader R version
        if version == 3:
            n = self.int()
            self.bytes(n)  # native encoding
        elif version != 2:
            raise ValueError("unsupported serialization version %d" % version)

    def attributes(self, obj, has_attr):
        if has_attr:
            attrs = self.item()
            if isinstance(obj, (RVector, RObject)) and isinstance(attrs, list):
                for tag, val in attrs:
                    obj.attrs[tag] = val
        return obj

    def charsxp(self):
        flags = self.int()
        if flags & 0xFF != CHARSXP:
            raise ValueError("expected CHARSXP, got type %d" % (flags & 0xFF))
        n = self.int()
        if n == -1:
            return None
        raw = self.bytes(n)
        levels = flags >> 12
        if levels & (1 << 2):  # LATIN1
            return raw.decode("latin-1")
        return raw.decode("utf-8", errors="replace")

    def item(self):
        flags = self.int()
        t = flags & 0xFF
        has_attr = bool(flags & (1 << 9))
        has_tag = bool(flags & (1 << 10))
        if t == NILVALUE_SXP:
            return None
        if t in (EMPTYENV_SXP, BASEENV_SXP, GLOBALENV_SXP, UNBOUNDVALUE_SXP, MISSINGARG_SXP,
                 BASENAMESPACE_SXP):
            return RObject("special%d" % t)
        if t == REFSXP:
            idx = flags >> 8
            if idx == 0:
                idx = self.int()
            return self.refs[idx - 1]
        if t == PERSISTSXP:
            self.item()
            obj = RObject("persist")
            self.refs.append(obj)
            return obj
        if t == SYMSXP:
            name = self.charsxp()
            self.refs.append(name)
            return name
        if t in (PACKAGESXP, NAMESPACESXP):
            info = self.item()
            obj = RObject("namespace", info)
            self.refs.append(obj)
            return obj
        if t == ENVSXP:
            obj = RObject("environment")
            self.refs.append(obj)
            self.int()  # locked
            obj.payload = (self.item(), self.item(), self.item(), self.item())
            return obj
        if t in (LISTSXP, LANGSXP, CLOSXP, PROMSXP, DOTSXP, ATTRLANGSXP, ATTRLISTSXP):
            out = []
            while True:
                if has_attr:
                    self.item()  # attributes of a pairlist node: not needed
                tag = self.item() if has_tag else None
                car = self.item()
                out.append((tag, car))
                # CDR: continue the pairlist iteratively when it is another pairlist node
                flags = self.int()
                t2 = flags & 0xFF
                if t2 in (LISTSXP, LANGSXP, ATTRLANGSXP, ATTRLISTSXP):
                    has_attr = bool(flags & (1 << 9))
                    has_tag = bool(flags & (1 << 10))
                    continue
                self.i -= 4
                self.item()  # terminating CDR (normally R_NilValue)
                break
            if t in (LISTSXP, ATTRLISTSXP):
                return out
            return RObject("language", out)
        if t == CHARSXP:
            self.i -= 4
            return self.charsxp()
        if t in (LGLSXP, INTSXP):
            n = self.length()
            vals = list(struct.unpack_from(">%di" % n, self.d, self.i))
            self.i += 4 * n
            return self.attributes(RVector(vals, t), has_attr)
        if t == REALSXP:
            n = self.length()
            vals = list(struct.unpack_from(">%dd" % n, self.d, self.i))
            self.i += 8 * n
            return self.attributes(RVector(vals, t), has_attr)
        if t == CPLXSXP:
            n = self.length()
            vals = list(struct.unpack_from(">%dd" % (2 * n), self.d, self.i))
            self.i += 16 * n
            return self.attributes(RVector([complex(vals[2 * k], vals[2 * k + 1])
                                            for k in range(n)], t), has_attr)
        if t == STRSXP:
            n = self.length()
            vals = [self.charsxp() for _ in range(n)]
            return self.attributes(RVector(vals, t), has_attr)
        if t in (VECSXP, EXPRSXP):
            n = self.length()
            vals = [self.item() for _ in range(n)]
            return self.attributes(RList(vals, t), has_attr)
        if t == RAWSXP:
            n = self.length()
            return self.attributes(RVector(list(self.bytes(n)), t), has_attr)
        if t == S4SXP:
            return self.attributes(RObject("S4"), has_attr)
        if t == ALTREP_SXP:
            info = self.item()
            state = self.item()
            attr = self.item()
            cls = info[0][1] if isinstance(info, list) and info else None
            if cls == "compact_intseq" and isinstance(state, list):
                n, start, step = int(state[0]), int(state[1]), int(state[2])
                obj = RVector([start + step * k for k in range(n)], INTSXP)
            elif cls == "compact_realseq" and isinstance(state, list):
                n, start, step = int(state[0]), state[1], state[2]
                obj = RVector([start + step * k for k in range(n)], REALSXP)
            elif isinstance(state, list) and state and isinstance(state[0], RVector):
                obj = state[0]  # wrap_* and deferred_string: the wrapped vector comes first
            else:
                obj = state
            if isinstance(attr, list) and isinstance(obj, (RVector, RObject)):
                for tag, val in attr:
                    obj.attrs[tag] = val
            return obj
        if t in (SPECIALSXP, BUILTINSXP):
            n = self.int()
            return RObject("builtin", self.bytes(n).decode())
        if t == BCODESXP:
            raise ValueError("byte code objects are not supported")
        if t in (EXTPTRSXP, WEAKREFSXP):
            obj = RObject("extptr")
            self.refs.append(obj)
            self.item()
            self.item()
            return self.attributes(obj, has_attr)
        raise ValueError("unsupported SEXP type %d at offset %d" % (t, self.i - 4))


def unserialize(data):
    """Decode one serialized R object (bytes starting with b'X\\n')."""
    r = _Reader(data)
    r.header()
    return r.item()


def _decompress_any(raw):
    if raw[:2] == b"\x1f\x8b":
        return gzip.decompress(raw)
    if raw[:3] == b"BZh":
        return bz2.decompress(raw)
    if raw[:6] == b"\xfd7zXZ\x00":
        return lzma.decompress(raw)
    return raw


def read_rds(path):
    """readRDS() equivalent for XDR files (gzip, bzip2, xz or uncompressed)."""
    with open(path, "rb") as f:
        return unserialize(_decompress_any(f.read()))


def _lazyload_blob(blob):
    """One entry of an .rdb file: 4-byte big-endian length, then zlib data (type 1), or a
    type byte ('Z' zlib, '2' bzip2, 'X' xz, '0' none) followed by the data."""
    n = struct.unpack(">I", blob[:4])[0]
    body = blob[4:]
    if body[:1] in (b"Z", b"2", b"X", b"0") and body[1:3] != b"\x9c":
        kind, body = body[:1], body[1:]
        if kind == b"Z":
            out = zlib.decompress(body)
        elif kind == b"2":
            out = bz2.decompress(body)
        elif kind == b"X":
            out = lzma.decompress(body)
        else:
            out = body
    else:
        out = zlib.decompress(body)
    if len(out) != n:
        raise ValueError("lazy-load entry: expected %d bytes, got %d" % (n, len(out)))
    return out


def read_lazyload_db(filebase):
    """{name: value} of a lazy-load database (filebase.rdx + filebase.rdb)."""
    index = read_rds(filebase + ".rdx")
    fields = {}
    for name, value in zip(index.attrs.get("names", []), index):
        fields[name] = value
    variables = fields["variables"]
    names = variables.attrs.get("names", [])
    with open(filebase + ".rdb", "rb") as f:
        db = f.read()
    out = {}
    for name, pos in zip(names, variables):
        off, length = int(pos[0]), int(pos[1])
        out[name] = unserialize(_lazyload_blob(db[off:off + length]))
    return out

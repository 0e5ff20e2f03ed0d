"""Minimal, dependency-free safetensors reader/writer (numpy only; torch optional).

File layout (https://github.com/huggingface/safetensors):

    [8 bytes]  N = little-endian uint64, length of the JSON header
    [N bytes]  JSON: {"<name>": {"dtype": "F32", "shape": [..], "data_offsets": [begin, end]},
                      ..., optional "__metadata__": {str: str}}
               (may be right-padded with spaces; we pad to a multiple of 8)
    [rest]     tensor data, little-endian, C order; data_offsets are relative to the
               first byte after the header.

A sharded checkpoint is a directory with `model.safetensors.index.json`
({"metadata": {...}, "weight_map": {"<name>": "<shard file>"}}) next to the shards.

BF16 has no numpy dtype: it is handled as uint16 bit patterns. Readers return float32
(exact widening: bits << 16) unless asked for the raw bits; writers round float32 to
bf16 with round-to-nearest-even (the same rounding as torch's `.to(torch.bfloat16)`).
"""

import json
import os
import struct

import numpy as np

# safetensors dtype string -> numpy dtype of the stored element (little-endian).
_NP_DTYPES = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "BF16": np.dtype("<u2"),  # bit patterns
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}

_FROM_NP = {
    np.dtype("float64"): "F64",
    np.dtype("float32"): "F32",
    np.dtype("float16"): "F16",
    np.dtype("int64"): "I64",
    np.dtype("int32"): "I32",
    np.dtype("int16"): "I16",
    np.dtype("int8"): "I8",
    np.dtype("uint64"): "U64",
    np.dtype("uint32"): "U32",
    np.dtype("uint16"): "U16",
    np.dtype("uint8"): "U8",
    np.dtype("bool"): "BOOL",
}

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"


# ----------------------------------------------------------------------------------------
# bf16 helpers
# ----------------------------------------------------------------------------------------

def bf16_bits_to_float32(bits):
    """uint16 bf16 bit patterns -> float32 array (exact)."""
    bits = np.asarray(bits, dtype=np.uint16)
    flat = bits.reshape(-1).astype(np.uint32)
    return np.left_shift(flat, np.uint32(16)).view(np.float32).reshape(bits.shape)


def float32_to_bf16_bits(x):
    """float32 array -> uint16 bf16 bit patterns, round to nearest even; NaN stays NaN."""
    x = np.asarray(x, dtype=np.float32)
    flat = np.ascontiguousarray(x.reshape(-1))
    u = flat.view(np.uint32).astype(np.uint64)
    rounded = (u + np.uint64(0x7FFF) + ((u >> np.uint64(16)) & np.uint64(1))) >> np.uint64(16)
    out = rounded.astype(np.uint16)
    nan = np.isnan(flat)
    if nan.any():  # keep the sign, force a quiet NaN
        out[nan] = (u[nan] >> np.uint64(16)).astype(np.uint16) | np.uint16(0x0040)
    return out.reshape(x.shape)


def _to_numpy(t):
    """Accept numpy arrays and torch tensors (torch imported lazily). Returns (array, hint)
    where hint is "BF16" when the input was a torch.bfloat16 tensor."""
    if isinstance(t, np.ndarray):
        return t, None
    try:
        import torch  # noqa: WPS433
    except ImportError:  # pragma: no cover
        torch = None
    if torch is not None and isinstance(t, torch.Tensor):
        t = t.detach().cpu()
        if t.dtype == torch.bfloat16:
            return t.float().numpy(), "BF16"
        return t.numpy(), None
    return np.asarray(t), None


# ----------------------------------------------------------------------------------------
# Reading
# ----------------------------------------------------------------------------------------

class SafetensorsFile:
    """One .safetensors file, memory-mapped. get(name) returns a numpy array."""

    def __init__(self, path):
        self.path = path
        file_size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) != 8:
                raise ValueError("%s: too short for a safetensors file" % path)
            (n,) = struct.unpack("<Q", head)
            if n > file_size - 8 or n > (1 << 30):
                raise ValueError("%s: bad header length %d" % (path, n))
            header = json.loads(f.read(n).decode("utf-8"))
        self.data_start = 8 + n
        self.data_size = file_size - self.data_start
        self.metadata = header.pop("__metadata__", None) or {}
        self.entries = {}
        for name, e in header.items():
            dtype = e["dtype"]
            if dtype not in _NP_DTYPES:
                raise ValueError("%s: tensor %s has unsupported dtype %s" % (path, name, dtype))
            shape = tuple(int(s) for s in e["shape"])
            begin, end = (int(o) for o in e["data_offsets"])
            nbytes = _NP_DTYPES[dtype].itemsize * int(np.prod(shape, dtype=np.int64))
            if not (0 <= begin <= end <= self.data_size) or end - begin != nbytes:
                raise ValueError("%s: tensor %s has bad data_offsets %s for %s%s"
                                 % (path, name, [begin, end], dtype, list(shape)))
            self.entries[name] = (dtype, shape, begin, end)
        self._mm = None

    def _map(self):
        if self._mm is None:
            if self.data_size == 0:
                self._mm = np.zeros(0, dtype=np.uint8)
            else:
                self._mm = np.memmap(self.path, dtype=np.uint8, mode="r",
                                     offset=self.data_start, shape=(self.data_size,))
        return self._mm

    def keys(self):
        return list(self.entries.keys())

    def dtype(self, name):
        return self.entries[name][0]

    def shape(self, name):
        return self.entries[name][1]

    def get(self, name, bf16="float32", copy=True):
        """Return tensor `name` as numpy. bf16="float32" widens BF16 to float32,
        bf16="raw" returns the uint16 bit patterns. copy=False returns a read-only
        view of the memory map where possible."""
        dtype, shape, begin, end = self.entries[name]
        raw = self._map()[begin:end]
        arr = raw.view(_NP_DTYPES[dtype]).reshape(shape)
        if dtype == "BF16" and bf16 == "float32":
            return bf16_bits_to_float32(arr)
        if bf16 not in ("float32", "raw"):
            raise ValueError("bf16 must be 'float32' or 'raw'")
        return np.array(arr) if copy else arr


def load_file(path, bf16="float32"):
    """Read a whole single .safetensors file into {name: numpy array}."""
    f = SafetensorsFile(path)
    return {k: f.get(k, bf16=bf16) for k in f.keys()}


class Checkpoint:
    """A checkpoint: a single file, a directory with model.safetensors, or a directory with
    model.safetensors.index.json (sharded)."""

    def __init__(self, path):
        self.files = {}
        self.weight_map = {}
        if os.path.isdir(path):
            index = os.path.join(path, INDEX_NAME)
            single = os.path.join(path, SINGLE_NAME)
            if os.path.exists(index):
                with open(index) as f:
                    wm = json.load(f)["weight_map"]
                for name, shard in wm.items():
                    if shard not in self.files:
                        self.files[shard] = SafetensorsFile(os.path.join(path, shard))
                    if name not in self.files[shard].entries:
                        raise ValueError("index maps %s to %s, which lacks it" % (name, shard))
                    self.weight_map[name] = shard
            elif os.path.exists(single):
                self._add_single(single)
            else:
                raise ValueError("%s: neither %s nor %s found" % (path, INDEX_NAME, SINGLE_NAME))
        else:
            self._add_single(path)

    def _add_single(self, path):
        key = os.path.basename(path)
        self.files[key] = SafetensorsFile(path)
        for name in self.files[key].keys():
            self.weight_map[name] = key

    def keys(self):
        return list(self.weight_map.keys())

    def __contains__(self, name):
        return name in self.weight_map

    def dtype(self, name):
        return self.files[self.weight_map[name]].dtype(name)

    def shape(self, name):
        return self.files[self.weight_map[name]].shape(name)

    def get(self, name, bf16="float32", copy=True):
        return self.files[self.weight_map[name]].get(name, bf16=bf16, copy=copy)


def load_checkpoint(path, bf16="float32"):
    ck = Checkpoint(path)
    return {k: ck.get(k, bf16=bf16) for k in ck.keys()}


# ----------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------

def _prepare(tensors, dtype):
    """-> list of (name, safetensors dtype, shape, bytes) in sorted-name order.
    dtype: None keeps each tensor's own dtype (torch bf16 -> BF16); "F32"/"F16"/"BF16"
    converts every floating tensor; a dict {name: dtype} converts per tensor."""
    out = []
    for name in sorted(tensors):
        if name == "__metadata__":
            raise ValueError("'__metadata__' is reserved")
        arr, hint = _to_numpy(tensors[name])
        want = dtype.get(name) if isinstance(dtype, dict) else dtype
        if want is None:
            want = hint or _FROM_NP.get(arr.dtype)
            if want is None:
                raise ValueError("tensor %s: unsupported numpy dtype %s" % (name, arr.dtype))
        elif arr.dtype.kind != "f" and want in ("F64", "F32", "F16", "BF16"):
            want = _FROM_NP[arr.dtype]  # never convert integer tensors
        if want == "BF16":
            data = float32_to_bf16_bits(arr)
        else:
            if want not in _NP_DTYPES:
                raise ValueError("tensor %s: unsupported dtype %s" % (name, want))
            data = np.asarray(arr).astype(_NP_DTYPES[want], copy=False)
        data = np.ascontiguousarray(data)
        out.append((name, want, list(arr.shape), data.tobytes()))
    return out


def _write(path, items, metadata):
    header = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    off = 0
    for name, dt, shape, data in items:
        header[name] = {"dtype": dt, "shape": shape, "data_offsets": [off, off + len(data)]}
        off += len(data)
    hbytes = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hbytes += b" " * ((-len(hbytes)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hbytes)))
        f.write(hbytes)
        for _, _, _, data in items:
            f.write(data)
    return off


def save_file(tensors, path, dtype=None, metadata=None):
    """Write {name: numpy array | torch tensor} to one .safetensors file."""
    _write(path, _prepare(tensors, dtype), metadata)


def save_checkpoint(tensors, out_dir, dtype=None, metadata=None, max_shard_bytes=None):
    """Write a checkpoint directory. Without max_shard_bytes (or when everything fits in
    one shard) writes model.safetensors; otherwise model-0000i-of-0000n.safetensors plus
    model.safetensors.index.json. Tensors are packed greedily in sorted-name order; a
    tensor larger than the limit gets a shard of its own. Returns the list of files."""
    os.makedirs(out_dir, exist_ok=True)
    items = _prepare(tensors, dtype)
    total = sum(len(it[3]) for it in items)
    if max_shard_bytes is None or total <= max_shard_bytes:
        _write(os.path.join(out_dir, SINGLE_NAME), items, metadata)
        return [SINGLE_NAME]
    shards, cur, cur_size = [], [], 0
    for it in items:
        if cur and cur_size + len(it[3]) > max_shard_bytes:
            shards.append(cur)
            cur, cur_size = [], 0
        cur.append(it)
        cur_size += len(it[3])
    if cur:
        shards.append(cur)
    n = len(shards)
    weight_map, names = {}, []
    for i, shard in enumerate(shards):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, n)
        _write(os.path.join(out_dir, fname), shard, metadata)
        names.append(fname)
        for it in shard:
            weight_map[it[0]] = fname
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(out_dir, INDEX_NAME), "w") as f:
        json.dump(index, f, indent=2, sort_keys=True)
    return names + [INDEX_NAME]

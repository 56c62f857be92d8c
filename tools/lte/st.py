"""safetensors files in plain Python + torch (no `safetensors` package).

The format: an 8-byte little-endian header length N, N bytes of JSON
({name: {"dtype", "shape", "data_offsets": [begin, end]}, optional
"__metadata__": {str: str}}), then the tensors' raw little-endian bytes,
offsets counted from the end of the header. Debian 12's python3-torch (1.13)
has no safetensors package, and tools/lte must run with it alone.

Reading uses torch.frombuffer (torch >= 1.10), writing the tensors' memory
through ctypes: the same on torch 1.13 and 2.x, and no numpy needed.
"""
import ctypes
import json
import os
import struct
import sys

import torch

DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
          "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8, "U8": torch.uint8,
          "BOOL": torch.bool}
NAMES = {v: k for k, v in DTYPES.items()}
MAX_HEADER = 100 << 20  # the safetensors library's own limit: a larger header is a corrupt file


class SafetensorsError(ValueError):
    pass


def _little_endian():
    if sys.byteorder != "little":  # torch.frombuffer reads native order; the format is little-endian
        raise SafetensorsError("safetensors: big-endian hosts are not supported")


def read_header(f, path):
    """({name: entry}, metadata, start of the data) of an open file."""
    raw = f.read(8)
    if len(raw) != 8:
        raise SafetensorsError(f"{path}: not a safetensors file (shorter than 8 bytes)")
    (n,) = struct.unpack("<Q", raw)
    if n > MAX_HEADER:
        raise SafetensorsError(f"{path}: header length {n} is not plausible")
    try:
        header = json.loads(f.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SafetensorsError(f"{path}: header is not JSON ({e})") from None
    if not isinstance(header, dict):
        raise SafetensorsError(f"{path}: header is not a JSON object")
    meta = header.pop("__metadata__", None) or {}
    return header, meta, 8 + n


def _tensor(path, f, start, size, name, entry):
    try:
        dtype = DTYPES[entry["dtype"]]
        shape = [int(s) for s in entry["shape"]]
        begin, end = (int(o) for o in entry["data_offsets"])
    except (KeyError, TypeError, ValueError):
        raise SafetensorsError(f"{path}: tensor {name!r}: bad entry {entry!r} "
                               f"(dtypes read: {', '.join(DTYPES)})") from None
    numel = 1
    for s in shape:
        numel *= s
    itemsize = torch.empty((), dtype=dtype).element_size()
    if min(shape, default=0) < 0 or end - begin != numel * itemsize or begin < 0 or start + end > size:
        raise SafetensorsError(f"{path}: tensor {name!r}: offsets {begin}..{end} do not hold "
                               f"{entry['dtype']} {shape} inside the file")
    if numel == 0:  # frombuffer refuses an empty buffer
        return torch.empty(shape, dtype=dtype)
    f.seek(start + begin)
    buf = bytearray(f.read(end - begin))  # writable: frombuffer warns on read-only memory
    return torch.frombuffer(buf, dtype=dtype).reshape(shape)


def load_file(path, names=None):
    """{name: CPU tensor} of every tensor in the file (or only `names`), in the stored dtype."""
    _little_endian()
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header, _, start = read_header(f, path)
        wanted = header if names is None else {n: header[n] for n in names if n in header}
        return {name: _tensor(path, f, start, size, name, e) for name, e in wanted.items()}


def keys(path):
    with open(path, "rb") as f:
        return list(read_header(f, path)[0])


def save_file(tensors, path, metadata=None):
    """Writes {name: tensor} (any device, made contiguous on the CPU) with optional {str: str} metadata.

    Larger elements first, then by name, as the safetensors library orders
    them: every tensor then starts at a multiple of its element size (the
    header is padded to 8 bytes), so readers can map it in place."""
    _little_endian()
    items = sorted(((n, t.detach().cpu().contiguous()) for n, t in tensors.items()),
                   key=lambda nt: (-nt[1].element_size(), nt[0]))
    header, offset = {}, 0
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in metadata.items()}
    for name, t in items:
        if t.dtype not in NAMES:
            raise SafetensorsError(f"safetensors: tensor {name!r}: dtype {t.dtype} is not written")
        n = t.numel() * t.element_size()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + n]}
        offset += n
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    tmp = path + ".part"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for _, t in items:
            if t.numel():  # the contiguous CPU tensor's memory as it is: no numpy (which lacks bf16)
                f.write(ctypes.string_at(t.data_ptr(), t.numel() * t.element_size()))
    os.replace(tmp, path)

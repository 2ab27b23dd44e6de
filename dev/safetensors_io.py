"""Minimal safetensors reader/writer (numpy only; no safetensors package).

Layout: 8-byte little-endian header length N, N bytes of UTF-8 JSON
  {"__metadata__": {str: str}, name: {"dtype", "shape", "data_offsets": [begin, end]}, ...}
padded with spaces to a multiple of 8, then the raw little-endian data section. Offsets are
relative to the start of the data section; tensors are stored in the order given.
"""
import json
import struct

import numpy as np

_TO_NP = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
_FROM_NP = {v.newbyteorder("=") if v.itemsize > 1 else v: k for k, v in _TO_NP.items()}


def _st_dtype(arr):
    dt = arr.dtype.newbyteorder("=") if arr.dtype.itemsize > 1 else arr.dtype
    for npdt, name in _FROM_NP.items():
        if dt == npdt:
            return name
    raise TypeError(f"unsupported dtype {arr.dtype}")


def write(path, tensors, metadata=None):
    """tensors: dict name -> numpy array (insertion order kept); metadata: dict str -> str."""
    header = {}
    if metadata:
        for k, v in metadata.items():
            if not isinstance(k, str) or not isinstance(v, str):
                raise TypeError("metadata must map str to str")
        header["__metadata__"] = dict(metadata)
    blobs = []
    offset = 0
    for name, arr in tensors.items():
        if name == "__metadata__":
            raise ValueError("reserved tensor name")
        arr = np.asarray(arr)
        dtype = _st_dtype(arr)
        data = np.ascontiguousarray(arr, dtype=_TO_NP[dtype]).tobytes()
        header[name] = {"dtype": dtype, "shape": [int(s) for s in arr.shape],
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    hjson = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hjson += b" " * ((-len(hjson)) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def read(path):
    """Returns (tensors: dict name -> numpy array, metadata: dict str -> str); validates offsets."""
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < 8:
        raise ValueError(f"{path}: too short")
    (n,) = struct.unpack("<Q", raw[:8])
    if 8 + n > len(raw):
        raise ValueError(f"{path}: header length {n} beyond end of file")
    header = json.loads(raw[8:8 + n].decode("utf-8"))
    data = raw[8 + n:]
    metadata = header.pop("__metadata__", {}) or {}
    tensors = {}
    spans = []
    for name, info in header.items():
        dtype = info["dtype"]
        shape = tuple(int(s) for s in info["shape"])
        begin, end = (int(x) for x in info["data_offsets"])
        if dtype == "BF16":
            npdt = np.dtype("<u2")
        elif dtype in _TO_NP:
            npdt = _TO_NP[dtype]
        else:
            raise ValueError(f"{path}: tensor {name}: unknown dtype {dtype}")
        count = int(np.prod(shape, dtype=np.int64)) if shape else 1
        if not (0 <= begin <= end <= len(data)) or end - begin != count * npdt.itemsize:
            raise ValueError(f"{path}: tensor {name}: bad data_offsets {begin},{end} for "
                             f"{dtype}{list(shape)} (data section {len(data)} bytes)")
        spans.append((begin, end, name))
        arr = np.frombuffer(data, dtype=npdt, count=count, offset=begin).reshape(shape)
        if dtype == "BF16":
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        tensors[name] = arr.copy()
    spans.sort()
    pos = 0
    for begin, end, name in spans:
        if begin < pos:
            raise ValueError(f"{path}: tensor {name} overlaps the previous one")
        pos = end
    if pos != len(data):
        raise ValueError(f"{path}: {len(data) - pos} trailing bytes after the last tensor")
    return tensors, metadata

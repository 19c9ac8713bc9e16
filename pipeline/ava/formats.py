"""AVA file formats: label maps (pbtxt), box and action CSVs, excluded timestamps.

CSVs have no header. Ground truth rows are ``video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]``,
detections ``video_id,timestamp,x1,y1,x2,y2,action_id,score``, person boxes (SlowFast's format)
``video_id,timestamp,x1,y1,x2,y2,[action_id or empty],score``, excluded keyframes ``video_id,timestamp``.
Timestamps are integer seconds on the AVA timeline ('0902' and '902' are the same keyframe); boxes are
normalized x1, y1, x2, y2 in [0, 1].

Files are UTF-8 (other bytes are an :class:`InputError` naming the file); a byte-order mark and CRLF
line ends are accepted (and dropped) by every reader.
Reading is strict: pyarrow parses the whole file at once, and when it or the validation finds a problem the
file is scanned line by line to raise :class:`InputError` naming the 1-based line and what is wrong.
Degenerate boxes (x1 >= x2 or y1 >= y2) are not a read error: the evaluator drops them as the official one does.
"""

from __future__ import annotations

import contextlib
import csv
import re
from dataclasses import InitVar, dataclass, fields
from pathlib import Path
from typing import Callable, Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv

from pipeline.errors import InputError
from pipeline.store import atomic_path

LABEL_TYPES = ("PERSON_MOVEMENT", "OBJECT_MANIPULATION", "PERSON_INTERACTION")
MAX_ACTION_ID = 1_000_000   # label maps index a lookup table by id


# --------------------------------------------------------------------------------------------- label map

@dataclass(frozen=True)
class LabelMap:
    """The classes of a label map, in its order. Ids are AVA's action ids (not contiguous)."""

    ids: tuple[int, ...]
    names: tuple[str, ...]
    label_types: tuple[str | None, ...]

    def __post_init__(self) -> None:
        if not len(self.ids) == len(self.names) == len(self.label_types):
            raise ValueError("ids, names and label_types must have the same length")
        if len(set(self.ids)) != len(self.ids):
            raise ValueError(f"duplicate ids in label map: {sorted(self.ids)}")
        if any(not 0 <= i <= MAX_ACTION_ID for i in self.ids):
            raise ValueError(f"label map ids must be in [0, {MAX_ACTION_ID}]: {sorted(self.ids)}")
        lookup = np.full(max(self.ids, default=-1) + 1, -1, dtype=np.int64)
        lookup[list(self.ids)] = np.arange(len(self.ids))
        object.__setattr__(self, "_lookup", lookup)

    def __len__(self) -> int:
        return len(self.ids)

    def index(self, action_id: int) -> int:
        """Position of ``action_id`` in label-map order; KeyError if it is not in the map."""
        pos = int(self.index_array(np.asarray([action_id]))[0])
        if pos < 0:
            raise KeyError(action_id)
        return pos

    def index_array(self, action_ids: np.ndarray) -> np.ndarray:
        """int64 [N] positions in label-map order of int [N] ``action_ids``; -1 where not in the map."""
        action_ids = np.asarray(action_ids, dtype=np.int64)
        lookup: np.ndarray = self._lookup  # type: ignore[attr-defined]
        inside = (action_ids >= 0) & (action_ids < len(lookup))
        return np.where(inside, lookup[np.where(inside, action_ids, 0)], -1)

    def name(self, action_id: int) -> str:
        return self.names[self.index(action_id)]


_PBTXT_TOKEN = re.compile(r'\s+|#[^\n]*|(?P<tok>"(?:\\.|[^"\\\n])*"|[A-Za-z_][A-Za-z0-9_]*|-?\d+|[{}:])|(?P<bad>.)')
_BLOCK_FIELDS = {"item": ("name", "id", "label_type"), "label": ("name", "label_id", "label_type")}


def _pbtxt_tokens(text: str) -> list[tuple[str, int]]:
    """(token, 1-based line) pairs of a text-format protobuf, comments and whitespace dropped."""
    tokens, line = [], 1
    for m in _PBTXT_TOKEN.finditer(text):
        if m.group("bad") is not None:
            raise ValueError(f"{line}: unexpected character {m.group('bad')!r}")
        if m.group("tok") is not None:
            tokens.append((m.group("tok"), line))
        line += m.group(0).count("\n")
    return tokens


def read_label_map(path: str | Path) -> LabelMap:
    """Read a label map in either pbtxt form, keeping its order.

    ``item { name: "..." id: N [label_type: T] }`` (AVA v2.1) or ``label { name: "..." label_id: N
    [label_type: T] }`` (AVA v2.2); label types are None where the file gives none.
    """
    path = Path(path)
    try:
        with _utf8(path):
            text = path.read_text(encoding="utf-8-sig")
        tokens = _pbtxt_tokens(text)
    except InputError:
        raise
    except ValueError as err:
        line, _, message = str(err).partition(": ")
        raise InputError(path, message, int(line)) from None
    ids: list[int] = []
    names: list[str] = []
    types: list[str | None] = []
    i = 0

    def expect(pos: int, what: Callable[[str], bool], desc: str) -> str:
        if pos >= len(tokens):
            raise InputError(path, f"unexpected end of file, expected {desc}")
        tok, line = tokens[pos]
        if not what(tok):
            raise InputError(path, f"expected {desc}, found {tok!r}", line)
        return tok

    while i < len(tokens):
        block, block_line = tokens[i]
        if block not in _BLOCK_FIELDS:
            raise InputError(path, f"expected 'item' or 'label', found {block!r}", block_line)
        expect(i + 1, lambda t: t == "{", "'{'")
        i += 2
        allowed = _BLOCK_FIELDS[block]
        values: dict[str, tuple[str, int]] = {}
        while True:
            tok = expect(i, lambda t: True, "a field or '}'")
            if tok == "}":
                i += 1
                break
            line = tokens[i][1]
            if tok not in allowed:
                raise InputError(path, f"unknown field {tok!r} in {block} (expected one of {', '.join(allowed)})", line)
            if tok in values:
                raise InputError(path, f"field {tok!r} given twice in one {block}", line)
            expect(i + 1, lambda t: t == ":", "':'")
            value = expect(i + 2, lambda t: t not in "{}:", f"a value for {tok}")
            values[tok] = (value, tokens[i + 2][1])
            i += 3
        name_field, id_field, type_field = allowed
        for required in (name_field, id_field):
            if required not in values:
                raise InputError(path, f"{block} without {required}", block_line)
        name, line = values[name_field]
        if not (name.startswith('"') and len(name) >= 2):
            raise InputError(path, f"name must be a quoted string, found {name}", line)
        action_id, line = values[id_field]
        if not re.fullmatch(r"\d+", action_id) or int(action_id) > MAX_ACTION_ID:
            raise InputError(path, f"{id_field} must be an integer in [0, {MAX_ACTION_ID}], found {action_id!r}", line)
        if int(action_id) in ids:
            raise InputError(path, f"{id_field} {action_id} given twice", line)
        label_type = None
        if type_field in values:
            label_type, line = values[type_field]
            if label_type not in LABEL_TYPES:
                raise InputError(path, f"unknown label_type {label_type!r} (expected one of {', '.join(LABEL_TYPES)})",
                                 line)
        ids.append(int(action_id))
        names.append(re.sub(r"\\(.)", r"\1", name[1:-1]))
        types.append(label_type)
    if not ids:
        raise InputError(path, "label map has no classes")
    return LabelMap(tuple(ids), tuple(names), tuple(types))


def write_label_map(path: str | Path, label_map: LabelMap) -> None:
    """Write ``label { name label_id [label_type] }`` blocks (AVA v2.2's form, which the official reader reads)."""
    blocks = []
    for action_id, name, label_type in zip(label_map.ids, label_map.names, label_map.label_types):
        escaped = name.replace("\\", "\\\\").replace('"', '\\"')
        lines = ["label {", f'  name: "{escaped}"', f"  label_id: {action_id}"]
        if label_type is not None:
            lines.append(f"  label_type: {label_type}")
        blocks.append("\n".join(lines + ["}"]) + "\n")
    with atomic_path(path) as tmp:
        tmp.write_text("".join(blocks))


# --------------------------------------------------------------------------------------------- rows

@dataclass
class AvaRows:
    """Columnar rows of an AVA CSV.

    video_id: [N] str; timestamp: [N] int64 AVA-timeline seconds; box: [N, 4] float32 normalized x1, y1, x2, y2;
    action_id: [N] int64, -1 where absent; person_id: [N] int64, -1 where absent; score: [N] float32, 1.0 where
    absent. With ``full_precision=True`` box and score are float64 (the evaluator reads files so).
    """

    video_id: np.ndarray
    timestamp: np.ndarray
    box: np.ndarray
    action_id: np.ndarray | None = None
    person_id: np.ndarray | None = None
    score: np.ndarray | None = None
    full_precision: InitVar[bool] = False

    def __post_init__(self, full_precision: bool) -> None:
        real = np.float64 if full_precision else np.float32
        self.video_id = np.asarray(self.video_id, dtype=str)
        n = len(self.video_id)
        self.timestamp = np.asarray(self.timestamp, dtype=np.int64)
        self.box = np.asarray(self.box, dtype=real).reshape(n, 4)
        self.action_id = np.full(n, -1, np.int64) if self.action_id is None else np.asarray(self.action_id, np.int64)
        self.person_id = np.full(n, -1, np.int64) if self.person_id is None else np.asarray(self.person_id, np.int64)
        self.score = np.ones(n, real) if self.score is None else np.asarray(self.score, dtype=real)
        for f in fields(self):
            if len(getattr(self, f.name)) != n:
                raise ValueError(f"AvaRows.{f.name} has {len(getattr(self, f.name))} rows, video_id has {n}")

    def __len__(self) -> int:
        return len(self.video_id)

    def take(self, index_or_mask: np.ndarray) -> "AvaRows":
        """The rows at an int index array or a bool mask [N] (copies)."""
        return AvaRows(**{f.name: getattr(self, f.name)[index_or_mask] for f in fields(self)},
                       full_precision=self.box.dtype == np.float64)

    @staticmethod
    def concat(parts: list["AvaRows"]) -> "AvaRows":
        if not parts:
            return AvaRows.empty()
        return AvaRows(**{f.name: np.concatenate([getattr(p, f.name) for p in parts]) for f in fields(AvaRows)},
                       full_precision=any(p.box.dtype == np.float64 for p in parts))

    @staticmethod
    def empty() -> "AvaRows":
        return AvaRows(np.zeros(0, str), np.zeros(0, np.int64), np.zeros((0, 4), np.float32))


# --------------------------------------------------------------------------------------------- reading

_INT = re.compile(r"\d+")
_SIGNED_INT = re.compile(r"-?\d+")
_FLOAT = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?")
_BOX_NAMES = ("x1", "y1", "x2", "y2")


@dataclass(frozen=True)
class _Layout:
    """What one kind of AVA CSV holds: its column counts and how its optional columns are read."""

    kind: str
    n_columns: tuple[int, ...]
    action: str          # "required" or "optional" (an empty field means no action)
    column7: str         # meaning of the 8th column: "person_id" or "score"

    def describe(self, n: int) -> str:
        names = ["video_id", "timestamp", *_BOX_NAMES, "action_id", self.column7][:n]
        return ",".join(names)


_GT = _Layout("ground truth", (7, 8), "required", "person_id")
_DETECTIONS = _Layout("detections", (8,), "required", "score")
_BOXES = _Layout("person boxes", (8,), "optional", "score")


def _first_row_width(path: Path) -> int | None:
    """Number of fields of the first non-empty line, or None for a file without rows."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        for row in csv.reader(f):
            if row:
                return len(row)
    return None


def _read_table(path: Path, types: list[pa.DataType]) -> pa.Table:
    """Parse the whole CSV with pyarrow; columns f0.. typed as ``types``; only empty fields are null."""
    names = [f"f{i}" for i in range(len(types))]
    return pcsv.read_csv(
        path,
        read_options=pcsv.ReadOptions(column_names=names),
        convert_options=pcsv.ConvertOptions(column_types=dict(zip(names, types)), null_values=[""],
                                            quoted_strings_can_be_null=False, strings_can_be_null=False),
    )


def _string_column(column: pa.ChunkedArray) -> np.ndarray:
    """[N] numpy str array of a string column, converted through its dictionary (fast for repeated ids)."""
    encoded = pc.dictionary_encode(column).combine_chunks()
    values = np.asarray(encoded.dictionary.to_pylist(), dtype=str)
    if len(values) == 0:
        return np.zeros(len(column), dtype=str)
    return values[encoded.indices.to_numpy(zero_copy_only=False)]


def _check_field(layout: _Layout, col: int, value: str) -> str | None:
    """What is wrong with field ``col`` of a row (None if nothing)."""
    if value == "" and not (col == 6 and layout.action == "optional"):
        return f"empty {layout.describe(8).split(',')[col]}"
    if col == 0:
        return None
    if col == 1:
        return None if _INT.fullmatch(value) else f"timestamp {value!r} is not a non-negative integer"
    if col <= 5:
        name = _BOX_NAMES[col - 2]
        if not _FLOAT.fullmatch(value):
            return f"{name} {value!r} is not a finite number"
        if not 0.0 <= float(value) <= 1.0:
            return f"{name} {value} is outside [0, 1] (boxes are normalized)"
        return None
    if col == 6:
        if layout.action == "optional" and value in ("", "-1"):  # SlowFast/LFB files mark negatives with -1
            return None
        return None if _INT.fullmatch(value) else f"action_id {value!r} is not a non-negative integer"
    if layout.column7 == "person_id":
        return None if _SIGNED_INT.fullmatch(value) else f"person_id {value!r} is not an integer"
    if not _FLOAT.fullmatch(value) or not np.isfinite(float(value)):
        return f"score {value!r} is not a finite number"
    return None


def _locate_error(path: Path, layout: _Layout, n_columns: int, fallback: str) -> InputError:
    """Scan ``path`` line by line for the first bad row; the error names its line and what is wrong."""
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            if not row:
                continue
            if len(row) != n_columns:
                return InputError(path, f"expected {n_columns} columns ({layout.describe(n_columns)}) as on the "
                                        f"first row, found {len(row)}", reader.line_num)
            for col, value in enumerate(row):
                problem = _check_field(layout, col, value)
                if problem is not None:
                    return InputError(path, problem, reader.line_num)
    return InputError(path, f"cannot read {layout.kind} CSV: {fallback}")


@contextlib.contextmanager
def _utf8(path: str | Path) -> Iterator[None]:
    """Turn a UnicodeDecodeError while reading ``path`` into an :class:`InputError` naming it."""
    try:
        yield
    except UnicodeDecodeError as err:
        raise InputError(path, f"not UTF-8 text ({err.reason}); save it as UTF-8") from None


def _read_rows(path: str | Path, layout: _Layout, full_precision: bool) -> AvaRows:
    with _utf8(path):
        return _parse_rows(Path(path), layout, full_precision)


def _parse_rows(path: Path, layout: _Layout, full_precision: bool) -> AvaRows:
    n_columns = _first_row_width(path)
    if n_columns is None:
        return AvaRows.empty()
    if n_columns not in layout.n_columns:
        expected = " or ".join(f"{n} ({layout.describe(n)})" for n in layout.n_columns)
        raise InputError(path, f"{layout.kind} rows need {expected} columns, found {n_columns}",
                         _first_row_line(path))
    types = [pa.string(), pa.int64()] + [pa.float64()] * 4 + [pa.int64()]
    if n_columns == 8:
        types.append(pa.int64() if layout.column7 == "person_id" else pa.float64())
    try:
        table = _read_table(path, types)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
        raise _locate_error(path, layout, n_columns, str(err)) from None
    problem = _table_problem(table, layout, n_columns)
    if problem is not None:
        raise _locate_error(path, layout, n_columns, problem)
    real = np.float64 if full_precision else np.float32
    box = np.empty((table.num_rows, 4), dtype=real)
    for i in range(4):
        box[:, i] = table.column(2 + i).to_numpy()
    action = table.column(6)
    action_id = pc.fill_null(action, -1).to_numpy() if action.null_count else action.to_numpy()
    person_id = score = None
    if n_columns == 8 and layout.column7 == "person_id":
        person_id = table.column(7).to_numpy()
    elif n_columns == 8:
        score = table.column(7).to_numpy()
    return AvaRows(_string_column(table.column(0)), table.column(1).to_numpy(), box, action_id, person_id, score,
                   full_precision=full_precision)


def row_lines(path: str | Path) -> np.ndarray:
    """int64 [N]: the 1-based line number of each row of a CSV, in the order the readers return the
    rows (blank lines skipped); for messages about rows found after reading."""
    with _utf8(path), open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        return np.asarray([reader.line_num for row in reader if row], dtype=np.int64)


def _first_row_line(path: Path) -> int:
    with open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            if row:
                return reader.line_num
    return 1


def _table_problem(table: pa.Table, layout: _Layout, n_columns: int) -> str | None:
    """A description of the first kind of invalid value in a parsed table (None if all are valid)."""
    if pc.any(pc.equal(pc.utf8_length(table.column(0)), 0)).as_py():
        return "empty video_id"
    for i in range(1, n_columns):
        if table.column(i).null_count and not (i == 6 and layout.action == "optional"):
            return f"empty field in column {i + 1}"
    if table.num_rows and pc.min(table.column(1)).as_py() < 0:
        return "negative timestamp"
    for i in range(2, 6):
        coordinate = table.column(i).to_numpy()
        if not np.all((coordinate >= 0) & (coordinate <= 1)):   # NaN fails too
            return "box coordinate not a finite number in [0, 1]"
    action = pc.drop_null(table.column(6))
    lowest_action = -1 if layout.action == "optional" else 0  # -1: a negative box in SlowFast/LFB files
    if len(action) and pc.min(action).as_py() < lowest_action:
        return "negative action_id"
    if n_columns == 8 and layout.column7 == "score" and not np.isfinite(table.column(7).to_numpy()).all():
        return "score not a finite number"
    return None


def read_ground_truth(path: str | Path, *, full_precision: bool = False) -> AvaRows:
    """Ground truth rows ``video_id,timestamp,x1,y1,x2,y2,action_id[,person_id]`` (score 1)."""
    return _read_rows(path, _GT, full_precision)


def read_detections(path: str | Path, *, full_precision: bool = False) -> AvaRows:
    """Detection rows ``video_id,timestamp,x1,y1,x2,y2,action_id,score`` (person_id -1).

    ``full_precision=True`` keeps boxes and scores in float64, as the text says (the evaluator reads so).
    """
    return _read_rows(path, _DETECTIONS, full_precision)


def read_boxes(path: str | Path, *, full_precision: bool = False) -> AvaRows:
    """Person boxes ``video_id,timestamp,x1,y1,x2,y2,[action_id or empty],score``; action_id -1 where empty."""
    return _read_rows(path, _BOXES, full_precision)


def keyframe_rows(video_ids: Iterable[str], timestamps: Iterable[int]) -> AvaRows:
    """Keyframes as AvaRows [K]: zero boxes, no action, score 1."""
    video_ids, timestamps = list(video_ids), list(timestamps)
    n = len(timestamps)
    return AvaRows(video_id=np.asarray(video_ids, dtype=str), timestamp=np.asarray(timestamps, dtype=np.int64),
                   box=np.zeros((n, 4), np.float32))


def read_keyframes(path: str | Path) -> AvaRows:
    """Keyframes of ``video_id,timestamp`` rows (keyframe lists, excluded timestamps), in file order.

    Returns AvaRows [K] with zero boxes (:func:`keyframe_rows`); a row without exactly two fields, an
    empty video id or a timestamp that is not a non-negative integer is an :class:`InputError`
    naming its line.
    """
    path = Path(path)
    video_ids: list[str] = []
    timestamps: list[int] = []
    with _utf8(path), open(path, newline="", encoding="utf-8-sig") as f:
        reader = csv.reader(f)
        for row in reader:
            if not row:
                continue
            if len(row) != 2:
                raise InputError(path, f"expected 2 columns (video_id,timestamp), found {len(row)}", reader.line_num)
            for col, value in enumerate(row):
                problem = _check_field(_GT, col, value)
                if problem is not None:
                    raise InputError(path, problem, reader.line_num)
            video_ids.append(row[0])
            timestamps.append(int(row[1]))
    return keyframe_rows(video_ids, timestamps)


def read_excluded(path: str | Path) -> set[tuple[str, int]]:
    """Excluded keyframes: the set of (video_id, timestamp) of a :func:`read_keyframes` file."""
    rows = read_keyframes(path)
    return set(zip(rows.video_id.tolist(), rows.timestamp.tolist()))


# --------------------------------------------------------------------------------------------- writing

_CSV_OPTIONS = pcsv.WriteOptions(include_header=False, quoting_style="none")


def _timestamp_text(timestamp: np.ndarray) -> pa.Array:
    """Timestamps ([N] non-negative int) as AVA writes them: at least 4 digits, zero-padded ('0902')."""
    return pc.utf8_lpad(pc.cast(pa.array(timestamp, pa.int64()), pa.string()), 4, "0")


def _three_decimals(values: np.ndarray) -> pa.Array:
    """[N] floats as text with 3 decimals ('0.500'), as AVA's ground-truth files."""
    return pa.array([f"{v:.3f}" for v in values.tolist()], pa.string())


def _write_columns(path: str | Path, columns: list[pa.Array]) -> None:
    """Write the columns as CSV rows with pyarrow's CSV writer, atomically: no header, no quoting,
    newline line ends, null fields empty. Floats are written as their shortest text that reads back to the same
    float32 / float64 value, integers in decimal; columns whose AVA text differs are given as strings."""
    table = pa.table({f"f{i}": column for i, column in enumerate(columns)})
    with atomic_path(path) as tmp:
        pcsv.write_csv(table, tmp, _CSV_OPTIONS)


def _check_video_ids(video_ids: np.ndarray) -> None:
    """ValueError when a video id ([N] str) is empty or holds a comma, a quote or white space."""
    bad = [v for v in np.unique(video_ids).tolist() if not v or re.search(r'[,"\s]', v)]
    if bad:
        raise ValueError(f"video ids that a CSV cannot hold unquoted: {bad[:5]}")


def _key_columns(rows: AvaRows) -> list[pa.Array]:
    """The video_id and 4-digit timestamp columns of ``rows`` (its video ids checked)."""
    _check_video_ids(rows.video_id)
    return [pa.array(rows.video_id, pa.string()), _timestamp_text(rows.timestamp)]


def _box_columns(box: np.ndarray) -> list[pa.Array]:
    """x1, y1, x2, y2 columns of boxes [N, 4], in their own float type."""
    return [pa.array(np.ascontiguousarray(box[:, i])) for i in range(4)]


def write_ground_truth(path: str | Path, rows: AvaRows) -> None:
    """``video_id,timestamp,x1,y1,x2,y2,action_id,person_id`` with 3-decimal boxes, as AVA's files."""
    _write_columns(path, [*_key_columns(rows), *(_three_decimals(rows.box[:, i]) for i in range(4)),
                          pa.array(rows.action_id), pa.array(rows.person_id)])


def write_detections(path: str | Path, rows: AvaRows) -> None:
    """``video_id,timestamp,x1,y1,x2,y2,action_id,score``; boxes and scores read back exactly."""
    _write_columns(path, [*_key_columns(rows), *_box_columns(rows.box), pa.array(rows.action_id),
                          pa.array(rows.score)])


def write_boxes(path: str | Path, rows: AvaRows) -> None:
    """``video_id,timestamp,x1,y1,x2,y2,,score`` (the action column holds the id where one is set)."""
    action = pa.array(np.where(rows.action_id >= 0, rows.action_id, 0), pa.int64(), mask=rows.action_id < 0)
    _write_columns(path, [*_key_columns(rows), *_box_columns(rows.box), action, pa.array(rows.score)])


def write_keyframes(path: str | Path, keys: Iterable[tuple[str, int]]) -> None:
    """``video_id,timestamp`` rows (4-digit timestamps, as AVA's files), in the given order."""
    keys = list(keys)
    rows = keyframe_rows([k[0] for k in keys], [int(k[1]) for k in keys])
    _write_columns(path, _key_columns(rows))

"""The dataset's videos: finding them, the split lists, the keyframe grid, and the manifest.

The manifest (``results/dataset/manifest.parquet``, written by ``pipeline.stages.dataset``) holds a
row per video (:class:`VideoInfo`) with the probe's facts; every later stage that needs a video's
length, size or split reads it with :func:`read_manifest`.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.ava import formats
from pipeline.errors import InputError
from pipeline.media.probe import VideoProbe, container_end, probe
from pipeline.params import DatasetParams, PrepareParams, SplitFiles, as_dict
from pipeline.store import atomic_path, provenance

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")
#: Characters that no video id may hold: ids become file names under results/ and words of the rules'
#: shell commands, so no path separator, comma, white space or shell metacharacter.
FORBIDDEN_ID_CHARACTERS = frozenset("/\\,;&|$`<>(){}*?!'\"")


@dataclass(frozen=True)
class VideoInfo(VideoProbe):
    """One row of the manifest: the probe's facts (:class:`pipeline.media.probe.VideoProbe`), the
    video's id, split and file, and the AVA time of its video time 0."""

    video_id: str
    split: str
    path: str
    time_offset: float


def find_video(videos_dir: str | Path, video_id: str) -> Path:
    """The file of ``video_id`` in ``videos_dir`` (any of :data:`VIDEO_EXTENSIONS`)."""
    videos_dir = Path(videos_dir)
    for ext in VIDEO_EXTENSIONS:
        candidate = videos_dir / f"{video_id}{ext}"
        if candidate.exists():
            return candidate
    raise InputError(videos_dir, f"no video file for video id {video_id!r} (looked for {', '.join(VIDEO_EXTENSIONS)})")


def videos_in_folder(folder: str | Path) -> dict[str, Path]:
    """``{video_id: file}`` of every video in ``folder`` (:data:`VIDEO_EXTENSIONS`; id = file stem), sorted by id.

    A missing or empty folder, an unusable id (:func:`video_id_problem`) or two files of one id are
    an :class:`InputError` naming the folder or the file.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(folder, "not a folder of videos")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if not path.is_file() or path.suffix.lower() not in VIDEO_EXTENSIONS or path.name.startswith("."):
            continue
        problem = video_id_problem(path.stem)
        if problem:
            raise InputError(path, problem)
        if path.stem in found:
            raise InputError(path, f"two videos of id {path.stem!r}: {found[path.stem].name} and {path.name}")
        found[path.stem] = path
    if not found:
        raise InputError(folder, f"no video in the folder (looked for {', '.join(VIDEO_EXTENSIONS)})")
    return dict(sorted(found.items()))


def video_id_problem(video_id: str) -> str | None:
    """What makes ``video_id`` unusable as a file name and a shell word (None when nothing does).

    Refused: the empty id, ``.`` and ``..``, and ids holding white space, a control character or
    one of :data:`FORBIDDEN_ID_CHARACTERS`. A leading ``-`` is legal (AVA's ``-5KQ66BBWC4``): the
    stages take ``--video-id=ID``.
    """
    if video_id in ("", ".", ".."):
        return f"{video_id!r} is not a video id"
    bad = sorted({c for c in video_id if c in FORBIDDEN_ID_CHARACTERS or c.isspace() or not c.isprintable()})
    if bad:
        return (f"video id {video_id!r} holds {''.join(bad)!r}: ids may not hold path separators, commas, "
                f"white space or shell metacharacters")
    return None


def read_video_list(path: str | Path) -> list[str]:
    """Video ids of a split list: one per line; blank lines and ``#`` comments are skipped; a UTF-8
    byte-order mark and CRLF line ends are accepted.

    AVA's file-name lists (``id.mkv``) are accepted: the extension is removed. An id that
    :func:`video_id_problem` refuses is an :class:`InputError` naming the file and the line.
    """
    ids: list[str] = []
    seen: dict[str, int] = {}
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as err:
        raise InputError(path, f"not UTF-8 text ({err.reason}); save it as UTF-8") from None
    for line_no, line in enumerate(text.splitlines(), start=1):
        entry = line.strip()
        if not entry or entry.startswith("#"):
            continue
        problem = video_id_problem(entry)
        if problem is not None:
            raise InputError(path, problem, line_no)
        stem = Path(entry).stem if Path(entry).suffix.lower() in VIDEO_EXTENSIONS else entry
        problem = video_id_problem(stem)
        if problem is not None:
            raise InputError(path, problem, line_no)
        if stem in seen:
            raise InputError(path, f"video id {stem!r} listed twice (first on line {seen[stem]})", line_no)
        seen[stem] = line_no
        ids.append(stem)
    return ids


def split_video_ids(root: str | Path, split: SplitFiles) -> list[str]:
    """The video ids of one split: its list file when it has one, else the ids of its ground truth
    in file order (the schema requires one of the two)."""
    root = Path(root)
    if split.videos:
        return read_video_list(root / split.videos)
    if split.ground_truth:
        gt = formats.read_ground_truth(root / split.ground_truth)
        ids = list(dict.fromkeys(gt.video_id.tolist()))
        for video_id in ids:
            problem = video_id_problem(video_id)
            if problem is not None:
                row = int(np.flatnonzero(gt.video_id == video_id)[0])
                path = root / split.ground_truth
                raise InputError(path, problem, int(formats.row_lines(path)[row]))
        return ids
    raise ValueError("a split needs `videos` (a list file) or `ground_truth`")


def all_video_ids(params: DatasetParams) -> dict[str, str]:
    """``{video_id: split}`` over every split, in split and list order; a video in two splits is an
    :class:`InputError` naming the second split's file."""
    owner: dict[str, str] = {}
    for name, split in params.splits.items():
        for vid in split_video_ids(params.root, split):
            if vid in owner:
                source = Path(params.root) / (split.videos or split.ground_truth or "")
                raise InputError(source, f"video {vid!r} is in both splits {owner[vid]!r} and {name!r}")
            owner[vid] = name
    return owner


def keyframe_times(duration_s: float, time_offset: float, margin: float) -> np.ndarray:
    """Integer AVA-timeline seconds from ``offset + margin`` to ``offset + duration - margin``: int64 [K]."""
    first = int(np.ceil(time_offset + margin))
    last = int(np.floor(time_offset + duration_s - margin))
    return np.arange(first, last + 1, dtype=np.int64)


def keyframes_for_split(videos: list[VideoInfo], gt: formats.AvaRows | None,
                        excluded: set[tuple[str, int]], margin: float) -> formats.AvaRows:
    """Keyframes to predict on: the regular grid of each video, plus keyframes with ground truth, less excluded.

    Returns AvaRows [K] with zero boxes (:func:`pipeline.ava.formats.keyframe_rows`), sorted by
    (video order, timestamp).
    """
    vids: list[str] = []
    times: list[int] = []
    for info in videos:
        grid = set(keyframe_times(info.duration_s, info.time_offset, margin).tolist())
        if gt is not None:
            grid |= set(gt.timestamp[gt.video_id == info.video_id].tolist())
        kept = sorted(t for t in grid if (info.video_id, t) not in excluded)
        vids += [info.video_id] * len(kept)
        times += kept
    return formats.keyframe_rows(vids, times)


def probe_video(video_id: str, split: str, path: Path, time_offset: float) -> VideoInfo:
    """The manifest row of one video file (:func:`pipeline.media.probe.probe`: one decode)."""
    return VideoInfo(video_id=video_id, split=split, path=str(path), **asdict(probe(path)),
                     time_offset=float(time_offset))


def probe_segment(video_id: str, split: str, path: Path, time_offset: float, segment: PrepareParams) -> VideoInfo:
    """The manifest row of the segment that the prepare stage will cut from the movie at ``path``.

    Reads the container and every packet, decodes nothing (a movie is hours long; the prepare stage
    checks the cut's frames): an unreadable or truncated movie, or one that ends before the
    segment starts, is an :class:`InputError` naming it. A movie that ends inside the segment gives
    a shorter segment (its annotations past the end are then left out and named).
    """
    facts = container_end(path)
    if facts.end_s <= segment.start:
        raise InputError(path, f"the movie ends at {facts.end_s:.2f} s, before the segment's start at "
                               f"{segment.start:g} s")
    duration = min(segment.duration, facts.end_s - segment.start)
    return VideoInfo(video_id=video_id, split=split, path=str(path), fps=facts.fps,
                     n_frames=int(round(duration * facts.fps)), duration_s=round(duration, 6), width=facts.width,
                     height=facts.height, has_audio=facts.has_audio, time_offset=float(time_offset))


def probe_videos(ids: list[str], split: str, videos_dir: Path, time_offset: float,
                 segment: PrepareParams | None, threads: int) -> tuple[list[VideoInfo], dict[str, str]]:
    """Probe each video of a split (``threads`` at once): the manifest rows of the usable ones, in
    ``ids`` order, and ``{video_id: problem}`` for the others (missing, empty, unreadable,
    truncated...): one bad video never stops the rest."""

    def one(video_id: str) -> VideoInfo | str:
        try:
            path = find_video(videos_dir, video_id)
            if segment is None:
                return probe_video(video_id, split, path, time_offset)
            return probe_segment(video_id, split, path, time_offset, segment)
        except InputError as err:
            return str(err)

    with ThreadPoolExecutor(max(1, threads)) as pool:
        results = list(pool.map(one, ids))
    usable = [r for r in results if isinstance(r, VideoInfo)]
    problems = {v: r for v, r in zip(ids, results) if isinstance(r, str)}
    return usable, problems


def video_spans(videos: list[VideoInfo]) -> dict[str, tuple[float, float]]:
    """Video id -> its span on the timeline, (offset, offset + duration) in seconds."""
    return {v.video_id: (v.time_offset, v.time_offset + v.duration_s) for v in videos}


def outside_video(gt: formats.AvaRows, videos: list[VideoInfo]) -> np.ndarray:
    """bool [n]: ground-truth rows whose keyframe lies outside its video's span [offset, offset + duration)."""
    span = video_spans(videos)
    return np.fromiter((not (span[v][0] <= t < span[v][1]) if v in span else False
                        for v, t in zip(gt.video_id.tolist(), gt.timestamp.tolist())), dtype=bool, count=len(gt))


def unlisted_videos(videos_dir: str | Path, listed: set[str]) -> list[str]:
    """Ids of the video files in ``videos_dir`` that no split lists (the reverse of a missing video)."""
    videos_dir = Path(videos_dir)
    if not videos_dir.is_dir():
        return []
    return sorted(p.stem for p in videos_dir.iterdir()
                  if p.suffix.lower() in VIDEO_EXTENSIONS and p.stem not in listed)





def write_manifest(path: str | Path, videos: list[VideoInfo], params: DatasetParams) -> None:
    """Write the manifest parquet (a column per :class:`VideoInfo` field) with provenance in its schema metadata."""
    columns = {f.name: [getattr(v, f.name) for v in videos] for f in fields(VideoInfo)}
    table = pa.table(columns)
    meta = {k: v.encode() for k, v in provenance("dataset", as_dict(params)).items()}
    table = table.replace_schema_metadata(meta)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp)


def read_manifest(path: str | Path) -> list[VideoInfo]:
    """Read the manifest parquet into :class:`VideoInfo` rows."""
    table = pq.read_table(path)
    names = [f.name for f in fields(VideoInfo)]
    missing = [n for n in names if n not in table.column_names]
    if missing:
        raise InputError(path, f"manifest lacks columns {missing}")
    cols = {n: table.column(n).to_pylist() for n in names}
    return [VideoInfo(**{n: cols[n][i] for n in names}) for i in range(table.num_rows)]


def manifest_row(videos: list[VideoInfo], video_id: str, manifest_path: str | Path = "manifest") -> VideoInfo:
    """The manifest row of ``video_id``."""
    for info in videos:
        if info.video_id == video_id:
            return info
    raise InputError(manifest_path, f"video {video_id!r} is not in the manifest")

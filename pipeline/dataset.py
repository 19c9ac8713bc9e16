"""The dataset stage: validate an AVA-layout dataset and write the manifest every other stage reads.

Input, named by config.yaml's ``dataset`` section: a folder of videos, a label map, and per split
a ground-truth CSV, an excluded-timestamps CSV and a list of video ids (each optional where AVA
allows it: a test split has no ground truth; a split without a list takes the ids of its ground truth).

Output (``results/dataset/``):
- ``manifest.parquet``: a row per video (:class:`VideoInfo`);
- ``{split}.gt.csv``: validated ground truth, label-map classes only (rows of other classes are
  counted in the log, never dropped silently);
- ``{split}.excluded.csv``: the excluded keyframes;
- ``{split}.keyframes.csv``: ``video_id,timestamp`` of every keyframe to detect and predict on:
  each integer second from ``time_offset + margin`` to ``time_offset + duration - margin``, plus any
  keyframe that has ground truth, less the excluded ones;
- ``label_map.pbtxt``: the label map, in the form with label types.
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from pipeline.ava import formats
from pipeline.errors import InputError
from pipeline.store import atomic_path, provenance

VIDEO_EXTENSIONS = (".mp4", ".mkv", ".webm", ".avi", ".mov")


@dataclass(frozen=True)
class VideoInfo:
    """One row of the manifest."""

    video_id: str
    split: str
    path: str
    fps: float
    n_frames: int
    duration_s: float
    width: int
    height: int
    has_audio: bool
    time_offset: float


def find_video(videos_dir: str | Path, video_id: str) -> Path:
    """The file of ``video_id`` in ``videos_dir`` (any of :data:`VIDEO_EXTENSIONS`)."""
    videos_dir = Path(videos_dir)
    for ext in VIDEO_EXTENSIONS:
        candidate = videos_dir / f"{video_id}{ext}"
        if candidate.exists():
            return candidate
    raise InputError(videos_dir, f"no video file for video id {video_id!r} (looked for {', '.join(VIDEO_EXTENSIONS)})")


def read_video_list(path: str | Path) -> list[str]:
    """Video ids of a split list: one per line; blank lines and ``#`` comments are skipped.

    AVA's file-name lists (``id.mkv``) are accepted: the extension is removed.
    """
    ids: list[str] = []
    seen: dict[str, int] = {}
    for line_no, line in enumerate(Path(path).read_text().splitlines(), start=1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if any(c.isspace() or c == "," for c in text):
            raise InputError(path, f"a video id has no spaces or commas: {text!r}", line_no)
        stem = Path(text).stem if Path(text).suffix.lower() in VIDEO_EXTENSIONS else text
        if stem in seen:
            raise InputError(path, f"video id {stem!r} listed twice (first on line {seen[stem]})", line_no)
        seen[stem] = line_no
        ids.append(stem)
    return ids


def split_video_ids(root: str | Path, split_cfg: dict[str, Any]) -> list[str]:
    """The video ids of one split: its list file when configured, else the ids in its ground truth."""
    root = Path(root)
    if split_cfg.get("videos"):
        return read_video_list(root / split_cfg["videos"])
    if split_cfg.get("ground_truth"):
        gt = formats.read_ground_truth(root / split_cfg["ground_truth"])
        return list(dict.fromkeys(gt.video_id.tolist()))
    raise InputError("config.yaml", "a split needs `videos` (a list file) or `ground_truth`")


def all_video_ids(dataset_cfg: dict[str, Any]) -> dict[str, str]:
    """``{video_id: split}`` over every split; a video in two splits is an error."""
    owner: dict[str, str] = {}
    for split, split_cfg in dataset_cfg["splits"].items():
        for vid in split_video_ids(dataset_cfg["root"], split_cfg):
            if vid in owner:
                raise InputError("config.yaml", f"video {vid!r} is in both splits {owner[vid]!r} and {split!r}")
            owner[vid] = split
    return owner


def keyframe_times(duration_s: float, time_offset: float, margin: float) -> np.ndarray:
    """Integer AVA-timeline seconds from ``offset + margin`` to ``offset + duration - margin``: int64 [K]."""
    first = int(np.ceil(time_offset + margin))
    last = int(np.floor(time_offset + duration_s - margin))
    return np.arange(first, last + 1, dtype=np.int64)


def keyframes_for_split(videos: list[VideoInfo], gt: formats.AvaRows | None,
                        excluded: set[tuple[str, int]], margin: float) -> formats.AvaRows:
    """Keyframes to predict on: the regular grid of each video, plus keyframes with ground truth, less excluded.

    Returns AvaRows with zero boxes, sorted by (video order, timestamp).
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
    return keyframe_rows(vids, times)


def keyframe_rows(video_ids: list[str], timestamps: list[int]) -> formats.AvaRows:
    """Keyframes as AvaRows: zero boxes, no action, score 1."""
    n = len(timestamps)
    return formats.AvaRows(
        video_id=np.asarray(video_ids, dtype=str), timestamp=np.asarray(timestamps, dtype=np.int64),
        box=np.zeros((n, 4), np.float32), action_id=np.full(n, -1, np.int64),
        person_id=np.full(n, -1, np.int64), score=np.ones(n, np.float32),
    )


def write_keyframes(path: str | Path, keyframes: formats.AvaRows) -> None:
    """Write ``video_id,timestamp`` rows (no header)."""
    lines = [f"{v},{int(t)}\n" for v, t in zip(keyframes.video_id.tolist(), keyframes.timestamp.tolist())]
    with atomic_path(path) as tmp:
        tmp.write_text("".join(lines))


def read_keyframes(path: str | Path) -> formats.AvaRows:
    """Read a keyframes CSV (``video_id,timestamp`` rows) as AvaRows with zero boxes, in file order."""
    keys = _read_video_time_pairs(path)
    return keyframe_rows([k[0] for k in keys], [k[1] for k in keys])


def _read_video_time_pairs(path: str | Path) -> list[tuple[str, int]]:
    pairs: list[tuple[str, int]] = []
    for line_no, line in enumerate(Path(path).read_text().splitlines(), start=1):
        if not line.strip():
            continue
        parts = line.split(",")
        if len(parts) != 2:
            raise InputError(path, f"expected 2 columns video_id,timestamp, got {len(parts)}", line_no)
        try:
            pairs.append((parts[0], int(parts[1])))
        except ValueError:
            raise InputError(path, f"timestamp {parts[1]!r} is not an integer", line_no) from None
    return pairs


def probe_video(video_id: str, split: str, path: Path, time_offset: float) -> VideoInfo:
    """Probe one video file with ffmpeg into a manifest row."""
    from pipeline.media.probe import probe

    return VideoInfo(video_id=video_id, split=split, path=str(path), **asdict(probe(path)),
                     time_offset=float(time_offset))


def write_manifest(path: str | Path, videos: list[VideoInfo], params: dict[str, Any]) -> None:
    """Write the manifest parquet with provenance in its schema metadata."""
    columns = {f.name: [getattr(v, f.name) for v in videos] for f in fields(VideoInfo)}
    table = pa.table(columns)
    meta = {k: v.encode() for k, v in provenance("dataset", params).items()}
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


def filter_to_label_map(rows: formats.AvaRows, label_map: formats.LabelMap, path: str | Path) -> formats.AvaRows:
    """Keep rows whose action is in the label map; say on stderr how many of each other id were left out."""
    known = label_map.index_array(rows.action_id) >= 0
    if not known.all():
        ids, counts = np.unique(rows.action_id[~known], return_counts=True)
        listed = ", ".join(f"{i} ({c} rows)" for i, c in zip(ids.tolist(), counts.tolist()))
        print(f"{path}: {int((~known).sum())} rows have action ids outside the label map and are left out: {listed}",
              file=sys.stderr)
    return rows.take(known)


def check_gt_videos(rows: formats.AvaRows, video_ids: list[str], path: str | Path) -> None:
    """Ground truth may only name videos of its split's list."""
    unknown = sorted(set(rows.video_id.tolist()) - set(video_ids))
    if unknown:
        raise InputError(path, f"ground truth names {len(unknown)} videos that are not in the split's video list: "
                               f"{', '.join(unknown[:10])}")


def build(params: dict[str, Any], out_dir: str | Path) -> list[VideoInfo]:
    """Run the dataset stage: validate everything, probe every video, write the artifacts."""
    root = Path(params["root"])
    out_dir = Path(out_dir)
    label_map = formats.read_label_map(root / params["label_map"])
    formats.write_label_map(out_dir / "label_map.pbtxt", label_map)
    videos: list[VideoInfo] = []
    for split, split_cfg in params["splits"].items():
        ids = split_video_ids(root, split_cfg)
        if not ids:
            raise InputError(root / (split_cfg.get("videos") or split_cfg.get("ground_truth")), f"split {split!r} has no videos")
        split_videos = [probe_video(v, split, find_video(root / params["videos"], v), params["time_offset"])
                        for v in ids]
        videos += split_videos
        gt = None
        if split_cfg.get("ground_truth"):
            gt_path = root / split_cfg["ground_truth"]
            gt = filter_to_label_map(formats.read_ground_truth(gt_path), label_map, gt_path)
            check_gt_videos(gt, ids, gt_path)
            formats.write_ground_truth(out_dir / f"{split}.gt.csv", gt)
        excluded: set[tuple[str, int]] = set()
        if split_cfg.get("excluded"):
            excluded = formats.read_excluded(root / split_cfg["excluded"])
        formats.write_excluded(out_dir / f"{split}.excluded.csv", sorted(excluded))
        keyframes = keyframes_for_split(split_videos, gt, excluded, params["keyframe_margin"])
        write_keyframes(out_dir / f"{split}.keyframes.csv", keyframes)
        print(f"split {split}: {len(ids)} videos, {len(keyframes)} keyframes, "
              f"{0 if gt is None else len(gt)} ground-truth rows, {len(excluded)} excluded keyframes", file=sys.stderr)
    write_manifest(out_dir / "manifest.parquet", videos, params)
    return videos


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pipeline.dataset", description=__doc__.splitlines()[0])
    parser.add_argument("--params", required=True, help="config.yaml's dataset section as JSON")
    parser.add_argument("--out-dir", required=True, help="results/dataset")
    args = parser.parse_args(argv)
    videos = build(json.loads(args.params), args.out_dir)
    for info in videos:
        print(json.dumps(asdict(info)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

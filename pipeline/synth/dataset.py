"""The synthetic AVA-like dataset: sizes, video ids, plans per split, ground truth, files.

Layout written under the output directory (what the dataset stage and config.yaml expect)::

    videos/{video_id}.mp4                          H.264 + AAC (a few videos have no audio track)
    annotations/label_map.pbtxt                    AVA ids, names and label types
    annotations/{split}.csv                        video_id,timestamp,x1,y1,x2,y2,action_id,person_id
    annotations/{split}_excluded_timestamps.csv    video_id,timestamp
    annotations/{split}.videos.txt                 one video id per line
    meta.json                                      seed, size, parameters, per-video facts, class counts
"""

from __future__ import annotations

import string
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from multiprocessing import get_context
from pathlib import Path

import numpy as np

from pipeline.ava.formats import AvaRows, write_keyframes, write_ground_truth, write_label_map
from pipeline.progress import progress
from pipeline.store import provenance, write_json, write_text
from pipeline.synth.body import body_at
from pipeline.synth.classes import CLASS_BY_KEY, CLASSES, label_map
from pipeline.synth.plan import Quota, VideoPlan, plan_tracks

TIME_OFFSET = 900  # AVA timeline second of video time 0
KEYFRAME_MARGIN = 2  # keyframes from TIME_OFFSET + margin to TIME_OFFSET + duration - margin
SPLITS = ("train", "val")
MIN_VISIBLE = 0.4  # fraction of a person's box inside the frame for it to be annotated
MIN_BOX_HEIGHT = 0.08  # of the frame height, for a person to be annotated
EXCLUDED_FRACTION = 0.05
MAX_ATTEMPTS = 100  # plans tried per split to have every class present

_ID_CHARS = string.ascii_letters + string.digits + "_-"


@dataclass(frozen=True)
class Config:
    """What to generate. ``min_rows`` is the number of ground-truth rows per class that each split
    should reach (plans are redrawn, deterministically, until they do, or the best is kept)."""

    width: int
    height: int
    duration: int  # seconds per video
    videos: dict[str, int]  # per split
    fps: tuple[int, ...]  # rates to mix across videos
    min_rows: dict[str, int] = field(default_factory=dict)
    x264_preset: str = "veryfast"


SIZES: dict[str, Config] = {
    "tiny": Config(160, 120, 10, {"train": 3, "val": 2}, (25, 30), {"train": 1, "val": 0}),
    "demo": Config(320, 240, 30, {"train": 8, "val": 4}, (25, 30), {"train": 10, "val": 8}),
    "ava": Config(640, 360, 900, {"train": 0, "val": 1}, (30,), {"train": 0, "val": 5}, "ultrafast"),
}


def keyframe_timestamps(duration: int) -> np.ndarray:
    """AVA-timeline keyframes of a video of ``duration`` s: int64 [K], every second, 2 s margins."""
    return np.arange(TIME_OFFSET + KEYFRAME_MARGIN, TIME_OFFSET + duration - KEYFRAME_MARGIN + 1, dtype=np.int64)


def video_ids(rng: np.random.Generator, n: int) -> list[str]:
    """``n`` distinct YouTube-style 11-character ids; about one in six starts with '-' (at least one
    when ``n`` >= 4), as some of AVA's do."""
    ids: list[str] = []
    while len(ids) < n:
        chars = [_ID_CHARS[int(i)] for i in rng.integers(len(_ID_CHARS), size=11)]
        if rng.random() < 1 / 6:
            chars[0] = "-"
        elif chars[0] == "-":
            chars[0] = "_"
        candidate = "".join(chars)
        if candidate not in ids:
            ids.append(candidate)
    if n >= 4 and not any(i.startswith("-") for i in ids):
        ids[1] = "-" + ids[1][1:]
    return ids


# ------------------------------------------------------------------------------------------ ground truth

@dataclass(frozen=True)
class Annotation:
    """Ground truth of one video: its rows and its excluded keyframes."""

    rows: AvaRows
    excluded: tuple[int, ...]  # AVA-timeline seconds


def person_box(plan: VideoPlan, index: int, t: float) -> np.ndarray | None:
    """Normalized, clipped box (float64 [4], x1, y1, x2, y2 rounded to 3 decimals) of track
    ``index`` at video time ``t``, or None when the person is absent, mostly out of the frame or tiny."""
    body = body_at(plan, index, t)
    if body is None:
        return None
    # Pixel centres sit at integer coordinates, so pixel i spans [i - 0.5, i + 0.5].
    x0, y0, x1, y1 = (v + 0.5 for v in body.box)
    area = (x1 - x0) * (y1 - y0)
    cx0, cy0 = max(x0, 0.0), max(y0, 0.0)
    cx1, cy1 = min(x1, float(plan.width)), min(y1, float(plan.height))
    if cx1 <= cx0 or cy1 <= cy0:
        return None
    if (cx1 - cx0) * (cy1 - cy0) < MIN_VISIBLE * area or cy1 - cy0 < MIN_BOX_HEIGHT * plan.height:
        return None
    box = np.round([cx0 / plan.width, cy0 / plan.height, cx1 / plan.width, cy1 / plan.height], 3)
    if box[2] <= box[0] or box[3] <= box[1]:
        return None
    return box


def annotate(plan: VideoPlan, excluded: tuple[int, ...]) -> AvaRows:
    """Ground-truth rows of ``plan``: one per (visible person, action) at each keyframe that is
    not excluded, sorted by timestamp, person and action id."""
    stamps, boxes, actions, persons = [], [], [], []
    skip = set(excluded)
    for ts in keyframe_timestamps(plan.duration).tolist():
        if ts in skip:
            continue
        t = float(ts - TIME_OFFSET)
        for k, track in enumerate(plan.tracks):
            box = person_box(plan, k, t)
            if box is None:
                continue
            for key in sorted(track.segment_at(t).labels(), key=lambda c: CLASS_BY_KEY[c].ava_id):
                stamps.append(ts)
                boxes.append(box)
                actions.append(CLASS_BY_KEY[key].ava_id)
                persons.append(k)
    n = len(stamps)
    return AvaRows(np.full(n, plan.video_id), np.asarray(stamps, np.int64),
                   np.asarray(boxes, np.float32).reshape(n, 4), np.asarray(actions, np.int64),
                   np.asarray(persons, np.int64))


def class_counts(rows: AvaRows) -> dict[str, int]:
    """Rows per class name, in label-map order."""
    return {c.name: int((rows.action_id == c.ava_id).sum()) for c in sorted(CLASSES, key=lambda c: c.ava_id)}


# ------------------------------------------------------------------------------------------ planning

def frame_rates(rng: np.random.Generator, config: Config, n_total: int) -> list[int]:
    """Frame rate of each video of the dataset: the first of ``config.fps``, except about 30 %
    (at least one when there are two videos or more) at the others."""
    rates = [config.fps[0]] * n_total
    if len(config.fps) > 1 and n_total >= 2:
        for slot in rng.choice(n_total, size=max(1, int(0.3 * n_total)), replace=False).tolist():
            rates[slot] = int(config.fps[1 + int(rng.integers(len(config.fps) - 1))])
    return rates


def _video_settings(rng: np.random.Generator, config: Config, split: str, ids: list[str],
                    n_before: int, rates: list[int]) -> list[VideoPlan]:
    """Per-video settings (fps, audio, camera) before any figure is planned."""
    plans = []
    n = len(ids)
    silent: set[int] = set()
    if n >= 3:
        silent = set(rng.choice(n, size=max(1, round(n / 6)), replace=False).tolist())
    panning = set(rng.choice(n, size=max(1, round(0.35 * n)), replace=False).tolist()) if n >= 2 else set()
    for i, vid in enumerate(ids):
        fps = rates[n_before + i]
        pan = 0.0
        if i in panning:
            pan = float(rng.uniform(0.01, 0.03) * config.width * rng.choice([-1, 1]))
            pan = float(np.clip(pan, -1.5 * config.width / config.duration, 1.5 * config.width / config.duration))
        plans.append(VideoPlan(
            video_id=vid, split=split, width=config.width, height=config.height, fps=int(fps),
            duration=config.duration, pan=pan, cam0=0.0 if pan >= 0 else -pan * config.duration,
            has_audio=i not in silent, sample_rate=int(rng.choice([16000, 22050, 44100, 48000])),
            channels=int(rng.choice([1, 2])), seed=int(rng.integers(2**31)),
        ))
    return plans


def _split_excluded(rng: np.random.Generator, plans: list[VideoPlan]) -> list[tuple[int, ...]]:
    out = []
    for plan in plans:
        stamps = keyframe_timestamps(plan.duration)
        k = min(len(stamps), max(1, round(EXCLUDED_FRACTION * len(stamps)))) if len(stamps) else 0
        out.append(tuple(sorted(rng.choice(stamps, size=k, replace=False).tolist())))
    return out


def plan_split(seed: int, split: str, settings: list[VideoPlan], excluded: list[tuple[int, ...]],
               min_rows: int) -> tuple[list[VideoPlan], list[AvaRows]]:
    """Plans of one split and their ground truth; redraws (seeded by attempt) until every class has
    ``min_rows`` rows, else keeps the attempt closest to it (and says so on stderr)."""
    best: tuple[tuple[int, int], list[VideoPlan], list[AvaRows]] | None = None
    if not settings:
        return [], []
    total_seconds = sum(p.duration for p in settings)
    for attempt in range(MAX_ATTEMPTS):
        rng = np.random.default_rng([seed, SPLITS.index(split), attempt, 11])
        quota = Quota(target=max(1.0, 1.2 * total_seconds / 30))
        plans = [plan_tracks(rng, s, quota) for s in settings]
        rows = [annotate(p, ex) for p, ex in zip(plans, excluded)]
        counts = class_counts(AvaRows.concat(rows))
        score = (sum(min(v, min_rows) for v in counts.values()), min(counts.values()))
        if best is None or score > best[0]:
            best = (score, plans, rows)
        if all(v >= min_rows for v in counts.values()):
            break
    assert best is not None
    _, plans, rows = best
    short = {k: v for k, v in class_counts(AvaRows.concat(rows)).items() if v < min_rows}
    if short:
        print(f"synth: split {split}: after {MAX_ATTEMPTS} plans some classes have fewer than "
              f"{min_rows} rows: {short}", file=sys.stderr)
    return plans, rows


def plan_dataset(config: Config, seed: int) -> dict[str, tuple[list[VideoPlan], list[Annotation]]]:
    """Plans and ground truth per split, deterministic for ``seed``."""
    n_total = sum(config.videos.get(s, 0) for s in SPLITS)
    all_ids = video_ids(np.random.default_rng([seed, 1]), n_total)
    rates = frame_rates(np.random.default_rng([seed, 4]), config, n_total)
    out = {}
    n_before = 0
    for split_index, split in enumerate(SPLITS):
        n = config.videos.get(split, 0)
        ids = sorted(all_ids[n_before:n_before + n])
        rng = np.random.default_rng([seed, split_index, 2])
        settings = _video_settings(rng, config, split, ids, n_before, rates)
        excluded = _split_excluded(rng, settings)
        plans, rows = plan_split(seed, split, settings, excluded, config.min_rows.get(split, 0))
        out[split] = (plans, [Annotation(r, ex) for r, ex in zip(rows, excluded)])
        n_before += n
    return out


# ------------------------------------------------------------------------------------------ writing

def _render(args: tuple[VideoPlan, str, str]) -> tuple[str, float]:
    import cv2

    from pipeline.synth.render import write_video

    cv2.setNumThreads(1)
    plan, path, preset = args
    start = time.perf_counter()
    write_video(plan, Path(path), preset=preset, threads=1)
    return plan.video_id, time.perf_counter() - start


def _video_meta(plan: VideoPlan) -> dict:
    return {"video_id": plan.video_id, "split": plan.split, "fps": plan.fps, "width": plan.width,
            "height": plan.height, "duration_s": plan.duration, "n_frames": plan.n_frames,
            "has_audio": plan.has_audio, "sample_rate": plan.sample_rate if plan.has_audio else None,
            "channels": plan.channels if plan.has_audio else None, "pan_px_per_s": round(plan.pan, 3),
            "n_persons": len(plan.tracks), "time_offset": TIME_OFFSET}


def _remove_stale_videos(out: Path, keep: set[str]) -> None:
    """Delete the videos of an earlier run into ``out`` (listed in its meta.json) that this run does not make."""
    import json

    meta = out / "meta.json"
    if not meta.exists():
        return
    for video in json.loads(meta.read_text()).get("videos", []):
        vid = video.get("video_id")
        if vid and vid not in keep:
            (out / "videos" / f"{vid}.mp4").unlink(missing_ok=True)


def generate(out: Path, config: Config, seed: int, size: str, threads: int = 1) -> dict:
    """Write the dataset under ``out``; returns the content of meta.json."""
    started = time.perf_counter()
    planned = plan_dataset(config, seed)
    plans = [p for split in SPLITS for p in planned[split][0]]
    _remove_stale_videos(out, {p.video_id for p in plans})
    (out / "videos").mkdir(parents=True, exist_ok=True)
    ann_dir = out / "annotations"
    write_label_map(ann_dir / "label_map.pbtxt", label_map())
    counts = {}
    for split in SPLITS:
        split_plans, annotations = planned[split]
        rows = AvaRows.concat([a.rows for a in annotations])
        write_ground_truth(ann_dir / f"{split}.csv", rows)
        write_keyframes(ann_dir / f"{split}_excluded_timestamps.csv",
                       [(p.video_id, ts) for p, a in zip(split_plans, annotations) for ts in a.excluded])
        write_text(ann_dir / f"{split}.videos.txt", "".join(f"{p.video_id}\n" for p in split_plans))
        counts[split] = class_counts(rows)
    planned_s = time.perf_counter() - started

    jobs = [(p, str(out / "videos" / f"{p.video_id}.mp4"), config.x264_preset) for p in plans]
    seconds: dict[str, float] = {}
    if threads <= 1 or len(jobs) <= 1:
        results = map(_render, jobs)
        seconds.update(progress(results, desc="synth videos", total=len(jobs), unit="video"))
    else:
        with ProcessPoolExecutor(max_workers=threads, mp_context=get_context("spawn")) as pool:
            seconds.update(progress(pool.map(_render, jobs), desc="synth videos", total=len(jobs), unit="video"))

    params = {"seed": seed, "size": size, **asdict(config)}
    meta = {
        "seed": seed,
        "size": size,
        "parameters": params,
        "time_offset": TIME_OFFSET,
        "keyframe_margin": KEYFRAME_MARGIN,
        "splits": {s: [p.video_id for p in planned[s][0]] for s in SPLITS},
        "videos": [_video_meta(p) for p in plans],
        "class_counts": counts,
        "provenance": provenance("synth", params),
    }
    write_json(out / "meta.json", meta)
    total = time.perf_counter() - started
    print(f"synth: {len(plans)} videos in {total:.1f} s (planning {planned_s:.1f} s, "
          f"rendering {sum(seconds.values()):.1f} video-seconds on {threads} workers)", file=sys.stderr)
    return meta


def resolve_config(size: str, overrides: dict) -> Config:
    """The preset ``size`` with ``overrides`` (width, height, duration, fps, videos_per_split) applied."""
    config = SIZES[size]
    changes: dict = {}
    for key in ("width", "height", "duration"):
        if overrides.get(key) is not None:
            changes[key] = int(overrides[key])
    if overrides.get("fps") is not None:
        fps = overrides["fps"]
        changes["fps"] = tuple(int(v) for v in (fps if isinstance(fps, (list, tuple)) else str(fps).split(",")))
    vps = overrides.get("videos_per_split")
    if vps is not None:
        changes["videos"] = parse_videos_per_split(vps)
    config = replace(config, **changes)
    if config.width % 2 or config.height % 2 or config.width < 32 or config.height < 32:
        raise ValueError(f"frame size must be even and at least 32x32, got {config.width}x{config.height}")
    if config.duration < 2 * KEYFRAME_MARGIN + 1:
        raise ValueError(f"duration must be at least {2 * KEYFRAME_MARGIN + 1} s, got {config.duration}")
    if any(f <= 0 for f in config.fps):
        raise ValueError(f"fps must be positive, got {config.fps}")
    if any(n < 0 for n in config.videos.values()) or set(config.videos) - set(SPLITS):
        raise ValueError(f"videos per split must be counts for {SPLITS}, got {config.videos}")
    return config


def parse_videos_per_split(value: object) -> dict[str, int]:
    """``3`` (every split), ``"train=3,val=2"`` or a dict, as {split: count}."""
    if isinstance(value, dict):
        return {str(k): int(v) for k, v in value.items()}
    text = str(value).strip()
    if "=" not in text:
        return {s: int(text) for s in SPLITS}
    out = {}
    for item in text.split(","):
        key, _, count = item.partition("=")
        out[key.strip()] = int(count)
    return out


#!/usr/bin/env bash
# GPU check (issue 10), one prepared script of at most 8 minutes on a machine with a GPU:
#
#   bench/gpu.sh [--cpu-only] [--quick] [--work DIR] [--tolerance 0.02]
#
# 1. Python: .venv when it has what the pipeline needs; else the machine's python3 when it has it
#    (with wheels carried in .whl/ installed to /tmp/site first, if any); else `make install`.
# 2. The tiny synthetic dataset (`python -m pipeline.synth --size tiny --seed 3`) and the e2e test's
#    tiny config (tests/tiny.py `tiny_config`).
# 3. Two runs of the whole tiny DAG side by side: A with `compute.device: cpu`, B with
#    `compute.device: cuda` (every torch stage on the GPU, bf16 autocast: the config's default).
# 4. Same weights, same boxes: A's trained backbones and heads rerun the features and predict stages
#    on A's person boxes on CUDA (C, bf16; C32, precision off). Their prediction CSVs must hold
#    exactly A's boxes and classes, with every score within --tolerance (0.02 absolute for bf16,
#    0.005 with precision off) of A's. Why 0.02: bf16 keeps 8 significant bits (a relative rounding
#    error of 2^-9 per operation); through the backbone's ~10 layers the features move by about 1 %
#    (they are stored as float16 either way), a head's logit (|logit| < 5 here) by about 0.05, and a
#    score, sigmoid(logit), by at most a quarter of that. Precision off still runs cuDNN's TF32
#    convolutions (10-bit mantissa): 0.005.
#    A against B is reported, not judged by a tolerance: B trains the detector, the backbones and
#    the heads on the GPU, where dropout draws from CUDA's generator (other masks than the CPU's) and
#    the arithmetic is bf16, so its weights and boxes are another training's. The script prints
#    both runs' mAPs, detection AP and how many of A's boxes B found again.
# 5. bench/train.py's figures (CPU and CUDA side by side); its last line is its JSON.
#
# --cpu-only runs what a machine without GPU can: A, then C and C32 on the CPU (they must then equal
# A's predictions exactly, a check of the check) and `bench/train.py --cpu-only --quick`. --work DIR
# keeps the runs in DIR (and reuses a finished A there). The exit status is 0 when every check
# passed.
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT" || exit 2
CPU_ONLY=0
QUICK=0
WORK=""
TOL=0.02
TOL_FP32=0.005
while [ $# -gt 0 ]; do
    case "$1" in
        --cpu-only) CPU_ONLY=1 ;;
        --quick) QUICK=1 ;;
        --work) WORK=$2; shift ;;
        --tolerance) TOL=$2; shift ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done
WORK=${WORK:-$(mktemp -d /tmp/gpu_check.XXXXXX)}
mkdir -p "$WORK"
WORK=$(cd "$WORK" && pwd)
CORES=$(nproc 2>/dev/null || echo 2)
START=$SECONDS
FAILED=0
step() { printf '\n== [%3ds] %s\n' "$((SECONDS - START))" "$*"; }
fail() { echo "FAILED: $*"; FAILED=1; }

# --- 1. Python ---------------------------------------------------------------------------------
NEEDED="import torch, torchvision, cv2, simplejpeg, snakemake, librosa, h5py, pyarrow, av, ffmpeg, imageio_ffmpeg"
NEEDED="$NEEDED, jsonschema, yaml"
step "python"
PY=""
if [ -x .venv/bin/python ] && .venv/bin/python -c "$NEEDED" 2>/dev/null; then
    PY=$ROOT/.venv/bin/python
else
    if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
            .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    fi
    if python3 -c "$NEEDED" 2>/dev/null; then
        PY=$(python3 -c "import sys; print(sys.executable)")
    elif timeout 300 make install; then
        PY=$ROOT/.venv/bin/python
    else
        echo "no Python with the pipeline's packages: .venv is missing or incomplete, python3 lacks some of"
        echo "  ($NEEDED), and 'make install' failed (no package registry?). Carry wheels in .whl/ (see"
        echo "  the device README) or a .venv, and run again."
        exit 2
    fi
fi
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
export PYTHONUNBUFFERED=1
"$PY" -c "import sys, torch; print(sys.executable, sys.version.split()[0], 'torch', torch.__version__,
      'cuda', torch.cuda.is_available(), torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')"
HAS_GPU=$("$PY" -c "import torch; print(int(torch.cuda.is_available()))")
if [ "$CPU_ONLY" = 0 ] && [ "$HAS_GPU" = 0 ]; then
    echo "torch sees no GPU: run with --cpu-only on a machine without one"
    exit 2
fi

# the comparisons, in Python
CHECK=$WORK/gpu_check.py
cat >"$CHECK" <<'PYEOF'
"""Helpers of bench/gpu.sh: configs, the same-weights rerun and the comparisons."""
import csv
import dataclasses
import importlib.util
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(sys.argv[1])
sys.path.insert(0, str(ROOT))


def tiny_config(data: Path) -> dict:
    spec = importlib.util.spec_from_file_location("tiny", ROOT / "tests" / "tiny.py")
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    return tiny.tiny_config(data)


def configs(work: Path, data: Path) -> None:
    """A's (cpu) and B's (cuda) config.yaml: the e2e test's tiny config, each with its device."""
    for name, device in (("A", "cpu"), ("B", "cuda")):
        config = tiny_config(data)
        config.setdefault("compute", {})["device"] = device
        (work / name).mkdir(exist_ok=True)
        (work / name / "config.yaml").write_text(yaml.safe_dump(config))


def rerun(work: Path, out: str, device: str, precision: str) -> None:
    """A's val features and predictions again, on ``device``, from A's weights and boxes (C)."""
    from pipeline.config import backbone_params, model_backbones, model_params, validate_config
    from pipeline.media.stores import store_kind
    from pipeline.params import ComputeParams, to_json
    from pipeline.stages import features, predict

    a = work / "A"
    config = validate_config(yaml.safe_load((a / "config.yaml").read_text()), "A/config.yaml")
    compute = ComputeParams(device=device, precision=precision, loader_workers=config["compute"]["loader_workers"])
    res, dst = a / config["results"], work / out
    label_map = res / "dataset" / "label_map.pbtxt"
    for split in config["dataset"]["eval_splits"]:
        for backbone in config["backbones"]:
            params = dataclasses.replace(backbone_params(config, backbone), compute=compute)
            kind, method = store_kind(params.modality)
            for made in sorted((res / "features" / backbone / split).glob("*.h5")):
                video = made.stem
                store = res / (f"flow/{method}" if kind == "flow" else kind) / f"{video}.h5"
                gt = res / "dataset" / f"{split}.gt.csv"
                argv = ["--weights", str(res / "models" / backbone / "backbone.pt"), "--store", str(store),
                        f"--video-id={video}", "--keyframes", str(res / "dataset" / f"{split}.keyframes.csv"),
                        "--boxes", str(res / "detect" / f"{split}.boxes.csv"), "--label-map", str(label_map),
                        "--out", str(dst / "features" / backbone / split / f"{video}.h5"),
                        "--params", to_json(params), "--threads", "2"]
                if gt.exists():
                    argv += ["--ground-truth", str(gt)]
                assert features.main(argv) == 0, argv
        for model in config["models"]:
            params = dataclasses.replace(model_params(config, model), compute=compute)
            groups = []
            for backbone in model_backbones(config["models"][model]):
                files = sorted((dst / "features" / backbone / split).glob("*.h5"))
                groups += ["--features", *map(str, files)]
            argv = ["--head", str(res / "models" / model / "head.pt"), *groups, "--label-map", str(label_map),
                    "--out", str(dst / "predictions" / model / f"{split}.csv"),
                    "--logits", str(dst / "predictions" / model / f"{split}.logits.parquet"),
                    "--params", to_json(params), "--threads", "2"]
            assert predict.main(argv) == 0, argv


def read_scores(path: Path) -> dict:
    with open(path) as f:
        return {(r[0], r[1], *r[2:6], r[6]): float(r[7]) for r in csv.reader(f) if r}


def compare_same(work: Path, out: str, tol: float) -> int:
    """C's predictions against A's: the same rows (boxes, classes), scores within ``tol``."""
    config = yaml.safe_load((work / "A" / "config.yaml").read_text())
    res = work / "A" / config.get("results", "results")
    bad = 0
    for path in sorted((work / out / "predictions").rglob("*.csv")):
        rel = path.relative_to(work / out)
        a, c = read_scores(res / rel), read_scores(path)
        if a.keys() != c.keys():
            print(f"  {rel}: NOT the same boxes/classes ({len(a)} rows in A, {len(c)} here, "
                  f"{len(a.keys() ^ c.keys())} differ)")
            bad += 1
            continue
        diff = np.array([abs(a[k] - c[k]) for k in a]) if a else np.zeros(1)
        ok = diff.max() <= tol
        bad += not ok
        print(f"  {rel}: {len(a)} rows, same boxes and classes; |score - A's| max {diff.max():.5f} "
              f"mean {diff.mean():.5f} (tolerance {tol}): {'ok' if ok else 'EXCEEDED'}")
    return bad


def iou(a, b) -> float:
    x1, y1, x2, y2 = max(a[0], b[0]), max(a[1], b[1]), min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def compare_runs(work: Path) -> None:
    """A (cpu) against B (cuda), each trained on its own device: mAPs, detection AP, boxes found again."""
    config = yaml.safe_load((work / "A" / "config.yaml").read_text())
    results = config.get("results", "results")
    ra, rb = work / "A" / results, work / "B" / results
    for split in config["dataset"]["eval_splits"]:
        ma, mb = (json.loads((r / "detect" / f"{split}.metrics.json").read_text()) for r in (ra, rb))
        print(f"  detector {split}: A {json.dumps(ma)}\n               B {json.dumps(mb)}")
        for path in sorted((ra / "eval").rglob(f"{split}.json")):
            other = rb / path.relative_to(ra)
            ea = json.loads(path.read_text())["mAP"]
            eb = json.loads(other.read_text())["mAP"] if other.exists() else float("nan")
            print(f"  {path.parent.name:>22} {split} mAP: A (cpu) {ea:.4f}  B (cuda) {eb:.4f}  diff {eb - ea:+.4f}")
        boxes = {}
        for name, r in (("A", ra), ("B", rb)):
            by_frame = defaultdict(list)
            with open(r / "detect" / f"{split}.boxes.csv") as f:
                for row in csv.reader(f):
                    if row:
                        by_frame[(row[0], row[1])].append([float(v) for v in row[2:6]])
            boxes[name] = by_frame
        total = sum(len(v) for v in boxes["A"].values())
        found = sum(1 for key, bs in boxes["A"].items() for b in bs
                    if any(iou(b, o) >= 0.9 for o in boxes["B"].get(key, [])))
        print(f"  {split} person boxes: A {total}, B {sum(len(v) for v in boxes['B'].values())}; "
              f"{found} of A's found again by B at IoU >= 0.9")


if __name__ == "__main__":
    command, work = sys.argv[2], Path(sys.argv[3])
    if command == "configs":
        configs(work, Path(sys.argv[4]))
    elif command == "rerun":
        rerun(work, sys.argv[4], sys.argv[5], sys.argv[6])
    elif command == "same":
        sys.exit(1 if compare_same(work, sys.argv[4], float(sys.argv[5])) else 0)
    elif command == "runs":
        compare_runs(work)
PYEOF

# --- 2. data and configs -------------------------------------------------------------------------
step "tiny dataset and configs in $WORK"
if [ ! -f "$WORK/data/.complete" ]; then
    timeout 120 "$PY" -m pipeline.synth --out "$WORK/data" --size tiny --seed 3 --threads "$CORES" \
        && touch "$WORK/data/.complete" || { fail "synth"; exit 1; }
fi
"$PY" "$CHECK" "$ROOT" configs "$WORK" "$WORK/data" || { fail "configs"; exit 1; }

# --- 3. the tiny DAG on the CPU (A) and on CUDA (B), side by side --------------------------------
dag() {   # dag NAME CORES: the whole tiny DAG in $WORK/NAME, its output in $WORK/NAME.log
    timeout 330 "$PY" -m snakemake --snakefile "$ROOT/Snakefile" --directory "$WORK/$1" \
        --configfile "$WORK/$1/config.yaml" --cores "$2" >"$WORK/$1.log" 2>&1
}
HALF=$(( CORES > 3 ? CORES / 2 : CORES ))
if [ "$CPU_ONLY" = 1 ]; then
    step "tiny DAG on the CPU (A); B (CUDA) left out: --cpu-only"
    dag A "$CORES" || { tail -30 "$WORK/A.log"; fail "tiny DAG A (cpu)"; exit 1; }
else
    step "tiny DAG on the CPU (A) and on CUDA (B) side by side, $HALF cores each"
    dag A "$HALF" & PID_A=$!
    dag B "$HALF" & PID_B=$!
    wait $PID_A || { tail -30 "$WORK/A.log"; fail "tiny DAG A (cpu)"; exit 1; }
    wait $PID_B || { tail -30 "$WORK/B.log"; fail "tiny DAG B (cuda)"; }
fi
grep -h "Finished job\|steps (100%) done" "$WORK"/A.log | tail -1
step "devices the model stages report (their logs)"
for run in A B; do
    [ -d "$WORK/$run/results/logs" ] || continue
    for stage in features head predict; do
        n=$(grep -rl "cuda" "$WORK/$run/results/logs/$stage" 2>/dev/null | wc -l)
        t=$(find "$WORK/$run/results/logs/$stage" -name '*.log' 2>/dev/null | wc -l)
        echo "  $run $stage: $n of $t logs say cuda"
    done
done

# --- 4. same weights, same boxes --------------------------------------------------------------
if [ "$CPU_ONLY" = 1 ]; then DEV=cpu; else DEV=cuda; fi
step "same weights and boxes: A's models, features + predict on $DEV (bf16: C; off: C32)"
for spec in "C bf16 $TOL" "C32 off $TOL_FP32"; do
    set -- $spec
    rm -rf "${WORK:?}/$1"
    if timeout 120 "$PY" "$CHECK" "$ROOT" rerun "$WORK" "$1" "$DEV" "$2" >"$WORK/$1.log" 2>&1; then
        echo " $1 ($DEV, precision $2):"
        "$PY" "$CHECK" "$ROOT" same "$WORK" "$1" "$3" || fail "$1 predictions differ from A's beyond $3"
    else
        tail -20 "$WORK/$1.log"; fail "rerun $1"
    fi
done
if [ "$CPU_ONLY" = 0 ] && [ -d "$WORK/B/results/eval" ]; then
    step "A (cpu) against B (cuda), each trained on its own device (reported, not judged)"
    "$PY" "$CHECK" "$ROOT" runs "$WORK" || fail "comparing A and B"
fi

# --- 5. bench/train.py -------------------------------------------------------------------------
step "bench/train.py"
BENCH_ARGS=()
[ "$CPU_ONLY" = 1 ] && BENCH_ARGS+=(--cpu-only)
[ "$QUICK" = 1 ] && BENCH_ARGS+=(--quick)
REMAINING=$(( 470 - (SECONDS - START) ))
if [ "$REMAINING" -lt 150 ] && [ "$QUICK" = 0 ]; then
    echo "  ${REMAINING} s left of the 8 minutes: the quick sizes"
    BENCH_ARGS+=(--quick)
fi
timeout $(( REMAINING > 60 ? REMAINING : 60 )) "$PY" bench/train.py "${BENCH_ARGS[@]}" 2>&1 | tee "$WORK/bench.log"
[ "${PIPESTATUS[0]}" = 0 ] || fail "bench/train.py"

VERDICT=$([ $FAILED = 0 ] && echo 'every check passed' || echo 'SOME CHECKS FAILED')
step "done in $((SECONDS - START)) s: $VERDICT (work: $WORK)"
exit $FAILED

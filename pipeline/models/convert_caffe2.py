"""Convert a Caffe2 weights pickle (video-nonlocal-net's ``i3d_nonlocal_32x2_IN_pretrain_400k.pkl``,
PySlowFast's model-zoo ``I3D_NLN_8x8_R50.pkl``, ...) once into a ``.pt`` file of tensors that
``weights_layout: caffe2`` loads with ``torch.load(weights_only=True)``:

    python -m pipeline.models.convert_caffe2 IN.pkl OUT.pt

The pickle is ``{"blobs": {name: numpy array}, ...}`` (or the blobs dict itself), written by
Python 2's cPickle or Python 3. It is read by an unpickler that allows numpy's array
reconstruction only (``ndarray``, ``dtype``, ``_reconstruct``, ``scalar`` and the ``_codecs.encode``
that Python 3 pickles use for bytes): a pickle naming any other class or function is refused before
anything in it runs. Arrays keep their Caffe2 blob names (``conv1_w``, ``res2_0_branch2a_bn_s``,
``nonlocal_conv3_1_theta_w``, ...); optimizer momenta (``*_momentum``) and non-array entries
(``model_iter``, ``lr``) are left out.
"""

from __future__ import annotations

import argparse
import codecs
import pickle
from pathlib import Path

import numpy as np
import torch

from pipeline.store import atomic_path

#: The only globals a Caffe2 weights pickle may name: ``(module, name) -> object``.
ALLOWED_GLOBALS = {
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("numpy.core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): np._core.multiarray._reconstruct,
    ("numpy.core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("numpy._core.multiarray", "scalar"): np._core.multiarray.scalar,
    ("_codecs", "encode"): codecs.encode,
}


class NumpyOnlyUnpickler(pickle.Unpickler):
    """An unpickler that resolves :data:`ALLOWED_GLOBALS` only and refuses every other global."""

    def find_class(self, module: str, name: str):
        try:
            return ALLOWED_GLOBALS[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refused global {module}.{name}: a Caffe2 weights pickle holds "
                                         f"numpy arrays only") from None


def read_caffe2_blobs(path: str | Path) -> dict[str, np.ndarray]:
    """The numpy arrays of a Caffe2 weights pickle, by blob name (momenta and non-arrays left out).

    Raises ValueError naming the file when it is not such a pickle (or names a refused global).
    """
    try:
        with open(path, "rb") as f:
            data = NumpyOnlyUnpickler(f, encoding="latin1").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as err:
        raise ValueError(f"{path}: not a Caffe2 weights pickle ({err})") from err
    if isinstance(data, dict) and isinstance(data.get("blobs"), dict):
        data = data["blobs"]
    if not isinstance(data, dict):
        raise ValueError(f"{path}: not a Caffe2 weights pickle (a {type(data).__name__}, not a dict of blobs)")
    blobs = {str(k): v for k, v in data.items() if isinstance(v, np.ndarray) and not str(k).endswith("_momentum")}
    if not blobs:
        raise ValueError(f"{path}: no weight arrays in this Caffe2 pickle")
    return blobs


def convert(source: str | Path, out: str | Path) -> int:
    """Write ``source``'s arrays as ``{blob name: float32 tensor}`` to ``out``; the number of tensors."""
    blobs = read_caffe2_blobs(source)
    tensors = {name: torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)) for name, a in blobs.items()}
    with atomic_path(Path(out)) as tmp:
        torch.save(tensors, tmp)
    return len(tensors)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", type=Path, help="Caffe2 weights pickle (.pkl)")
    parser.add_argument("out", type=Path, help="tensors for weights_layout: caffe2 (.pt)")
    args = parser.parse_args(argv)
    count = convert(args.source, args.out)
    print(f"{args.out}: {count} arrays of {args.source}")


if __name__ == "__main__":
    main()

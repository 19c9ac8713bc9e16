"""A synthetic AVA-like dataset: articulated figures acting on textured scenes, with sound.

``python -m pipeline.synth --out DIR --size tiny|demo|ava --seed N`` writes videos, AVA-format
annotations and meta.json (see :mod:`pipeline.synth.dataset` for the layout). Everything derives
from a per-video scene plan (:mod:`pipeline.synth.plan`), so frames, audio and labels agree.
"""

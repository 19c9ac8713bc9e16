"""Stage entry points: one module per Snakemake rule (``python -m pipeline.stages.<rule>``).

Each reads its inputs, takes its typed parameters (:mod:`pipeline.params`) from ``--params``, calls
the libraries and writes its outputs. A stage imports libraries only, never another stage
(``tests/test_layers.py``).
"""

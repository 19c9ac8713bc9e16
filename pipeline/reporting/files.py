"""The names of the files that the report stage writes into its folder: the one place that the stage
and the rule (``workflow/rules/common.smk``) read them from."""

from __future__ import annotations

INDEX = "index.md"             # the Markdown front page
TABLE1 = "table1.md"           # the paper's Table I for what ran
CONFIG = "config.yaml"         # the validated config that produced the run

#: The HTML pages of the Snakemake report (``snakemake --report``), one table each: name -> file.
PAGES = {
    "map": "map.html",                    # mAP of every model beside the baseline; videos not evaluated
    "table1": "table1.html",              # Table I with the paper's figures
    "label_types": "label_types.html",    # mAP per label type
    "ap_per_class": "ap_per_class.html",  # AP per class
    "detector": "detector.html",          # the person detector's recall and precision
    "stages": "stages.html",              # wall time and peak memory per stage (benchmark files)
    "config": "config.html",              # the config
    "ablation": "ablation.html",          # the ablation over seeds (results/ablation/summary.md), when run
}

#: The figures, one per evaluated split: name -> file pattern.
FIGURES = {
    "ap_per_class": "ap_per_class_{split}.png",
    "pr_best": "pr_best_{split}.png",
}


def figure_file(name: str, split: str) -> str:
    return FIGURES[name].format(split=split)


def contact_sheet_file(path: str) -> str:
    """The report's copy of a contact sheet ``results/visualize/{video}.contact_sheet.png``: its file name."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]

# The AVA action-localization pipeline (Jiang et al., ActivityNet AVA 2018) as one DAG.
# `snakemake --cores N` runs it all; README.md shows the DAG, the outputs and the configuration.
# `--configfile my.yaml` replaces config.yaml (it is not merged into it).
from snakemake.utils import min_version

min_version("9.0")


if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"


report: "workflow/report/workflow.rst"  # the front page of `snakemake --report results/report.html`


rule all:
    default_target: True
    input:
        final_outputs,


# `snakemake infer --config infer_videos=DIR`: every video of DIR through the trained DAG, no annotations needed.
rule infer:
    input:
        infer_outputs,


include: "workflow/rules/dataset.smk"
include: "workflow/rules/prepare.smk"
include: "workflow/rules/frames.smk"
include: "workflow/rules/flow.smk"
include: "workflow/rules/audio.smk"
include: "workflow/rules/detect.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/features.smk"
include: "workflow/rules/head.smk"
include: "workflow/rules/predict.smk"
include: "workflow/rules/baseline.smk"
include: "workflow/rules/fuse.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/ablation.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/visualize.smk"

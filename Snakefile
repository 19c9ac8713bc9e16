# The AVA action-localization pipeline (Jiang et al., ActivityNet AVA 2018) as one DAG.
# `snakemake --cores N` runs it all; README.md shows the DAG, the outputs and the configuration.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config.yaml"


include: "workflow/rules/common.smk"


rule all:
    input:
        final_outputs(),
    default_target: True


include: "workflow/rules/dataset.smk"
include: "workflow/rules/media.smk"
include: "workflow/rules/detect.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/fusion.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"

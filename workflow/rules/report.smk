rule report:
    """The mAP table of every model beside the class-prior baseline, the detector's recall, and figures."""
    input:
        evaluations=expand(EVALUATION, model=prediction_names(), split=EVAL_SPLITS),
        detect_metrics=expand(DETECT_METRICS, split=EVAL_SPLITS),
        label_map=LABEL_MAP,
    output:
        index=REPORT,
        table1=f"{R}/report/table1.md",
    params:
        json=section_json({"models": MODELS, "backbones": BACKBONES, "fusions": FUSIONS,
                           "baseline": BASELINE, "eval_splits": EVAL_SPLITS}),
        out_dir=f"{R}/report",
    log:
        f"{LOGS}/report.log",
    conda:
        "../../envs/models.yaml"
    shell:
        "python -m pipeline.report --evaluations {input.evaluations} --detect-metrics {input.detect_metrics}"
        " --label-map {input.label_map} --out-dir {params.out_dir} --params {params.json:q} > {log} 2>&1"

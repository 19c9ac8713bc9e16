rule report:
    """The mAP table of every model beside the class-prior baseline, the detector's recall, and figures."""
    input:
        evaluations=expand(EVALUATION, model=prediction_names(), split=EVAL_SPLITS),
        detect_metrics=expand(DETECT_METRICS, split=EVAL_SPLITS),
        label_map=LABEL_MAP,
    output:
        index=REPORT,
        table1=REPORT_TABLE1,
        figures=REPORT_FIGURES,
    log:
        f"{LOGS}/report.log",
    conda:
        "../../envs/models.yaml"
    params:
        json=PARAMS_JSON["report"],
    shell:
        "python -m pipeline.stages.report --evaluations {input.evaluations} --detect-metrics {input.detect_metrics}"
        " --label-map {input.label_map} --out {output.index} --params {params.json:q} > {log} 2>&1"

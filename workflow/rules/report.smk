rule report:
    """The mAP table of every model beside the class-prior baseline, Table I, the detector's recall, each
    stage's cost and figures: index.md, and the items of `snakemake --report` (captions in workflow/report/)."""
    input:
        evaluations=expand(EVALUATION, model=prediction_names(), split=EVAL_SPLITS),
        detect_metrics=expand(DETECT_METRICS, split=EVAL_SPLITS),
        label_map=LABEL_MAP,
        benchmarks=benchmark_files,
        contact_sheets=REPORT_CONTACT_SHEETS,
        ablation=[ABLATION_MD] if "ablation" in config else [],
    output:
        index=REPORT,
        table1=REPORT_TABLE1,
        config=REPORT_CONFIG,
        map_page=report(REPORT_PAGES["map"], caption="../report/map.rst", category="1. Results", labels={"item": "mAP"}),
        table1_page=report(
            REPORT_PAGES["table1"], caption="../report/table1.rst", category="1. Results", labels={"item": "Table I"}
        ),
        label_types_page=report(
            REPORT_PAGES["label_types"],
            caption="../report/label_types.rst",
            category="1. Results",
            labels={"item": "mAP per label type"},
        ),
        ap_per_class_page=report(
            REPORT_PAGES["ap_per_class"],
            caption="../report/ap_per_class.rst",
            category="1. Results",
            labels={"item": "AP per class (table)"},
        ),
        ap_per_class_figures=report_items(
            REPORT_FIGURES["ap_per_class"], "../report/ap_per_class_figure.rst", "2. Figures", "AP per class"
        ),
        pr_figures=report_items(REPORT_FIGURES["pr_best"], "../report/pr_best.rst", "2. Figures", "precision-recall"),
        detector_page=report(
            REPORT_PAGES["detector"],
            caption="../report/detector.rst",
            category="3. Person detector",
            labels={"item": "recall and precision"},
        ),
        contact_sheets=[
            report(path, caption="../report/contact_sheet.rst", category="4. Visualization")
            for path in REPORT_CONTACT_SHEET_COPIES
        ],
        stages_page=report(
            REPORT_PAGES["stages"],
            caption="../report/stages.rst",
            category="5. Cost",
            labels={"item": "wall time and memory per stage"},
        ),
        ablation_page=report(
            REPORT_PAGES["ablation"],
            caption="../report/ablation.rst",
            category="1. Results",
            labels={"item": "ablations over seeds"},
        ),
        config_page=report(
            REPORT_PAGES["config"],
            caption="../report/config.rst",
            category="6. Configuration",
            labels={"item": "config"},
        ),
    log:
        f"{LOGS}/report.log",
    conda:
        "../../envs/models.yaml"
    params:
        json=PARAMS_JSON["report"],
        ablation=lambda wildcards, input: f"--ablation {input.ablation}" if input.ablation else "",
        benchmark_root=lambda wildcards: BENCH,  # read whole: more benchmark files than a command line holds
    shell:
        "python -m pipeline.stages.report --evaluations {input.evaluations} --detect-metrics {input.detect_metrics}"
        " --label-map {input.label_map} --benchmark-root {params.benchmark_root}"
        " --contact-sheets {input.contact_sheets} {params.ablation} --out {output.index} --params {params.json:q} > {log} 2>&1"

rule visualize:
    """One video drawn: person boxes by track, top actions, at its own frame rate with its audio; a contact sheet."""
    input:
        unpack(visualize_inputs),
    output:
        video=VISUALIZED,
        sheet=CONTACT_SHEET,
    log:
        f"{LOGS}/visualize/{{video}}.log",
    benchmark:
        f"{BENCH}/visualize/{{video}}.tsv"
    conda:
        "../../envs/media.yaml"
    threads: 1
    resources:
        mem_mb=1500,
        runtime=30,
    params:
        json=lambda wildcards: PARAMS_JSON["visualize_infer" if wildcards.video in INFER_VIDEOS else "visualize"],
    shell:
        "python -m pipeline.stages.visualize --video {input.video:q} --video-id={wildcards.video:q}"
        " --logits {input.logits} --keyframes {input.keyframes} --label-map {input.label_map} --out {output.video}"
        " --contact-sheet {output.sheet} --params {params.json:q} > {log} 2>&1"

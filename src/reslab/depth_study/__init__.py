"""The depth study (issue 12): He et al. 2016's plain and residual CIFAR nets (`models.cifar`) trained at several
depths and seeds with one budget, from the main pipeline's split; its own DVC pipeline, studies/depth/dvc.yaml.

    params.py    the study's params (studies/depth/params.yaml), typed and strict; the families; the cells
    layout.py    its paths; the project root from studies/depth
    cell.py      one cell's recipe, fingerprint and summary; the estimate of the time left
    analysis.py  means and t-intervals across seeds, paired differences plain - residual, the verdict rule
    report.py    reports/depth_study.md
    runs.py      MLflow: the study's parent run, a child run per cell, the report on the parent
    profiles.py  `reslab depth-study profile NAME`: studies/depth/profiles/NAME.yaml into params.yaml
    stages/      the stages' mains: prepare.py, train.py (one cell), report.py
"""

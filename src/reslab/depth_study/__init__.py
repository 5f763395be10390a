"""The depth study (issue 12): He et al. 2016's plain and residual CIFAR nets (`models.cifar`) trained at several
depths and seeds with one budget, from the main pipeline's split; a DVC project of its own, studies/depth.

What is the study's own lives here; the rest is the main plan's:

    params.py    studies/depth/params.yaml: the main config's sections (data, train, augment, mlflow) with the
                 study's defaults, and its own keys (depths, seeds, model.widths, report); the families; the cells
    layout.py    its paths; the project root from studies/depth
    cell.py      one cell's training config and summary; the estimate of the time left
    analysis.py  means and t-intervals across seeds, paired differences plain - residual, the verdict's words
    report.py    reports/depth_study.md
    profiles.py  `reslab depth-study profile NAME`: studies/depth/profiles/NAME.yaml into params.yaml

Elsewhere: the stages' mains in stages/depth_{prepare,train,report}.py, the MLflow runs in tracking/study_run.py,
the verdict rule (`seed_verdict`) in statistics/verdict.py, the `reslab depth-study` commands in cli.py.
"""

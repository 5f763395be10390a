"""Stage `report` of studies/depth/dvc.yaml, the only reader of the test split: each cell's final model on it, the
analysis across seeds, reports/depth_study.md, metrics.json and the figures, logged onto the study's parent run."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .. import plots, tracking
from ..config import flatten
from ..data.prepared import load_prepared
from ..depth_study.analysis import analyse, flat_metrics, metrics_summary
from ..depth_study.cell import study_runtime
from ..depth_study.layout import REPRO, StudyLayout
from ..depth_study.params import FAMILIES, StudyParams, budget_params, cells, load_study_params
from ..depth_study.report import report_markdown
from ..models.serialization import load_model_file
from ..tracking.study_run import log_study_result
from ..training import ArrayLoader, evaluate, setup_runtime, to_device


def _load_cells(layout: StudyLayout, p: StudyParams, test, precision) -> tuple[list[dict], dict]:
    """Every cell's summary with its final model's test error, and its per-epoch curve."""
    loader = ArrayLoader(test, 256, shuffle=False, device=precision.device)
    rows, curves = [], {family: {depth: [] for depth in p.depths} for family in FAMILIES}
    for family, depth, seed in cells(p):
        path = layout.cell_summary(family, depth, seed)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no cell {family} depth {depth} seed {seed}; run `{REPRO}`")
        model, meta = load_model_file(layout.cell_model(family, depth, seed), precision.device)
        if meta["classes"] != test.classes:
            raise ValueError(f"{layout.cell_model(family, depth, seed)}: trained on classes {meta['classes']}, but "
                             f"the test split has {test.classes}; rerun `{REPRO}`")
        scores = evaluate(to_device(model, precision), loader, precision)
        rows.append({**json.loads(path.read_text()), "test_error": 1.0 - scores["accuracy"],
                     "test_loss": scores["loss"]})
        curves[family][depth].append(pd.read_csv(layout.cell_curve(family, depth, seed)).to_dict("records"))
    return rows, curves


def main(root: Path, params_file: Path) -> dict:
    """Stage `report`: the only reader of the test split; writes the report, metrics.json and the figures, and
    logs them onto the study's parent run."""
    p = load_study_params(params_file)
    tracking.setup(root, p.mlflow.experiment_name)  # the project's store; fails now if a server is down
    layout = StudyLayout(root)
    precision = setup_runtime(study_runtime(p), who="depth study report")
    test = load_prepared(layout.prepared, "test")
    rows, curves = _load_cells(layout, p, test, precision)
    result = analyse(rows, p.depths, p.seeds, p.report.confidence)
    setup = {"image_size": p.data.image_size, "widths": list(p.model.widths), "epochs": p.train.epochs,
             "batch_size": p.train.batch_size, "lr": p.train.lr, "augment_magnitude": p.augment.magnitude,
             "precision": precision.name, "n_train": len(load_prepared(layout.prepared, "train")),
             "n_val": len(load_prepared(layout.prepared, "val")), "n_test": len(test),
             "n_classes": len(test.classes),
             "n_parameters": {c["depth"]: c["n_parameters"] for c in rows if c["family"] == "plain"}}
    markdown = report_markdown(result, setup)
    layout.reports.mkdir(parents=True, exist_ok=True)
    layout.report.write_text(markdown)
    layout.metrics.write_text(json.dumps(metrics_summary(result), indent=2) + "\n")
    figures = {"error_vs_depth.png": plots.error_vs_depth(result["summary"], confidence=p.report.confidence,
                                                          title="Error vs depth (He et al. 2016, Fig. 6)"),
               "training_error_curves.png": plots.training_error_curves(
                   curves, title="Training error per epoch (He et al. 2016, Fig. 1)")}
    paths = [plots.save_figure(fig, layout.figures / name) for name, fig in figures.items()]
    log_study_result({c["mlflow_parent_run_id"] for c in rows}, flatten(budget_params(p)), flat_metrics(result),
                     {f"verdict_depth_{d}": v for d, v in result["verdicts"].items()}, [layout.report, layout.metrics],
                     paths, {c["mlflow_run_id"]: {m: c[m] for m in ("test_error", "test_loss")} for c in rows})
    print("\n".join(result["verdicts"].values()))
    print(f"depth study report: {layout.report}; metrics {layout.metrics}; figures {layout.figures}")
    return result

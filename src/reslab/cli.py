"""`reslab` command: the subcommands that DVC stages call, plus data generation, prediction and sweeps.

Stage names in dvc.yaml, subcommands here and modules in reslab.stages agree: `reslab filter` runs
reslab.stages.filter.main, and so on; `reslab depth-study STAGE` runs reslab.stages.depth_STAGE.main, a stage of
studies/depth/dvc.yaml.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from . import offline  # noqa: F401, E402  (no telemetry from any library this command imports)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--params", type=Path, default=Path("params.yaml"), help="params file (default: params.yaml)")
    p.add_argument("--root", type=Path, default=Path("."), help="project root (default: current directory)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="reslab", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    data = sub.add_parser("data", help="built-in data set")
    data_sub = data.add_subparsers(dest="data_command", required=True, metavar="ACTION")
    synth = data_sub.add_parser("synth", help="generate the built-in synthetic ImageFolder data set")
    synth.add_argument("--out", type=Path, default=Path("data"), help="output folder (default: data)")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--scale", type=float, default=1.0, help="multiply every class's image count")
    synth.add_argument("--workers", type=int, default=None)
    synth.add_argument("--overwrite", action="store_true", help="replace an earlier generated data set")

    for name, help_ in (("filter", "validate images, drop small classes -> manifest + data report"),
                        ("split", "seeded stratified train/val/test split, duplicates kept together"),
                        ("prepare", "decode + resize every split once into uint8 arrays"),
                        ("evaluate", "test-split metrics, paired comparison, figures, champion alias")):
        _add_common(sub.add_parser(name, help=help_))
    train = sub.add_parser("train", help="train one model (stage train_<role>)")
    train.add_argument("role", choices=["baseline", "resnet"], help="which training stage: params section train_ROLE")
    train.add_argument("--seed", type=int, default=None,
                       help="training seed of the replicate (stage train_ROLE@SEED); default: every seed of "
                            "replicates.seeds in turn")
    train.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_common(train)

    repro = sub.add_parser("repro", help="dvc repro with the training replicates run replicates.jobs at a time "
                                         "(what make run calls)")
    repro.add_argument("--jobs", type=int, default=None,
                       help="training stages at once (default: replicates.jobs; 1: exactly dvc repro)")
    repro.add_argument("--executor", choices=["local", "ray"], default="local",
                       help="local: processes on this machine (default); ray: each training replicate a task on a "
                            "Ray cluster, DVC still run here (docs/cluster.md)")
    repro.add_argument("--address", default=None,
                       help="with --executor ray: the cluster (ray start's HOST:PORT, ray://HOST:10001); default "
                            "cluster.address, else RAY_ADDRESS, else a `ray start` cluster on this machine, else a "
                            "Ray started for the run")
    _add_common(repro)

    predict = sub.add_parser("predict", help="classify images with the champion (or a named) model")
    predict.add_argument("images", nargs="+", type=Path, help="image files or folders")
    predict.add_argument("--model", default="champion",
                         help="'champion' (MLflow registry alias), a role (baseline, resnet: its best-validation "
                              "replicate), ROLE@SEED for one replicate, or a model file path")
    predict.add_argument("--top", type=int, default=3, help="classes to show per image")
    _add_common(predict)

    report = sub.add_parser("report", help="print the comparison table and how to open MLflow")
    _add_common(report)

    tune = sub.add_parser("tune", help="Optuna sweep of one model's training section (params: tune)")
    tune.add_argument("--role", choices=["baseline", "resnet"], default="resnet",
                      help="the model tuned: its study, tune.search_space.ROLE and params section train_ROLE "
                           "(default resnet); both get the same budget and objective")
    tune.add_argument("--storage", default=None,
                      help="Optuna storage URL (postgresql://..., sqlite:///...) or a journal file path; default: "
                           "the journal file tuning/optuna-journal.log")
    tune.add_argument("--workers", type=int, default=1, help="worker processes on this machine (default 1)")
    tune.add_argument("--n-trials", type=int, default=None, help="override tune.n_trials")
    tune.add_argument("--study-name", default=None, help="override tune.study_name ({role} is the role)")
    tune.add_argument("--apply", action="store_true",
                      help="write the role's best trial into train_ROLE of params.yaml (no tuning)")
    tune.add_argument("--no-progress", action="store_true", help="hide progress bars")
    _add_common(tune)

    study = sub.add_parser("depth-study", help="the depth study: plain vs residual nets as depth grows "
                                               "(studies/depth/dvc.yaml)")
    study_sub = study.add_subparsers(dest="study_command", required=True, metavar="ACTION")
    for name, help_ in (("prepare", "the main pipeline's split at the study's image size"),
                        ("report", "test errors, the comparison per depth, report, figures, metrics")):
        _add_study_common(study_sub.add_parser(name, help=help_))
    cell = study_sub.add_parser("train", help="train one cell (stage train@FAMILY-DEPTH-SEED)")
    cell.add_argument("--family", required=True, choices=["plain", "residual"])
    cell.add_argument("--depth", required=True, type=int, help="weighted layers, 6n+2 (8, 14, 20, ...)")
    cell.add_argument("--seed", required=True, type=int)
    cell.add_argument("--progress", action="store_true", help="show progress bars within each epoch")
    _add_study_common(cell)
    profile = study_sub.add_parser("profile", help="write a profile (cpu, gpu, tiny) into the study's params file")
    profile.add_argument("name", help="a file stem in studies/depth/profiles/")
    _add_study_common(profile)
    return parser


def _add_study_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", type=Path, default=None,
                   help="project root (default: the folder at or above the current one holding studies/depth)")
    p.add_argument("--params", type=Path, default=None,
                   help="the study's params file (default: ROOT/studies/depth/params.yaml)")


def run_depth_study(args: argparse.Namespace) -> int:
    """`reslab depth-study ACTION`: the stages of studies/depth/dvc.yaml (run there by DVC) and `profile`."""
    from .depth_study.layout import StudyLayout, find_root

    root = args.root.resolve() if args.root is not None else find_root(Path.cwd())
    layout = StudyLayout(root)
    params = args.params.resolve() if args.params is not None else layout.params
    if args.study_command == "profile":
        from .depth_study.profiles import apply_profile

        changes = apply_profile(params, layout.profiles, args.name)
        for key, old, new in changes:
            print(f"{key}: {old} -> {new}")
        print(f"profile {args.name}: {len(changes)} key(s) changed in {params}" if changes else
              f"profile {args.name}: {params} already has its values")
        return 0
    if args.study_command == "prepare":
        from .stages import depth_prepare as stage

        stage.main(root, params)
    elif args.study_command == "train":
        from .stages import depth_train as stage

        stage.main(root, params, args.family, args.depth, args.seed, progress=args.progress)
    elif args.study_command == "report":
        from .stages import depth_report as stage

        stage.main(root, params)
    return 0


def run(args: argparse.Namespace) -> int:
    if args.command == "depth-study":
        return run_depth_study(args)
    root = args.root.resolve() if hasattr(args, "root") else Path(".").resolve()
    params = (root / args.params) if hasattr(args, "params") and not args.params.is_absolute() else \
        getattr(args, "params", None)
    if args.command == "data":
        from .data.synth import main as synth_main

        synth_main(args.out, seed=args.seed, scale=args.scale, workers=args.workers, overwrite=args.overwrite)
    elif args.command == "filter":
        from .stages import filter as stage

        stage.main(root, params)
    elif args.command == "split":
        from .stages import split as stage

        stage.main(root, params)
    elif args.command == "prepare":
        from .stages import prepare as stage

        stage.main(root, params)
    elif args.command == "train":
        from .stages import train as stage

        stage.main(root, params, args.role, seed=args.seed, progress=not args.no_progress)
    elif args.command == "evaluate":
        from .stages import evaluate as stage

        stage.main(root, params)
    elif args.command == "repro":
        from .repro import main as repro_main

        return repro_main(root, params, args.jobs, args.executor, args.address)
    elif args.command == "predict":
        from .predict import main as predict_main

        return predict_main(root, params, args.images, args.model, args.top)
    elif args.command == "report":
        from .report import main as report_main

        return report_main(root, params)
    elif args.command == "tune":
        from .tuning import main as tune_main

        return tune_main(root, params, role=args.role, n_trials=args.n_trials, study_name=args.study_name,
                         workers=args.workers, storage=args.storage, apply=args.apply,
                         progress=not args.no_progress)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from .config import ConfigError
    from .data.errors import DataError
    from .errors import TrackingServerError

    try:
        return run(args)
    except (ConfigError, DataError, TrackingServerError, FileNotFoundError, ValueError) as e:
        if os.environ.get("RESLAB_DEBUG"):
            raise
        print(f"reslab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except Exception as e:  # noqa: BLE001 (MLflow's refusals only; anything else is a bug and keeps its traceback)
        # a tracking server with logins that refuses this account (a viewer running a stage): one line, not MLflow's
        # traceback; matched by its error code so that the CLI need not import MLflow
        if getattr(e, "error_code", None) not in ("PERMISSION_DENIED", "UNAUTHENTICATED") or os.environ.get(
                "RESLAB_DEBUG"):
            raise
        print(f"reslab {args.command}: error: the MLflow tracking server refused this account "
              f"({e.error_code}): {getattr(e, 'message', e)}; the server's admin grants roles "
              "(scripts/mlflow_accounts.py, docs/security.md)", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"reslab {args.command}: interrupted; finished work is kept (training resumes from its last epoch)",
              file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

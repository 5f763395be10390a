"""Parity with the study's own code: its Keras notebook (shared/reference/seed_notebook.py) and reslab trained on
exactly the same files over several seeds, and an ablation from reslab's fair recipe to the study's original one
difference at a time.

    make parity-env && make parity           # the built-in data set, 64 px, seeds 0-4, reference + every step
    .venv/bin/python benchmarks/parity.py --data DIR --seeds 0 1 2 --steps init adam_eps --skip-reference
    .venv/bin/python benchmarks/parity.py --data /tmp/d --min-images 20 --test-per-class 5 --image-size 32 \\
        --seeds 0 --epochs-cnn 2 --epochs-resnet 2 --steps init adam_eps --out /tmp/parity      # a smoke run

The files. reslab's filter (`reslab.data.filtering`) drops what cannot be decoded, so that Keras' generator does not
crash, and the harness drops what Keras' `flow_from_directory` would not list (KERAS_FORMATS); the clean tree it
links is what both implementations read. The split is the reference's rule (`reference_split`): classes with more
than --min-images files; the last --test-per-class sorted files of each class are the test folder (the notebook's
filter_files.sh, as seed_notebook.py ports it); of the rest, Keras' `validation_split=0.2` takes the first
int(0.2 n) sorted files of each class as validation and the others for training (keras 2.15,
`preprocessing/image.py`: subset "validation" is split (0, 0.2) and "training" (0.2, 1) of
`_iter_valid_files`, which sorts each folder's names). The reference makes its own split (--work-dir); the harness
checks that it holds the same files and counts before it uses the reference's figures.

reslab: `train_classifier` on arrays from `prepare_split` (one set per interpolation), no DVC or MLflow; held-out
accuracy on the test folder, in the precision the run trained in. Each variant is --params plus dotted overrides,
resolved by `reslab.config.resolve` exactly as the training stages resolve params.yaml. A role whose effective recipe a
step leaves unchanged (the BatchNorm switches, for the plain CNN, which has none) is not trained again: training is
deterministic for a seed, so the step's effect there is exactly 0.

Writes <out>/parity-<date>.{md,json,png} (parity_report.py) and keeps every run's raw JSON under --work, where a
rerun with the same settings finds it (an interrupted run continues). Prints progress and figures as it goes.
"""
from __future__ import annotations

import argparse
import dataclasses
import datetime
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import torch

from reslab.config import (PRESETS, ConfigError, Params, load_params, resolve, resolve_interpolation, resolve_runtime,
                           with_overrides)
from reslab.data.filtering import filter_dataset
from reslab.data.prepared import ImageArrays, load_prepared, prepare_split
from reslab.hardware import default_threads
from reslab.layout import file_lock
from reslab.models import create_model
from reslab.models.init import BATCH_NORMS
from reslab.training import ArrayLoader, evaluate, resolve_precision, setup_runtime, train_classifier

import parity_report  # the tables and the figure; a sibling module, found as this script's folder leads sys.path

ROOT = Path(__file__).resolve().parents[1]

ROLES = ("baseline", "resnet")
REFERENCE_ROLE = {"baseline": "cnn", "resnet": "resnet"}  # the keys of seed_notebook.py's JSON
KERAS_FORMATS = ("png", "jpg", "jpeg", "bmp", "ppm", "tif", "tiff")  # keras 2.15 DirectoryIterator.white_list_formats
NOTEBOOK = PRESETS["original"]  # role -> what `train.recipe: original` sets: the study's notebook


def shared(key: str):
    """A value the notebook's preset gives both roles (train: and data: keys have one value for both)."""
    values = {getattr(NOTEBOOK[r], key) for r in ROLES}
    assert len(values) == 1, f"original's {key} differs between roles: {values}"
    return values.pop()


# The ablation: from the fair recipe toward the original, applied cumulatively in this order (one difference each).
STEPS: dict[str, dict] = {
    "init": {f"train_{r}.init": NOTEBOOK[r].init for r in ROLES},  # a role's own switch wins over train.init
    "adam_eps": {"train.adam_eps": shared("adam_eps")},
    "bn_constants": {"train.bn_momentum": shared("bn_momentum"), "train.bn_eps": shared("bn_eps")},
    "last_weights": {f"train_{r}.restore_best": NOTEBOOK[r].restore_best for r in ROLES},
    "baseline_early_stopping": {f"train_baseline.{k}": getattr(NOTEBOOK["baseline"], k)
                                for k in ("epochs", "patience", "min_epochs")},
    "resnet_fixed_budget": {f"train_resnet.{k}": getattr(NOTEBOOK["resnet"], k)
                            for k in ("epochs", "patience", "min_epochs")},
    "baseline_unaugmented": {"train_baseline.augment": NOTEBOOK["baseline"].augment},
    "bn_frozen": {f"train_{r}.bn_frozen": NOTEBOOK[r].bn_frozen for r in ROLES},
    "nearest": {"data.interpolation": shared("interpolation")},
    "fp32": {"train.precision": shared("precision")},
}


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


# ----------------------------------------------------------------------------- the files both implementations read


def clean_tree(data: Path, out: Path, workers: int) -> dict:
    """Link every image reslab's filter accepts and Keras lists into out/<class>/<name>; return what was dropped."""
    manifest, report = filter_dataset(data, min_images_per_class=1, min_image_size=1, workers=workers,
                                      link_roots=(os.fspath(ROOT / ".dvc" / "cache"),))  # data/ may link into it
    listed = manifest[manifest["path"].str.lower().str.endswith(tuple(f".{e}" for e in KERAS_FORMATS))]
    links = {}
    for path, label in zip(listed["path"], listed["label"]):
        rel = Path(os.path.relpath(path, Path(data) / label))  # lexical: a link's own path names the sample
        # flat: nested folders would sort differently in the two codes
        links[f"{label}/{'__'.join(rel.parts)}"] = os.fspath(Path(path).resolve())
    if tree_links(out) != links:  # kept when unchanged: a second harness process may be reading it
        if out.exists():
            shutil.rmtree(out)
        for name, target in links.items():
            (out / name).parent.mkdir(parents=True, exist_ok=True)
            (out / name).symlink_to(target)
    return {"n_images": len(listed), "filter_skipped": report["skipped_by_reason"],
            "not_listed_by_keras": len(manifest) - len(listed),
            "decoded_with_conversions": {k: v for k, v in report["conversions"].items() if v}}


def tree_links(out: Path) -> dict[str, str]:
    """{"class/name": target} of the links in a clean tree ({} when there is none)."""
    if not out.is_dir():
        return {}
    return {f"{c.name}/{f.name}": os.readlink(f) for c in out.iterdir() if c.is_dir() for f in c.iterdir()}


def reference_split(clean: Path, min_images: int, test_per_class: int, validation_split: float) -> dict:
    """{classes, train, val, test: [(class, file name)]}: the reference's split of `clean` (module docstring)."""
    out: dict = {"classes": [], "train": [], "val": [], "test": []}
    for label in sorted(os.listdir(clean)):
        files = sorted(os.listdir(clean / label))
        if len(files) <= min_images:
            continue
        out["classes"].append(label)
        cut = len(files) - test_per_class if test_per_class > 0 else len(files)
        rest, test = files[:cut], files[cut:]
        n_val = int(validation_split * len(rest))
        out["val"] += [(label, f) for f in rest[:n_val]]
        out["train"] += [(label, f) for f in rest[n_val:]]
        out["test"] += [(label, f) for f in test]
    if not out["classes"]:
        raise SystemExit(f"{clean}: no class has more than --min-images {min_images} images")
    return out


def check_reference_split(split: dict, split_dir: Path, result: dict) -> None:
    """Fail unless the reference's --work-dir split and its counts are ours."""
    for name, part in (("train", ("train", "val")), ("test", ("test",))):
        theirs = sorted((c, f) for c in os.listdir(split_dir / name) for f in os.listdir(split_dir / name / c))
        ours = sorted(x for p in part for x in split[p])
        if theirs != ours:
            raise SystemExit(f"the reference's {name} folder differs from the harness's split: "
                             f"{sorted(set(theirs) ^ set(ours))[:5]}")
    counts = {k: result["data"][f"n_{k}"] for k in ("train", "val", "test")}
    if counts != {k: len(split[k]) for k in ("train", "val", "test")}:
        raise SystemExit(f"the reference's generators hold {counts}; the harness's split "
                         f"{ {k: len(split[k]) for k in counts} } (Keras' validation_split rule changed?)")


# ----------------------------------------------------------------------------- runs


def run_reference(args, clean: Path, split: dict, work: Path, seed: int) -> dict:
    """seed_notebook.py for one seed (both models); its JSON, cached under `work`."""
    settings = {"min_images": args.min_images, "test_per_class": args.test_per_class,
                "image_size": args.image_size, "epochs_cnn": args.epochs_cnn or 50,
                "epochs_resnet": args.epochs_resnet or 40, "split": digest(split),
                "script": digest((Path(args.reference) / "seed_notebook.py").read_text())}
    run_dir = work / "runs" / "reference" / digest(settings) / f"seed_{seed}"
    done = run_dir / "result.json"
    if done.is_file():
        print(f"reference seed {seed}: reusing {done}")
        return json.loads(done.read_text())
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True)
    cmd = [str(args.reference_python), str(Path(args.reference) / "seed_notebook.py"), "--train-dir", str(clean),
           "--min-images", str(args.min_images), "--test-per-class", str(args.test_per_class),
           "--image-size", str(args.image_size), "--epochs-cnn", str(settings["epochs_cnn"]),
           "--epochs-resnet", str(settings["epochs_resnet"]), "--seed", str(seed), "--fit-verbose", "0",
           "--work-dir", str(run_dir / "split"), "--json-out", str(run_dir / "partial.json")]
    print(f"reference seed {seed}: {' '.join(cmd)}", flush=True)
    t0 = time.perf_counter()
    with open(run_dir / "log.txt", "w") as log:
        threads = {"TF_NUM_INTRAOP_THREADS": str(args.threads), "TF_NUM_INTEROP_THREADS": str(args.threads)} \
            if args.threads else {}
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **threads})
        for line in proc.stdout:
            log.write(line)
            if line.startswith("[reference extra]") and " epoch " in line:
                print("  " + line.split("] ", 1)[1].split(";")[0], flush=True)
        rc = proc.wait()
    if rc != 0:
        tail = (run_dir / "log.txt").read_text()[-3000:]
        raise SystemExit(f"the reference exited {rc} (log: {run_dir / 'log.txt'}):\n{tail}")
    result = json.loads((run_dir / "partial.json").read_text())
    check_reference_split(split, run_dir / "split", result)
    shutil.rmtree(run_dir / "split")  # a copy of the data set; its file lists were just checked
    result["harness_wall_s"] = round(time.perf_counter() - t0, 1)
    result["threads"] = args.threads or os.cpu_count()
    done.write_text(json.dumps(result) + "\n")
    for role in ROLES:
        r = result[REFERENCE_ROLE[role]]
        print(f"reference seed {seed} {role}: held-out accuracy {r['test_accuracy_heldout']:.4f}, "
              f"{r['epochs_run']} epochs, {r['train_wall_s']:.0f} s", flush=True)
    return result


def reference_run(result: dict, role: str) -> dict:
    """One role of the reference's JSON in the harness's per-run form (epochs counted from 1)."""
    r = result[REFERENCE_ROLE[role]]
    history = [{"epoch": row["epoch"] + 1, "train_accuracy": row.get("accuracy"), "train_loss": row.get("loss"),
                "val_accuracy": row.get("val_accuracy"), "val_loss": row.get("val_loss")} for row in r["epochs"]]
    return {"seed": result["args"]["seed"], "test_accuracy": r["test_accuracy_heldout"],
            "epochs_trained": r["epochs_run"], "train_time_s": r["train_wall_s"], "history": history}


def prepare_arrays(split: dict, clean: Path, image_size: int, interpolation: str, work: Path) -> dict:
    """{train, val, test: ImageArrays} of the split, resized with `interpolation` (cached under `work`)."""
    out_dir = work / "prepared" / f"{digest(split)}_{image_size}_{interpolation}"
    if not (out_dir / "classes.json").is_file():
        t0 = time.perf_counter()
        for name in ("train", "val", "test"):
            rows = pd.DataFrame([{"path": str(clean / c / f), "label": c} for c, f in split[name]])
            prepare_split(rows, split["classes"], image_size, out_dir, name, workers=default_threads(),
                          interpolation=interpolation)
        (out_dir / "classes.json").write_text(json.dumps(split["classes"]) + "\n")
        print(f"prepared {sum(len(split[n]) for n in ('train', 'val', 'test'))} images at {image_size} px "
              f"({interpolation}) in {time.perf_counter() - t0:.1f} s", flush=True)
    return {name: load_prepared(out_dir, name) for name in ("train", "val", "test")}


def work_lock(work: Path):
    """Serialise, between harness processes sharing --work, what they build in place: the clean tree, the prepared
    arrays and the report (two processes started at once would otherwise both link the same tree)."""
    return file_lock(work / "setup.lock")


def claim(path: Path) -> bool:
    """Take `path` (a run's claim file, holding this process's pid) unless a live process on this machine holds it."""
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                os.kill(int(path.read_text() or 0), 0)
                return False  # held by a live process
            except (ProcessLookupError, ValueError, FileNotFoundError):
                path.unlink(missing_ok=True)  # left by a process that died: take it over
                continue
        with os.fdopen(fd, "w") as f:
            f.write(str(os.getpid()))
        return True
    return False


def run_reslab(params: Params, role: str, seed: int, arrays: dict[str, ImageArrays], work: Path,
               data_key: str) -> dict | None:
    """One reslab training run, as the training stage would resolve `params`; cached by its effective recipe.

    None while another harness process (same --work) trains it: processes started side by side share the runs."""
    recipe = resolve(params, role, seed)
    precision = resolve_precision(recipe.runtime.precision, torch.device("cpu"))
    # the runtime is keyed by the precision it resolves to (threads and device do not change what is trained)
    effective = {k: v for k, v in dataclasses.asdict(recipe).items() if k not in ("seed", "recipe", "runtime")}
    probe = create_model(recipe.model, num_classes=2, image_size=recipe.image_size, **recipe.model_args)
    if not any(isinstance(m, BATCH_NORMS) for m in probe.modules()):  # the BatchNorm switches change nothing
        effective = {k: v for k, v in effective.items() if k not in ("bn_momentum", "bn_eps", "bn_frozen")}
    key = digest({"recipe": effective, "precision": precision.name, "data": data_key})
    done = work / "runs" / "reslab" / role / key / f"seed_{seed}.json"
    if done.is_file():
        return {**json.loads(done.read_text()), "reused": True}
    done.parent.mkdir(parents=True, exist_ok=True)
    held = done.with_suffix(".claim")
    if not claim(held):
        return None
    try:
        return {**train_run(recipe, precision, effective, key, arrays, done), "reused": False}
    finally:
        held.unlink(missing_ok=True)


def train_run(recipe, precision, effective: dict, key: str, arrays: dict[str, ImageArrays], done: Path) -> dict:
    seed = recipe.seed
    data = arrays[recipe.interpolation]
    t0 = time.perf_counter()
    model, result = train_classifier(recipe, data["train"], data["val"], precision=precision, progress=False)
    train_time = time.perf_counter() - t0
    test = evaluate(model, ArrayLoader(data["test"], 256, shuffle=False), precision)
    run = {"seed": seed, "test_accuracy": test["accuracy"], "test_loss": test["loss"],
           "epochs_trained": len(result.history), "best_epoch": result.best_epoch,
           "stopped_early": result.stopped_early, "train_time_s": round(train_time, 2),
           "threads": torch.get_num_threads(),
           "precision": precision.name, "recipe": effective, "key": key,
           "history": [{k: r[k] for k in ("epoch", "train_accuracy", "train_loss", "val_accuracy", "val_loss")}
                       for r in result.history]}
    tmp = done.with_suffix(f".tmp{os.getpid()}")
    tmp.write_text(json.dumps(run) + "\n")
    tmp.replace(done)  # whole or absent, for a process reading it
    return run


# ----------------------------------------------------------------------------- variants


def variants(base: Params, steps: list[str], caps: dict[str, int | None]) -> list[tuple[str, dict, Params]]:
    """[(name, overrides, params)]: fair, each ablation step (cumulative), original; --epochs-* caps on all."""
    def capped(overrides: dict) -> tuple[dict, Params]:
        params = with_overrides(base, overrides)
        extra = {}
        for role, cap in caps.items():
            if cap is not None:
                extra[f"train_{role}.epochs"] = cap
                extra[f"train_{role}.min_epochs"] = min(resolve(params, role).min_epochs, cap)
        return {**overrides, **extra}, with_overrides(base, {**overrides, **extra})

    out, cumulative = [("fair", *capped({}))], {}
    for step in steps:
        cumulative = {**cumulative, **STEPS[step]}
        out.append((step, *capped(cumulative)))
    out.append(("original", *capped(ORIGINAL)))
    return out


# The preset, whatever --params and --set switched: every key a step sets, and train.init, back to "the recipe's"
# (train.precision's unset value is auto; the preset replaces train_<role>.augment itself).
ORIGINAL = {"train.recipe": "original", "train.init": None,
            **{key: "auto" if key == "train.precision" else None
               for step in STEPS.values() for key in step if not key.endswith(".augment")}}


def check_steps_reach_original(named: list[tuple[str, dict, Params]]) -> None:
    """With every step, the last one must train exactly as the `original` preset (else a difference is missing)."""
    last, original = named[-2][2], named[-1][2]
    for role in ROLES:
        a, b = resolve(last, role, 0), resolve(original, role, 0)
        if dataclasses.replace(a, recipe=b.recipe) != b:  # the runtime (precision) included
            raise SystemExit(f"{role}: the ablation's last step is not the original recipe:\n{a}\n{b}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data",
                    help="an ImageFolder (default: the built-in data set, generated when missing)")
    ap.add_argument("--image-size", type=int, default=64)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    ap.add_argument("--ablation-seeds", type=int, nargs="+", default=None,
                    help="the ablation steps' seeds, a subset of --seeds (default: all of them); the parity table "
                         "keeps every seed")
    ap.add_argument("--steps", nargs="*", default=list(STEPS), choices=list(STEPS),
                    help="ablation steps, applied cumulatively in the canonical order (default: all)")
    ap.add_argument("--skip-reference", action="store_true")
    ap.add_argument("--skip-reslab", action="store_true",
                    help="run only the reference's seeds (the report needs a later run without this flag)")
    ap.add_argument("--threads", type=int, default=None,
                    help="threads per run, reslab's (torch) and the reference's (TensorFlow); default: every core. "
                         "Two harness processes with --threads 1 on 2 cores (one --skip-reslab, one "
                         "--skip-reference, the same --work) finish sooner than one; a later run without the flags "
                         "reuses their runs and writes the report")
    ap.add_argument("--epochs-cnn", type=int, default=None, help="the plain CNN's epoch cap in every run "
                    "(default: each recipe's own; the reference's 50)")
    ap.add_argument("--epochs-resnet", type=int, default=None, help="likewise for the ResNet (reference: 40)")
    ap.add_argument("--min-images", type=int, default=100, help="keep classes with more files (the notebook: 100)")
    ap.add_argument("--test-per-class", type=int, default=50, help="the test folder per class (the notebook: 50)")
    ap.add_argument("--params", type=Path, default=ROOT / "params.yaml", help="reslab's recipe (fair: as written)")
    ap.add_argument("--set", nargs="+", default=[], metavar="KEY=VALUE",
                    help="overrides of --params, as `dvc exp run -S` takes them (e.g. train.init=torch)")
    ap.add_argument("--reference", type=Path, default=ROOT.parent / "shared" / "reference")
    ap.add_argument("--reference-python", type=Path, default=ROOT / ".venv-seedref" / "bin" / "python")
    ap.add_argument("--work", type=Path, default=ROOT / ".reslab" / "parity", help="clean tree, arrays, raw runs")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    ap.add_argument("--date", default=datetime.date.today().isoformat())
    args = ap.parse_args()
    steps = [s for s in STEPS if s in args.steps]
    ablation_seeds = args.ablation_seeds or args.seeds
    if not set(ablation_seeds) <= set(args.seeds):
        raise SystemExit(f"--ablation-seeds {ablation_seeds}: must be among --seeds {args.seeds}")
    t_start = time.perf_counter()

    if not args.data.exists():
        if args.data != ROOT / "data":
            raise SystemExit(f"--data {args.data}: not found")
        from reslab.data.synth.writer import main as synth
        synth(args.data)
    if not args.skip_reference and not args.reference_python.exists():
        raise SystemExit(f"{args.reference_python}: missing; run `make parity-env` (or pass --skip-reference)")
    work = args.work.resolve()
    clean = work / "clean" / digest(str(args.data.resolve()))
    with work_lock(work):
        data_info = clean_tree(args.data, clean, default_threads())
    split = reference_split(clean, args.min_images, args.test_per_class, validation_split=0.2)
    print(f"{args.data}: {data_info['n_images']} images both implementations can read (filter skipped "
          f"{data_info['filter_skipped']}, not listed by Keras {data_info['not_listed_by_keras']}); split: "
          f"{len(split['classes'])} classes, {len(split['train'])} train / {len(split['val'])} val / "
          f"{len(split['test'])} test", flush=True)

    if args.threads is not None and args.threads < 1:
        raise SystemExit(f"--threads {args.threads}: must be at least 1")
    try:
        base = load_params(args.params, [*args.set, f"data.image_size={args.image_size}"]
                           + ([f"train.num_threads={args.threads}"] if args.threads else []))
    except ConfigError as e:
        raise SystemExit(f"--params / --set: {e}") from None
    setup_runtime(resolve_runtime(base), who="parity")
    named = variants(base, steps, {"baseline": args.epochs_cnn, "resnet": args.epochs_resnet})
    if steps == list(STEPS):
        check_steps_reach_original(named)

    reference, versions, reference_results = {role: [] for role in ROLES}, {}, []
    if not args.skip_reference:
        for seed in args.seeds:
            result = run_reference(args, clean, split, work, seed)
            reference_results.append(result)
            versions = {"tensorflow": result["tensorflow"], "keras": result["keras"]}
            for role in ROLES:
                reference[role].append(reference_run(result, role))

    if args.skip_reslab:
        print(f"reference runs done ({time.perf_counter() - t_start:.0f} s), under {work / 'runs' / 'reference'}; "
              "the report needs a run without --skip-reslab")
        return
    with work_lock(work):
        arrays = {interp: prepare_arrays(split, clean, args.image_size, interp, work)
                  for interp in sorted({resolve_interpolation(p) for _, _, p in named})}
    def seeds_of(name: str) -> list[int]:
        return args.seeds if name in ("fair", "original") else ablation_seeds

    todo = [(name, params, role, seed) for name, _, params in named for role in ROLES for seed in seeds_of(name)]
    todo.sort(key=lambda t: t[0] not in ("fair", "original"))  # the parity table's runs first (a stable sort)
    runs: dict[tuple[str, str, int], dict] = {}
    while todo:
        waiting = []
        for name, params, role, seed in todo:
            run = run_reslab(params, role, seed, arrays, work, digest([split, args.image_size]))
            if run is None:
                waiting.append((name, params, role, seed))
                continue
            runs[name, role, seed] = run
            print(f"reslab {name:24s} {role:8s} seed {seed}: held-out accuracy {run['test_accuracy']:.4f}, "
                  f"{run['epochs_trained']} epochs, {run['train_time_s']:.0f} s"
                  + (" (reused: this effective recipe ran before, --work)" if run["reused"] else ""), flush=True)
        if waiting:
            print(f"waiting for {len(waiting)} runs another harness process is training", flush=True)
            time.sleep(15)
        todo = waiting
    reslab: dict[str, dict[str, list[dict]]] = {
        name: {role: [runs[name, role, s] for s in seeds_of(name)] for role in ROLES} for name, _, _ in named}

    meta = {"date": args.date, "command": " ".join(sys.argv), "data": str(args.data), "data_info": data_info,
            "image_size": args.image_size, "seeds": args.seeds, "ablation_seeds": ablation_seeds, "steps": steps,
            "classes": {c: {p: sum(x[0] == c for x in split[p]) for p in ("train", "val", "test")}
                        for c in split["classes"]},
            "variants": {name: overrides for name, overrides, _ in named},
            "cpus": os.cpu_count(), "torch": torch.__version__,
            "threads": {  # per run: a cached run keeps the count it trained with
                "reference": sorted({r.get("threads", 0) for r in reference_results}),
                "reslab": sorted({r.get("threads", 0) for v in reslab.values() for rs in v.values() for r in rs})},
            **versions, "wall_s": round(time.perf_counter() - t_start, 1)}
    with work_lock(work):
        paths = parity_report.write(args.out, meta, reference, reslab)
    print(parity_report.console_summary(meta, reference, reslab))
    print("wrote " + ", ".join(str(p) for p in paths))


if __name__ == "__main__":
    main()

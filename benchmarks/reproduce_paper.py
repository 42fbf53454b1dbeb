"""Reproduce the paper's Table 1 and Table 2, and the image-free control, on our data.

    .venv/bin/python benchmarks/reproduce_paper.py --budget cpu --estimate-only
    .venv/bin/python benchmarks/reproduce_paper.py --budget cpu      # hours on 2 CPU cores
    .venv/bin/python benchmarks/reproduce_paper.py --budget smoke    # tiny RANDOM models, ~1 min

For each dataset and seed it trains, from one prepared data set and one set of images:
the CE baseline, the multimodal teacher(s), the LUGPI student, the students without the
alpha or the beta term (Table 2), an image-only model (Table 1), and a text-only teacher
with its distilled student (self-distillation, the image-free control); then scores them
all on dev and test and writes ``<out-dir>/paper_tables.md`` and ``paper_tables.json``.

Run layout (resumable: a rerun skips every finished stage, see training/pipeline.py)::

    <runs-dir>/image-cache/                     one generator cache for every run
    <runs-dir>/<dataset>/seed<k>/lugpi/         the main run: data images teacher-* student baseline
                                 alpha0/ beta0/ its student; data, images, teachers: symlinks
                                 image-only/    its teacher(s); data, images: symlinks
                                 self-distill/  text-only teacher + student; data: a symlink
                                 evaluate/      every model above on dev and test
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time
from collections import defaultdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from benchmarks.paper_estimate import estimate_seconds, format_seconds, padded_tokens  # noqa: E402
from benchmarks.paper_report import collect_run, summarize, write  # noqa: E402
from benchmarks.paper_setup import (  # noqa: E402
    DATASETS,
    LR_GRID,
    VARIANTS,
    Budget,
    DatasetSpec,
    TinyModels,
    build_config,
    image_only_name,
    make_tiny_models,
    variant_config,
)
from contracts.artifacts import is_complete, read_stage  # noqa: E402
from contracts.config import PipelineConfig  # noqa: E402
from contracts.errors import ArtifactError, LugpiError  # noqa: E402
from contracts.layout import RunLayout  # noqa: E402
from training.data.prepare import PreparedData  # noqa: E402
from training.pipeline import Run  # noqa: E402
from training.students.budget import choose_learning_rate, planned_epochs  # noqa: E402
from training.tracking.progress import RunContext  # noqa: E402

SHARED = Path(os.environ.get("LUGPI_SHARED_DATASETS", REPO.parent / "shared" / "datasets"))
NOISE_NOTE = (
    "the generator is a tiny Stable-Diffusion-shaped pipeline with RANDOM weights (no "
    "text-to-image weights can be downloaded here), so every generated image is noise that "
    "says nothing about its text. The image-only row shows what such images alone are worth "
    "(chance level, or the majority class); any gain of the student over the baseline comes "
    "from distillation itself, not from the images: compare it with the self-distillation "
    "control. Real images need `--preset paper` (Stable Diffusion v2) on a GPU."
)
Job = tuple[DatasetSpec, int, PipelineConfig, Path]  # dataset, seed, main config, run root


def log(message: str) -> None:
    print(f"{datetime.now():%H:%M:%S} {message}", flush=True)


def link_stage(source: Path, target: Path) -> None:
    """Share a finished stage dir of one run with another (a relative symlink)."""
    if not is_complete(source):
        raise ArtifactError(f"{source}: not finished, cannot be shared with {target.parent}")
    if target.is_symlink() or is_complete(target):
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(os.path.relpath(source, target.parent), target_is_directory=True)


def open_run(cfg: PipelineConfig, run_dir: Path, ctx: RunContext) -> Run:
    run = Run(cfg, run_dir, ctx)
    run.pin_config()  # a rerun with a config that changes results is refused
    return run


def _first_student(run: Run) -> Path:
    """The student of the run's first teacher (the benchmark trains one per teacher)."""
    return run.layout.student(next(iter(run.cfg.student_plan())))


def tiny_models(args: argparse.Namespace) -> TinyModels | None:
    """The smoke budget's RANDOM-weight models (built once under the runs dir)."""
    return make_tiny_models(args.runs_dir / "tiny-models") if args.budget == "smoke" else None


def grid_dir(runs_dir: Path, key: str, lr: float) -> Path:
    return runs_dir / key / "lr-grid" / f"lr{lr:g}"


def choose_learning_rates(args: argparse.Namespace, ctx: RunContext) -> dict[str, Any]:
    """Per dataset: train seed 0's baseline at every rate of --lr-grid, keep the best on dev
    (training/students/budget.py's choice, as ``learning_rate: auto`` makes it). Returns
    key -> {"grid": {lr: dev accuracy}, "chosen": lr}.

    The winner's run has exactly seed 0's main config, so that run reuses its data and
    baseline (see run_models) instead of training them again."""
    chosen: dict[str, Any] = {}
    if len(args.lr_grid) < 2:
        return chosen
    tiny = tiny_models(args)
    for key in args.datasets:
        spec, dev = DATASETS[key], {}
        for lr in sorted(args.lr_grid):
            cache = args.runs_dir / "image-cache"
            cfg = build_config(
                args.preset, spec, args.budget, 0, args.datasets_dir.resolve(), cache, tiny, lr
            )
            run = open_run(cfg, grid_dir(args.runs_dir, key, lr), ctx)
            log(f"{key}: learning-rate grid, baseline at {lr:g}")
            run.make("prepare")
            run.make("baseline")
            dev[lr] = read_stage(run.layout.baseline).summary["dev"]
        grid = {f"{rate:g}": metrics["accuracy"] for rate, metrics in dev.items()}
        lr = choose_learning_rate(dev)
        log(f"{key}: learning rate {lr:g} (dev accuracy per rate: {grid})")
        chosen[key] = {"grid": grid, "chosen": lr}
    return chosen


def reuse_grid_run(main: Run, source: Path) -> None:
    """Seed 0's main run shares the data and baseline of the grid run with its config."""
    grid = RunLayout(source)
    if is_complete(grid.baseline) and not is_complete(main.layout.data):
        link_stage(grid.data, main.layout.data)
        link_stage(grid.baseline, main.layout.baseline)


def majority_rate(run: Run) -> dict[str, float]:
    """Per split, the share of its most frequent label: what a collapsed model scores."""
    rates = {}
    for split in ("dev", "test"):
        ids = run.data.label_ids(split)
        if ids:
            rates[split] = max(ids.count(i) for i in set(ids)) / len(ids)
    return rates


def run_models(
    cfg: PipelineConfig,
    root: Path,
    ctx: RunContext,
    variants: tuple[str, ...] = VARIANTS,
) -> None:
    """Every model of one dataset and seed (the main run and ``variants``), then one
    evaluation of all of them."""
    main = open_run(cfg, root / "lugpi", ctx)
    log(f"{cfg.name}: data, images, teacher(s), LUGPI student, baseline")
    main.make("prepare")
    main.make("generate")
    main.make("teacher")
    main.make("distill")
    main.make("baseline")
    runs = {v: open_run(variant_config(cfg, v), root / v, ctx) for v in variants}
    for variant, run in runs.items():
        log(f"{cfg.name}: {variant}")
        link_stage(main.layout.data, run.layout.data)
        if variant != "self-distill":  # the control never sees an image
            link_stage(main.layout.images, run.layout.images)
        if variant in ("alpha0", "beta0"):  # same teachers, another loss
            for t in cfg.teachers:
                link_stage(main.layout.teacher(t.name), run.layout.teacher(t.name))
        else:
            run.make("teacher")
        if variant != "image-only":
            run.make("distill")
    out = RunLayout(root).evaluate
    if not is_complete(out):
        from training.evaluation.evaluate import evaluate

        log(f"{cfg.name}: evaluate every model on dev and test")
        teachers = [main.layout.teacher(t.name) for t in cfg.teachers]
        for variant in ("image-only", "self-distill"):
            if variant in runs:
                other = runs[variant]
                teachers += [other.layout.teacher(t.name) for t in other.cfg.teachers]
        names = {"alpha0": "alpha=0", "beta0": "beta=0", "self-distill": "self-distill"}
        ablations = {names[v]: _first_student(run) for v, run in runs.items() if v in names}
        student, baseline = _first_student(main), main.layout.baseline
        evaluate(
            cfg,
            main.data,
            main.images,
            teachers,
            student,
            baseline,
            out,
            ctx,
            ablation_dirs=ablations,
            token_store=main.token_store,
        )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--datasets", nargs="+", choices=list(DATASETS), default=list(DATASETS))
    p.add_argument("--seeds", type=int, default=3, help="seeds 0..N-1 on CWI News (default 3)")
    p.add_argument("--other-seeds", type=int, default=1, help="seeds on the other datasets")
    p.add_argument(
        "--seed-list",
        type=int,
        nargs="+",
        help="run exactly these CWI News seeds (e.g. 2 in one process, 1 in another); the "
        "report call then names them all with --seeds",
    )
    p.add_argument(
        "--other-seed-list",
        type=int,
        nargs="+",
        help="run exactly these seeds on the other datasets (e.g. 1 2 after an earlier call "
        "ran seed 0; pass that call's chosen rate as --lr-grid), then merge both calls' "
        "paper_tables.json with benchmarks/paper_report.py",
    )
    p.add_argument(
        "--budget",
        choices=["smoke", "quick", "cpu", "full"],
        default="cpu",
        help="smoke: tiny RANDOM models, 40 examples; quick: 800 train and at most "
        "500 dev/test examples, 3 epochs (about 2 h on 2 CPU cores); cpu: larger subsets "
        "(about 8 h); "
        "full: every example",
    )
    p.add_argument(
        "--variants",
        nargs="+",
        choices=list(VARIANTS),
        default=list(VARIANTS),
        help="the controls to train besides baseline, teacher and student (default: all). "
        "A run scored without some keeps that evaluation: delete <run>/evaluate to rescore",
    )
    p.add_argument(
        "--lr-grid",
        type=float,
        nargs="+",
        default=list(LR_GRID),
        help="learning rates tried for seed 0's baseline on dev, per dataset; the best is "
        "used for every model of that dataset. One value: no search, that rate everywhere",
    )
    p.add_argument("--preset", default="offline", help="config preset (e.g. paper on a GPU)")
    p.add_argument("--datasets-dir", type=Path, default=SHARED)
    p.add_argument("--runs-dir", type=Path, help="default: runs/paper-<budget>")
    p.add_argument(
        "--out-dir",
        type=Path,
        help="default: benchmarks/results (smoke: <runs-dir>/results, so that "
        "its meaningless numbers never replace real ones)",
    )
    p.add_argument("--estimate-only", action="store_true", help="print the estimate, stop")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars")
    args = p.parse_args(argv)
    if min(args.seeds, args.other_seeds) < 1:
        p.error("--seeds and --other-seeds must be at least 1")
    args.runs_dir = (args.runs_dir or REPO / "runs" / f"paper-{args.budget}").resolve()
    if args.out_dir is None:
        smoke = args.budget == "smoke"
        args.out_dir = args.runs_dir / "results" if smoke else REPO / "benchmarks" / "results"
    return args


def plan_jobs(args: argparse.Namespace, rates: dict[str, Any]) -> list[Job]:
    budget: Budget = args.budget
    tiny = tiny_models(args)
    jobs = []
    for key in args.datasets:
        spec = DATASETS[key]
        seeds = args.seed_list or range(args.seeds)
        fixed = args.lr_grid[0] if len(args.lr_grid) == 1 else None
        lr = rates[key]["chosen"] if key in rates else fixed
        others = args.other_seed_list or range(args.other_seeds)
        for seed in seeds if key == "cwi-news" else others:
            cfg = build_config(
                args.preset,
                spec,
                budget,
                seed,
                args.datasets_dir.resolve(),
                args.runs_dir / "image-cache",
                tiny,
                learning_rate=lr,
            )
            jobs.append((spec, seed, cfg, args.runs_dir / key / f"seed{seed}"))
    return jobs


def prepare_and_estimate(jobs: list[Job], ctx: RunContext, smoke: bool) -> dict[str, float]:
    """Prepare every data set (seconds), then estimate each run from its real sizes."""
    from models.text import load_tokenizer

    estimates: dict[str, float] = defaultdict(float)
    for spec, _, cfg, root in jobs:
        run = open_run(cfg, root / "lugpi", ctx)
        run.make("prepare")
        if smoke:  # the speeds are the offline preset's; tiny models take seconds
            continue
        tokenizer = load_tokenizer(cfg.student.text_model)
        s = cfg.student
        tokens = padded_tokens(tokenizer, run.data, s.max_length, s.batch_size, cfg.seed)
        parts = estimate_seconds(cfg, run.data, tokens)
        estimates[spec.key] += sum(parts.values())
        sizes = "/".join(str(len(run.data.splits.get(k, []))) for k in ("train", "dev", "test"))
        detail = ", ".join(f"{k} {format_seconds(v)}" for k, v in parts.items())
        log(
            f"estimate {cfg.name}: {format_seconds(sum(parts.values()))} "
            f"(train/dev/test {sizes}, {tokens:.0f} padded tokens per text; {detail})"
        )
    if estimates:
        log(
            f"estimated total: {format_seconds(sum(estimates.values()))} on 2 free CPU cores "
            "(offline preset speeds; a shared machine is slower)"
        )
    return estimates


def epochs_of(cfg: PipelineConfig, data: PreparedData, batch: int, epochs: float | None) -> float:
    """The epochs a model of the run trained (its plan, on the run's train split)."""
    return planned_epochs(len(data.splits["train"]), batch, epochs, cfg.student.min_steps)[0]


def build_report(
    args: argparse.Namespace,
    argv: list[str],
    jobs: list[Job],
    estimates: dict[str, float],
    wall: dict[str, float],
    rates: dict[str, Any],
) -> dict[str, Any]:
    import torch

    datasets: dict[str, Any] = {}
    for spec, seed, cfg, root in jobs:
        image_only = {image_only_name(t.name): t.name for t in cfg.teachers}
        ds = datasets.setdefault(spec.key, {"title": spec.title, "runs": {}})
        ds["runs"][str(seed)] = collect_run(root, image_only)
        main_run = Run(cfg, root / "lugpi", RunContext())
        data = main_run.data
        ds["majority"] = majority_rate(main_run)  # seeded subsets: about equal per seed
        if spec.key in rates:
            ds["learning_rate"] = rates[spec.key]
        ds["paper"] = {
            "dataset": spec.paper_name,
            "baseline": spec.paper_baseline,
            "student": spec.paper_student,
            "note": spec.note,
        }
        teacher = cfg.teachers[0]
        ds["budget"] = {
            **{k: len(data.splits.get(k, [])) for k in ("train", "dev", "test")},
            "teacher_epochs": epochs_of(cfg, data, teacher.batch_size, teacher.epochs),
            "student_epochs": epochs_of(cfg, data, cfg.student.batch_size, cfg.student.epochs),
            "max_length": cfg.student.max_length,
            "batch_size": cfg.student.batch_size,
            "learning_rate": cfg.student.learning_rate,
            "warmup_ratio": cfg.student.warmup_ratio,
            "text_model": cfg.student.text_model,
            "image_models": [t.image_model for t in cfg.teachers],
            "distill": cfg.distill.model_dump(include={"alpha", "beta", "tau"}),
        }
        ds["wall_seconds"] = wall.get(spec.key, 0.0)
    for key, ds in datasets.items():
        total = estimates.get(key)  # none for smoke
        ds["estimate_seconds"] = total / len(ds["runs"]) if total is not None else None
        ds["summary"] = summarize(ds["runs"])
    cfg = jobs[0][2]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return {
        "created_at": f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC",
        "command": shlex.join(["python", "benchmarks/reproduce_paper.py", *argv]),
        "budget": args.budget,
        "preset": args.preset,
        "machine": f"{device}, {os.cpu_count()} CPU cores, {torch.get_num_threads()} torch threads",
        "generator": cfg.generator.model,
        "images_note": NOISE_NOTE
        if cfg.generator.model == "tiny-random"
        else f"images drawn by {cfg.generator.model}.",
        "datasets": datasets,
    }


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    from transformers.utils import logging as transformers_logging

    from training.cli import ProgressBars

    # "Some weights ... newly initialized": every new classifier head says so; expected.
    transformers_logging.set_verbosity_error()

    bars = ProgressBars(enabled=not args.quiet)
    ctx = RunContext(report=bars)
    try:
        # --estimate-only trains nothing: it estimates at the preset's learning rate.
        rates = {} if args.estimate_only else choose_learning_rates(args, ctx)
        jobs = plan_jobs(args, rates)
        for spec, seed, cfg, root in jobs:  # before anything prepares seed 0's data again
            if (grid := _grid_source(args, rates, spec, seed)) is not None:
                reuse_grid_run(open_run(cfg, root / "lugpi", ctx), grid)
        estimates = prepare_and_estimate(jobs, ctx, smoke=args.budget == "smoke")
        if args.estimate_only:
            return 0
        wall: dict[str, float] = defaultdict(float)
        for i, (spec, _, cfg, root) in enumerate(jobs):
            started = time.perf_counter()
            run_models(cfg, root, ctx, tuple(args.variants))
            wall[spec.key] += time.perf_counter() - started
            # The tables so far after every run: a run stopped later still leaves them.
            write(build_report(args, argv, jobs[: i + 1], estimates, wall, rates), args.out_dir)
    except LugpiError as e:
        bars.close()
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        bars.close()
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    bars.close()
    log(f"wrote {args.out_dir / 'paper_tables.md'} and paper_tables.json")
    return 0


def _grid_source(
    args: argparse.Namespace, rates: dict[str, Any], spec: DatasetSpec, seed: int
) -> Path | None:
    if seed != 0 or spec.key not in rates:
        return None
    return grid_dir(args.runs_dir, spec.key, rates[spec.key]["chosen"])


if __name__ == "__main__":
    sys.exit(main())

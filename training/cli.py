"""``lugpi``: the command line. One command per stage, ``run`` for all of them.

Every command takes a CONFIG (a YAML file or a preset name: `lugpi presets`) and a run
directory. Stages write complete directories or nothing, so any command can be
rerun after a crash or Ctrl-C and continues where it stopped. Errors the user can
fix print one line and exit with status 2.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import takewhile
from pathlib import Path
from typing import Annotated, Any, get_type_hints

import typer
import yaml
from tqdm import tqdm

from contracts.config import PipelineConfig, load_config
from contracts.errors import ConfigError, LugpiError
from contracts.jobs import Stage
from contracts.layout import RunLayout
from training import distributed
from training.cli_models import models_app, predict
from training.generation.generate_images import generate_images
from training.pipeline import PipelineResult, Run, resolve_paths, run_pipeline
from training.tracking.progress import RunContext

app = typer.Typer(
    name="lugpi",
    help="LUGPI: train a text classifier that learned from generated images, then serve it "
    "without them. Stages: prepare -> generate -> teacher -> baseline -> distill -> "
    "evaluate -> export (tgt and tgt-distill with tgt.enabled); `strata`: the data-free "
    "multi-teacher mode. Start with:  lugpi run offline",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_show_locals=False,
)

ConfigArg = Annotated[
    str,
    typer.Argument(
        help="A YAML config file, or a preset name (`lugpi presets` lists them): 'offline' "
        "(runs here, no network), 'paper' (the paper's models; needs the model hub and a GPU), "
        "'smoke', 'demo'. A preset's data paths are read from LUGPI_DATA_DIR."
    ),
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override one config field, KEY=VALUE with a dotted key, e.g. "
        "--set data.max_train_samples=500 --set student.epochs=1. VALUE is read as YAML. "
        "Repeatable.",
    ),
]
RunDirOpt = Annotated[
    Path | None,
    typer.Option(help="Run directory for all stage outputs. Default: runs/<config name>."),
]
ForceOpt = Annotated[
    bool,
    typer.Option(
        "--force",
        help="Redo this stage even if its output is complete (later stages are not redone).",
    ),
]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
RepositoryOpt = Annotated[
    Path | None,
    typer.Option(
        envvar="LUGPI_MODEL_REPOSITORY",
        help="Model repository to publish the student into (the API serves from it). "
        "Without it nothing is published; the bundle stays in <run-dir>/export.",
    ),
]


class ProgressBars:
    """A ``RunContext`` report function drawing one tqdm bar (count, rate, ETA) per stage."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self.bar: tqdm | None = None
        self.key: tuple[Stage, int] | None = None

    def __call__(self, stage: Stage, done: int, total: int, message: str) -> None:
        if not self.enabled:
            return
        if self.bar is None or self.key != (stage, total) or done < self.bar.n:
            self.close()
            self.bar = tqdm(total=total, desc=stage.value, unit="it", mininterval=0.5, leave=True)
            self.key = (stage, total)
        if message:
            self.bar.set_postfix_str(message, refresh=False)
        self.bar.update(done - self.bar.n)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None


def _parse_overrides(items: list[str] | None) -> dict[str, object]:
    overrides: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set student.epochs=1")
        try:
            overrides[key.strip()] = yaml.safe_load(value)
        except yaml.YAMLError as e:
            raise ConfigError(f"--set {item!r}: VALUE is not valid YAML ({e})") from e
    return overrides


def _config(config: str, overrides: list[str] | None) -> PipelineConfig:
    return resolve_paths(load_config(config, _parse_overrides(overrides)), Path.cwd())


def _run_dir(cfg: PipelineConfig, run_dir: Path | None) -> Path:
    return run_dir if run_dir is not None else RunLayout.named(cfg.name).root


@contextmanager
def _session(quiet: bool) -> Iterator[RunContext]:
    """A RunContext with progress bars; user errors become one line and exit status 2."""
    # Under torchrun every rank runs the command; one set of bars is enough.
    bars = ProgressBars(enabled=not quiet and distributed.world().is_main)
    try:
        yield RunContext(report=bars)
    except LugpiError as e:
        bars.close()
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    except KeyboardInterrupt:
        bars.close()
        typer.echo("interrupted; run the same command again to resume", err=True)
        raise typer.Exit(130) from None
    finally:
        bars.close()


@dataclass(frozen=True)
class StageArgs:
    """The options every stage command takes (declared once, in ``_stage_options``)."""

    config: str
    set_: list[str] | None
    run_dir: Path | None
    force: bool
    quiet: bool

    @contextmanager
    def run(self) -> Iterator[Run]:
        with _session(self.quiet) as ctx:
            cfg = _config(self.config, self.set_)
            run = Run(cfg, _run_dir(cfg, self.run_dir), ctx)
            run.pin_config()
            yield run


def _stage_options(
    config: ConfigArg,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    force: ForceOpt = False,
    quiet: QuietOpt = False,
) -> None:
    """The template of the options of ``StageArgs``: typer reads them from here."""


def stage_command(fn: Callable[..., None]) -> Callable[..., None]:
    """Register ``fn(args: StageArgs, *, its own options)`` as a command that takes the
    options of ``_stage_options`` too (CONFIG first, --force and --quiet last)."""
    common = list(inspect.signature(_stage_options).parameters.values())
    own = [p for p in inspect.signature(fn).parameters.values() if p.name != "args"]
    names = [p.name for p in common]

    @functools.wraps(fn)
    def command(**kwargs: Any) -> None:
        fn(StageArgs(**{n: kwargs.pop(n) for n in names}), **kwargs)

    hints = get_type_hints(_stage_options, include_extras=True)
    hints |= get_type_hints(fn, include_extras=True)
    params = [*common[:3], *own, *common[3:]]
    command.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [p.replace(annotation=hints[p.name], kind=p.KEYWORD_ONLY) for p in params]
    )
    command.__annotations__ = {p.name: hints[p.name] for p in params}
    return app.command(name=fn.__name__.replace("_", "-"))(command)


def _keep_last() -> int:
    """Versions kept per model on publish: LUGPI_KEEP_LAST_VERSIONS, as for the workers."""
    from contracts.settings import SharedSettings

    return SharedSettings().keep_last_versions


@app.command()
def run(
    config: ConfigArg,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    repository: RepositoryOpt = None,
    job_id: Annotated[str | None, typer.Option(help="Job id recorded in the bundle.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Run the whole pipeline (resuming a run dir) and publish the student if --repository."""
    with _session(quiet) as ctx:
        cfg = _config(config, set_)
        result = run_pipeline(
            cfg,
            _run_dir(cfg, run_dir),
            ctx,
            repository=repository,
            job_id=job_id,
            keep_last=_keep_last(),
        )
    _print_result(result, repository, RunLayout(result.run_dir).evaluate / "results.md")
    if distributed.world().is_main and not result.published and result.gate is None:
        typer.echo("not published (pass --repository or set LUGPI_MODEL_REPOSITORY)")


def _print_result(result: PipelineResult, repository: Path | None, results: Path | None) -> None:
    """What `run` and `strata` print at the end, on rank 0 only (under torchrun)."""
    if not distributed.world().is_main:
        return
    typer.echo(f"\nrun dir: {result.run_dir}")
    if results is not None:
        typer.echo(f"results: {results}")
    typer.echo(f"bundle:  {result.bundle_dir}")
    for model, per_split in result.metrics.items():
        for split, m in per_split.items():
            acc, f1 = m["accuracy"], m["macro_f1"]
            typer.echo(f"  {model:<24} {split:<5} accuracy {acc:.4f}  macro-F1 {f1:.4f}")
    if result.published:
        typer.echo(f"published: {result.published[0]} {result.published[1]} in {repository}")
    if result.gate is not None and result.gate.get("action") != "publish":
        failed = [c["detail"] for c in result.gate["checks"] if c["status"] == "failed"]
        typer.echo(f"publish gate: {result.gate['action']}: {'; '.join(failed)}")


@app.command()
def strata(
    config: ConfigArg,
    set_: SetOpt = None,
    run_dir: RunDirOpt = None,
    repository: RepositoryOpt = None,
    job_id: Annotated[str | None, typer.Option(help="Job id recorded in the bundle.")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Data-free amalgamation (StrataNet, docs/stratanet.md): one student over the union of
    the strata.teachers' labels, from texts generated for each teacher and class and
    steered by its feedback, each teacher weighted per sample by its layer-wise confidence
    -> <run-dir>/strata, student-strata, export/strata; published with --repository.
    Sets strata.enabled; resumes a run dir like `run`."""
    with _session(quiet) as ctx:
        overrides = [*(set_ or []), "strata.enabled=true"]
        cfg = _config(config, overrides)
        result = run_pipeline(
            cfg,
            _run_dir(cfg, run_dir),
            ctx,
            repository=repository,
            job_id=job_id,
            keep_last=_keep_last(),
        )
    _print_result(result, repository, None)


@stage_command
def prepare(args: StageArgs) -> None:
    """Read the dataset files, hold out dev, subsample, clean prompts -> <run-dir>/data."""
    with args.run() as r:
        for d in r.make("prepare", force=args.force):
            typer.echo(str(d))


@stage_command
def generate(
    args: StageArgs,
    *,
    shard: Annotated[
        int | None,
        typer.Option(
            help="Draw only this shard (0-based, of generator.num_shards) into the image "
            "cache, e.g. one per machine; then run once without --shard to write the index."
        ),
    ] = None,
) -> None:
    """Draw one image per distinct prompt with the text-to-image model -> <run-dir>/images."""
    with args.run() as r:
        if shard is not None:  # one machine's share: fills the cache, writes no index
            distributed.on_main(
                lambda: generate_images(r.cfg, r.data, r.layout.images, r.ctx, shard=shard)
            )
            typer.echo(str(r.layout.images))
            return
        made = r.make("generate", force=args.force)
        typer.echo(str(made[0]) if made else "no teacher reads images; nothing to do")


@stage_command
def teacher(
    args: StageArgs,
    *,
    name: Annotated[
        list[str] | None,
        typer.Option(help="Train only the teacher(s) with this name (repeatable). Default: all."),
    ] = None,
) -> None:
    """Train the multimodal teacher(s) on texts + images -> <run-dir>/teacher-<name>."""
    with args.run() as r:
        for d in r.make("teacher", force=args.force, labels=name):
            typer.echo(str(d))


@stage_command
def distill(args: StageArgs) -> None:
    """Train the text-only student(s) from labels + teacher(s): one per teacher and/or one
    from all of them (distill.students) -> <run-dir>/student-<teacher name | amalgamated>."""
    with args.run() as r:
        for d in r.make("distill", force=args.force):
            typer.echo(str(d))


@stage_command
def tgt(
    args: StageArgs,
    *,
    shard: Annotated[
        int | None,
        typer.Option(
            help="Generate only this shard (0-based, of text_generator.num_shards) into the "
            "text cache, e.g. one per machine; then run once without --shard."
        ),
    ] = None,
) -> None:
    """Teacher Guided Training: generate neighbours of every training text, drop copies and
    near-copies of dev/test, draw their images -> <run-dir>/tgt (needs tgt.enabled)."""
    with args.run() as r:
        if not r.cfg.tgt.enabled:
            typer.echo("tgt.enabled is false; nothing to do")
        elif shard is not None:  # one machine's share of the texts, into the text cache
            # torch (the text generator): imported here so the CLI starts without it.
            from training.tgt.method import text_shard

            distributed.on_main(lambda: text_shard(r, shard))
            typer.echo(str(r.layout.tgt))
        else:
            for d in r.make("tgt", force=args.force):
                typer.echo(str(d))


@stage_command
def tgt_distill(args: StageArgs) -> None:
    """Train one TGT student per tgt.modes mode on the labelled and the generated texts
    -> <run-dir>/tgt-student-<mode>."""
    with args.run() as r:
        for d in r.make("tgt-distill", force=args.force):
            typer.echo(str(d))


@stage_command
def baseline(args: StageArgs) -> None:
    """Train the same text model with labels only, for comparison -> <run-dir>/baseline."""
    with args.run() as r:
        made = r.make("baseline", force=args.force)
        typer.echo(str(made[0]) if made else "baseline: false in the config; skipped")


@stage_command
def evaluate(args: StageArgs) -> None:
    """Score teacher(s), student and baseline on dev/test -> <run-dir>/evaluate/results.md."""
    with args.run() as r:
        out = r.evaluate(force=args.force)
        typer.echo((out / "results.md").read_text())


@stage_command
def export(args: StageArgs, *, repository: RepositoryOpt = None) -> None:
    """Export every student to ONNX (fp32 + int8, checked) -> <run-dir>/export/<key>; print
    the bundle of the best one on dev, which is what is published."""
    with args.run() as r:
        typer.echo(str(r.export(force=args.force)))
        if repository is not None and r.cfg.export.publish:
            published = r.publish(repository, _keep_last())
            gate = r.gate_record() or {}
            if published is not None:
                typer.echo(f"published: {published[0]} {published[1]} in {repository}")
            if gate.get("action") not in (None, "publish"):
                failed = [c["detail"] for c in gate["checks"] if c["status"] == "failed"]
                typer.echo(f"publish gate: {gate['action']}: {'; '.join(failed)}")


def _version(show: bool) -> None:
    if show:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"lugpi {version('lugpi')}")
        except PackageNotFoundError:  # run from a checkout that was never installed
            typer.echo("lugpi (not installed)")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    """LUGPI: train a text classifier that learned from generated images, then serve it
    without them."""


@app.command()
def presets() -> None:
    """The presets a CONFIG argument may name, what each is for, and the data files it reads
    (relative data paths are read from the data directory: LUGPI_DATA_DIR)."""
    from contracts.config import DATA_DIR_ENV, PRESETS_DIR, data_dir, load_config, preset_names

    for name in preset_names():
        lines = (PRESETS_DIR / f"{name}.yaml").read_text().splitlines()
        comment = takewhile(lambda ln: ln.startswith("#") and ln.strip("# "), lines)
        # Its first sentence (up to a '.' or ':') says what it is for.
        about = " ".join(ln.strip("# ") for ln in comment).split(". ")[0].split(": ")[0]
        typer.echo(f"{name} - {about}")
        try:
            cfg = load_config(name)
        except LugpiError as e:
            typer.echo(f"    (does not load: {e})")
            continue
        for split in ("train", "dev", "test", "unlabelled"):
            path = getattr(cfg.data, split)
            if path is not None:
                there = "" if Path(path).exists() else "  (missing)"
                typer.echo(f"    data.{split}: {path}{there}")
    typer.echo(
        f"\ndata directory: {data_dir()} (set {DATA_DIR_ENV} to change it, or give each file "
        "with --set data.train=PATH ...)"
    )


# lugpi models [list|pin|unpin|rollback|delete] and lugpi predict (training/cli_models.py).
app.add_typer(models_app, name="models")
app.command("predict")(predict)


if __name__ == "__main__":
    app()

"""``lugpi models ...`` (list, pin, unpin, rollback, promote, delete, import) and ``lugpi predict``.

``lugpi models`` alone lists the repository as before. The version commands change the
repository the way the API's admin routes do (``contracts.model_versions``: under the
model's lock, atomically); a running API sees the change at its next rescan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from contracts.errors import LugpiError, RepositoryError

models_app = typer.Typer(
    help="The published models: list them (default), pin a default version, roll back, "
    "promote a held version, delete a version, import a classifier. --repository may come "
    "before or after the subcommand.",
    invoke_without_command=True,
    no_args_is_help=False,
)

RepositoryHelp = "The model repository (default ./model-repository)."
Repository = Annotated[
    Path,
    typer.Option(envvar="LUGPI_MODEL_REPOSITORY", help=RepositoryHelp),
]
# A subcommand's own --repository: unset means "the group's" (``lugpi models --repository R
# pin ...``), which itself defaults to LUGPI_MODEL_REPOSITORY, then ./model-repository.
SubRepository = Annotated[
    Path | None,
    typer.Option(help=RepositoryHelp + " Overrides the one given before the subcommand."),
]
NameArg = Annotated[str, typer.Argument(help="The model's name.")]
VersionArg = Annotated[str, typer.Argument(help="A version: v1, v2, ...")]
DEFAULT_REPOSITORY = Path("model-repository")


def _fail(e: LugpiError) -> typer.Exit:
    typer.echo(f"error: {e}", err=True)
    return typer.Exit(2)


def existing_repository(repository: Path) -> Path:
    """``repository`` if it is a directory; else a ``RepositoryError`` saying how to name one.

    ``list_models`` reads a missing repository as empty (the API starts before anything is
    published); at the command line it is almost always a wrong path or working directory.
    """
    if not repository.exists():
        raise RepositoryError(
            f"model repository {repository} does not exist; give --repository PATH or set "
            "LUGPI_MODEL_REPOSITORY"
        )
    if not repository.is_dir():
        raise RepositoryError(f"model repository {repository} is not a directory")
    return repository


def _repository(ctx: typer.Context, own: Path | None) -> Path:
    chosen = own if own is not None else ctx.obj if isinstance(ctx.obj, Path) else None
    return existing_repository(chosen if chosen is not None else DEFAULT_REPOSITORY)


def _table(repository: Path, name: str | None = None) -> str:
    from contracts.repository import format_models_table, list_models, models_command

    if name is None:
        return models_command(repository)
    return format_models_table(list_models(repository, name))


@models_app.callback()
def models(ctx: typer.Context, repository: Repository = DEFAULT_REPOSITORY) -> None:
    """List the published models: versions, labels, test accuracy, the default, problems."""
    ctx.obj = repository
    if ctx.invoked_subcommand is None:
        try:
            typer.echo(_table(existing_repository(repository)))
        except LugpiError as e:
            raise _fail(e) from e


@models_app.command("list")
def list_(
    ctx: typer.Context,
    name: Annotated[str | None, typer.Argument(help="Only this model.")] = None,
    repository: SubRepository = None,
) -> None:
    """List the published models (or one model's versions), as `lugpi models` alone does."""
    try:
        typer.echo(_table(_repository(ctx, repository), name))
    except LugpiError as e:
        raise _fail(e) from e


@models_app.command("pin")
def pin(
    ctx: typer.Context, name: NameArg, version: VersionArg, repository: SubRepository = None
) -> None:
    """Serve VERSION when a request names no version, even after newer ones are published."""
    from contracts.model_versions import pin_version

    try:
        repo = _repository(ctx, repository)
        pin_version(repo, name, version)
        typer.echo(_table(repo, name))
    except LugpiError as e:
        raise _fail(e) from e


@models_app.command("unpin")
def unpin(ctx: typer.Context, name: NameArg, repository: SubRepository = None) -> None:
    """Forget the pin: the newest valid version is the default again."""
    from contracts import model_versions

    try:
        repo = _repository(ctx, repository)
        model_versions.unpin(repo, name)
        typer.echo(_table(repo, name))
    except LugpiError as e:
        raise _fail(e) from e


@models_app.command("rollback")
def rollback(ctx: typer.Context, name: NameArg, repository: SubRepository = None) -> None:
    """Pin the newest version older than the current default."""
    from contracts import model_versions

    try:
        repo = _repository(ctx, repository)
        entry = model_versions.rollback(repo, name)
        typer.echo(f"{name}: default is now {entry.version} (pinned)")
        typer.echo(_table(repo, name))
    except LugpiError as e:
        raise _fail(e) from e


@models_app.command("promote")
def promote(
    ctx: typer.Context, name: NameArg, version: VersionArg, repository: SubRepository = None
) -> None:
    """Lift the publish gate's hold on VERSION: it becomes servable, and the default when it
    is the newest servable version (as POST /models/{name}/versions/{v}/promote does)."""
    from contracts import model_versions

    try:
        repo = _repository(ctx, repository)
        entry = model_versions.promote(repo, name, version)
        typer.echo(f"{name} {version}: no longer held (was: {entry.held})")
        typer.echo(_table(repo, name))
    except LugpiError as e:
        raise _fail(e) from e


@models_app.command("delete")
def delete(
    ctx: typer.Context,
    name: NameArg,
    version: VersionArg,
    repository: SubRepository = None,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete one version (not the pinned one, not the last valid one); asks first."""
    from contracts.model_versions import delete_version

    try:
        repo = _repository(ctx, repository)
        if not yes:
            delete_version(repo, name, version, dry_run=True)
            typer.confirm(f"Delete {name} {version} from {repo}? This cannot be undone", abort=True)
        delete_version(repo, name, version)
        typer.echo(_table(repo, name))
    except LugpiError as e:
        raise _fail(e) from e


def predict(
    input_file: Annotated[Path, typer.Argument(help="A .csv (with a header) or .jsonl file.")],
    model: Annotated[str, typer.Option("--model", "-m", help="The published model's name.")],
    output: Annotated[
        Path, typer.Option("--output", "-o", help="Where to write the scored rows (.csv/.jsonl).")
    ],
    repository: Repository = DEFAULT_REPOSITORY,
    version: Annotated[
        str | None, typer.Option(help="A version (v1, ...); default: the model's default.")
    ] = None,
    text_column: Annotated[str, typer.Option(help="The column holding the text.")] = "text",
    pair_column: Annotated[
        str | None, typer.Option(help="The column holding the second text (pair models).")
    ] = None,
    batch_size: Annotated[int, typer.Option(min=1, help="Texts per onnxruntime call.")] = 64,
    threads: Annotated[int, typer.Option(min=1, help="onnxruntime threads.")] = 1,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Score a CSV/JSONL file offline with a published model, through the runner the API
    serves it with; each row gets label, score and one score per label."""
    from runtime.session import RuntimeOptions
    from training.evaluation.batch_predict import count_rows, file_format, predict_file

    try:
        existing_repository(repository)
        total = None if quiet else count_rows(input_file, file_format(input_file))
        with tqdm(total=total, unit="row", disable=quiet, mininterval=0.5) as bar:
            n = predict_file(
                repository,
                model,
                input_file,
                output,
                version=version,
                text_column=text_column,
                pair_column=pair_column,
                batch_size=batch_size,
                options=RuntimeOptions(device="auto", intra_op_threads=threads),
                progress=lambda done: bar.update(done - bar.n),
            )
    except (LugpiError, OSError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from e
    typer.echo(f"{n} rows scored -> {output}")


@models_app.command("import")
def import_model(
    source: Annotated[
        str,
        typer.Argument(
            help="A transformers *ForSequenceClassification checkpoint: a save_pretrained "
            "directory, or a model hub id (needs a network). Or an exported ONNX classifier: "
            "a directory with the graph (model.onnx) and its tokenizer, or the .onnx file."
        ),
    ],
    ctx: typer.Context,
    name: Annotated[str, typer.Option("--name", "-n", help="The name to publish it under.")],
    repository: Annotated[
        Path | None,
        typer.Option(help="The model repository; default: the one before the subcommand."),
    ] = None,
    sample: Annotated[
        Path | None,
        typer.Option(
            help="A CSV/TSV/JSONL file of texts like the model's own: export checks int8 "
            "against PyTorch on them (without it the bundle ships fp32 only)."
        ),
    ] = None,
    test: Annotated[
        Path | None,
        typer.Option(help="A labelled CSV/TSV/JSONL file; its metrics go into bundle.json."),
    ] = None,
    text_column: Annotated[str, typer.Option(help="The column holding the text.")] = "text",
    pair_column: Annotated[
        str | None,
        typer.Option(help="The column holding the second text; makes it a text-pair model."),
    ] = None,
    label_column: Annotated[
        str | None,
        typer.Option(help="The column holding label names (the model's id2label): labelled."),
    ] = None,
    text_pair: Annotated[
        bool, typer.Option("--text-pair", help="The model reads text pairs.")
    ] = False,
    max_length: Annotated[
        int | None, typer.Option(min=1, help="Tokens per input; default: what the model takes.")
    ] = None,
    quantize: Annotated[bool, typer.Option(help="Try an int8 model (needs --sample).")] = True,
    require_int8: Annotated[
        bool, typer.Option(help="Fail when int8 disagrees with PyTorch, instead of fp32 only.")
    ] = False,
    labels: Annotated[
        str | None,
        typer.Option(
            help="ONNX graphs: the label names in the order of the graph's outputs, "
            "comma-separated (default: config.json's id2label beside the graph)."
        ),
    ] = None,
) -> None:
    """Import a classifier trained elsewhere: export, check, checksum and publish it."""
    from training.export.import_model import LabelledFile, import_classifier

    # Unset: the group's --repository (``lugpi models --repository R import ...``), which
    # reads LUGPI_MODEL_REPOSITORY and defaults to ./model-repository.
    group = ctx.parent.params.get("repository") if ctx.parent is not None else None
    repo = repository or Path(group or DEFAULT_REPOSITORY)

    def spec(path: Path | None) -> LabelledFile | None:
        if path is None:
            return None
        return LabelledFile(path, text_column, pair_column, label_column)

    try:
        result = import_classifier(
            source,
            name,
            repository=repo,
            sample=spec(sample),
            test=spec(test),
            text_pair=text_pair,
            max_length=max_length,
            quantize=quantize,
            require_int8=require_int8,
            labels=[x.strip() for x in labels.split(",")] if labels else None,
        )
    except LugpiError as e:
        raise _fail(e) from e
    graphs = "fp32 + int8" if result.int8 else "fp32 only"
    typer.echo(f"imported {source} as {name}/{result.version} ({graphs}) -> {result.path}")
    typer.echo(_table(repo, name))

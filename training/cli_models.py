"""``lugpi models ...`` (list, pin, unpin, rollback, delete) and ``lugpi predict``.

``lugpi models`` alone lists the repository as before. The version commands change the
repository the way the API's admin routes do (``contracts.model_versions``: under the
model's lock, atomically); a running API sees the change at its next rescan.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from tqdm import tqdm

from contracts.errors import LugpiError

models_app = typer.Typer(
    help="The published models: list them (default), pin a default version, roll back, "
    "delete a version.",
    invoke_without_command=True,
    no_args_is_help=False,
)

Repository = Annotated[
    Path,
    typer.Option(envvar="LUGPI_MODEL_REPOSITORY", help="The model repository."),
]
NameArg = Annotated[str, typer.Argument(help="The model's name.")]
VersionArg = Annotated[str, typer.Argument(help="A version: v1, v2, ...")]
DEFAULT_REPOSITORY = Path("model-repository")


def _fail(e: LugpiError) -> typer.Exit:
    typer.echo(f"error: {e}", err=True)
    return typer.Exit(2)


def _table(repository: Path, name: str | None = None) -> str:
    from contracts.repository import format_models_table, list_models, models_command

    if name is None:
        return models_command(repository)
    return format_models_table(list_models(repository, name))


@models_app.callback()
def models(ctx: typer.Context, repository: Repository = DEFAULT_REPOSITORY) -> None:
    """List the published models: versions, labels, test accuracy, the default, problems."""
    if ctx.invoked_subcommand is None:
        try:
            typer.echo(_table(repository))
        except LugpiError as e:
            raise _fail(e) from e


@models_app.command("pin")
def pin(name: NameArg, version: VersionArg, repository: Repository = DEFAULT_REPOSITORY) -> None:
    """Serve VERSION when a request names no version, even after newer ones are published."""
    from contracts.model_versions import pin_version

    try:
        pin_version(repository, name, version)
        typer.echo(_table(repository, name))
    except LugpiError as e:
        raise _fail(e) from e


@models_app.command("unpin")
def unpin(name: NameArg, repository: Repository = DEFAULT_REPOSITORY) -> None:
    """Forget the pin: the newest valid version is the default again."""
    from contracts import model_versions

    try:
        model_versions.unpin(repository, name)
        typer.echo(_table(repository, name))
    except LugpiError as e:
        raise _fail(e) from e


@models_app.command("rollback")
def rollback(name: NameArg, repository: Repository = DEFAULT_REPOSITORY) -> None:
    """Pin the newest version older than the current default."""
    from contracts import model_versions

    try:
        entry = model_versions.rollback(repository, name)
        typer.echo(f"{name}: default is now {entry.version} (pinned)")
        typer.echo(_table(repository, name))
    except LugpiError as e:
        raise _fail(e) from e


@models_app.command("delete")
def delete(name: NameArg, version: VersionArg, repository: Repository = DEFAULT_REPOSITORY) -> None:
    """Delete one version (not the pinned one, not the last valid one)."""
    from contracts.model_versions import delete_version

    try:
        delete_version(repository, name, version)
        typer.echo(_table(repository, name))
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

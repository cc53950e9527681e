"""The ``imdb-sentiment`` command line: the Typer app, its error boundary and its commands.

Each verb group lives in its own module (``data``, ``train``, ``evaluate``, ``predict``,
``serve``) as a plain function that parses flags, calls one library function and renders the
result with :mod:`~imdb_sentiment.cli.render`; this module wraps every one in
:func:`handle_errors` and registers it. Heavy libraries (torch, transformers, datasets) are
imported inside commands so ``--help`` stays fast. User mistakes end as one stderr line and a
non-zero exit code.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Annotated, Any, TypeVar

import typer

from imdb_sentiment import __version__
from imdb_sentiment.cli import (
    adapt,
    data,
    drift,
    evaluate,
    predict,
    pseudo_label,
    render,
    search,
    serve,
    train,
)
from imdb_sentiment.data.storage import is_file_system_error, os_error_message
from imdb_sentiment.errors import ImdbSentimentError, StorageError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="imdb-sentiment",
    help="Fine-tune, evaluate and serve transformer sentiment classifiers on IMDB reviews.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain click help: rich markup would take "[default: ...]" in help texts for a tag and
    # drop it.
    rich_markup_mode=None,
)


def handle_errors(func: F) -> F:
    """Turn library errors into one stderr line and the error's exit code."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except ImdbSentimentError as exc:
            render.error(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except OSError as exc:
            # A disk that fills or a mount that turns read-only mid-run is the user's to fix,
            # not a bug: one line naming the path, the StorageError exit code.
            if not is_file_system_error(exc):
                raise
            render.error(os_error_message(exc))
            raise typer.Exit(StorageError.exit_code) from None
        except KeyboardInterrupt:
            render.err_console.print("[bold red]interrupted[/]")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def version_callback(value: bool) -> None:
    """Print the version and stop, for ``--version``."""
    if value:
        render.console.print(f"imdb-sentiment {__version__}")
        raise typer.Exit()


VersionOption = Annotated[
    bool | None,
    typer.Option(
        "--version", callback=version_callback, is_eager=True, help="Show the version and exit."
    ),
]


@app.callback()
def root(
    version: VersionOption = None,
) -> None:
    """Fine-tune, evaluate and serve transformer sentiment classifiers on IMDB reviews."""


COMMANDS: dict[str, Callable[..., None]] = {
    "download": data.download,
    "train": train.train,
    "adapt": adapt.adapt,
    "search": search.search,
    "eval": evaluate.eval_,
    "predict": predict.predict,
    "pseudo-label": pseudo_label.pseudo_label,
    "export": serve.export,
    "serve": serve.serve,
    "drift": drift.drift,
}
"""Every verb, in the order ``--help`` lists them."""

for _name, _command in COMMANDS.items():
    app.command(_name)(handle_errors(_command))


def main() -> None:
    """Console-script entry point."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


if __name__ == "__main__":
    main()

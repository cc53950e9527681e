#!/usr/bin/env python
"""Write the CLI and configuration references as Markdown, from the code itself.

The CLI reference walks the Typer app (``imdb_sentiment.cli.app.app``) through click, so every
command, argument and option appears with the help text, type and default that ``--help`` shows;
the configuration reference lists every ``section.key`` a config file or ``--set`` accepts, with
its type and default, from the ``Config`` dataclasses. Nothing here is written by hand: the
documentation site (``make docs``) builds both pages with this module at every build.

    python scripts/gen_cli_reference.py               # CLI reference on stdout
    python scripts/gen_cli_reference.py --config      # configuration reference on stdout
    python scripts/gen_cli_reference.py --out cli.md  # into a file
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path
from typing import Any

import typer

PROG = "imdb-sentiment"


def _cell(text: str) -> str:
    """One Markdown table cell: a single line, pipes escaped."""
    return " ".join(text.split()).replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{text}`" if text else ""


# Typer ships its own copy of click, so parameters and contexts are used by duck typing, and
# each row is the parameter's own help record: exactly what `--help` prints for it.
def _param_row(param: Any, ctx: Any) -> str:
    record = param.get_help_record(ctx)
    if record is None:
        names, help_text = "/".join(param.opts), ""
    else:
        names, help_text = record
    required = " (required)" if param.required and "required" not in help_text else ""
    return f"| {_cell(_code(names))} | {_cell(help_text)}{required} |"


def _command_section(name: str, command: Any, parent: Any) -> list[str]:
    ctx = command.context_class(command, info_name=name, parent=parent)
    usage = " ".join(command.collect_usage_pieces(ctx))
    lines = [
        f"## `{name}`",
        "",
        (command.help or "").strip(),
        "",
        "```text",
        f"{PROG} {name} {usage}".rstrip(),
        "```",
        "",
    ]
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    if params:
        lines += ["| argument or option | description |", "|---|---|"]
        lines += [_param_row(p, ctx) for p in params]
        lines.append("")
    return lines


def cli_reference(app: typer.Typer | None = None) -> str:
    """The Markdown reference of every command of ``app`` (the project's app by default)."""
    if app is None:
        from imdb_sentiment.cli.app import app as project_app

        app = project_app
    group = typer.main.get_command(app)
    root = group.context_class(group, info_name=PROG)
    lines = [
        "# CLI reference",
        "",
        "<!-- Generated from the Typer app by scripts/gen_cli_reference.py; do not edit. -->",
        "",
        (group.help or "").strip(),
        "",
        f"Every command runs as `{PROG} COMMAND [OPTIONS]`; `{PROG} COMMAND --help` prints the "
        "same text. Commands:",
        "",
    ]
    commands: dict[str, Any] = getattr(group, "commands", {})
    lines += [
        f"- [`{n}`](#{n}): {_cell(c.get_short_help_str(limit=300))}" for n, c in commands.items()
    ]
    lines.append("")
    for name, command in commands.items():
        lines += _command_section(name, command, root)
    return "\n".join(lines).rstrip() + "\n"


def _type_name(tp: Any) -> str:
    return tp if isinstance(tp, str) else getattr(tp, "__name__", str(tp))


def config_reference() -> str:
    """The Markdown table of every ``section.key`` with its type and default."""
    from imdb_sentiment.config import SECTIONS

    lines = [
        "# Configuration reference",
        "",
        "<!-- Generated from imdb_sentiment/config.py by scripts/gen_cli_reference.py. -->",
        "",
        "Every key below may be set in a `--config` YAML file (nested under its section) or with "
        "`--set section.key=value`. Precedence, lowest first: these defaults, the model family's "
        "recipe, `--config`, `--set`, explicit flags. The resolved config is saved as "
        "`runs/<name>/config.yaml`.",
        "",
    ]
    for section, cls in SECTIONS.items():
        lines += [
            f"## `{section}`",
            "",
            (cls.__doc__ or "").strip(),
            "",
            "| key | type | default |",
            "|---|---|---|",
        ]
        for f in dataclasses.fields(cls):
            default = f.default if f.default is not dataclasses.MISSING else ""
            lines.append(f"| `{section}.{f.name}` | `{_cell(_type_name(f.type))}` | `{default}` |")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="store_true", help="the configuration reference")
    parser.add_argument("--out", type=Path, help="write here instead of stdout")
    args = parser.parse_args(argv)
    text = config_reference() if args.config else cli_reference()
    if args.out:
        args.out.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

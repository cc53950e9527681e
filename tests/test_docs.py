"""Docs: generated references cover the code, the site builds, commands are portable."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import typer

from imdb_sentiment.cli.app import COMMANDS, app
from imdb_sentiment.config import valid_keys

ROOT = Path(__file__).resolve().parent.parent


def _script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def cli_reference() -> str:
    return str(_script("gen_cli_reference").cli_reference())


def test_cli_reference_lists_every_command_and_flag(cli_reference: str) -> None:
    group = typer.main.get_command(app)
    commands = group.commands  # type: ignore[attr-defined]
    assert list(commands) == list(COMMANDS)
    for name, command in commands.items():
        section = cli_reference.split(f"## `{name}`\n", 1)[1].split("\n## `", 1)[0]
        for param in command.params:
            for flag in [*param.opts, *param.secondary_opts]:
                if flag.startswith("-"):
                    assert re.search(rf"`[^`]*{re.escape(flag)}\b", section), (name, flag)
            if param.help:
                assert " ".join(param.help.split())[:40] in section, (name, param.name)


def test_cli_reference_follows_a_new_command() -> None:
    """Generated, not written by hand: a command added to an app shows up."""
    demo = typer.Typer()

    @demo.command()
    def hello(loud: bool = typer.Option(False, "--loud", help="Shout it.")) -> None:
        """Say hello."""

    @demo.command()
    def bye() -> None:
        """Say goodbye."""

    text = _script("gen_cli_reference").cli_reference(demo)
    assert "## `hello`" in text and "## `bye`" in text
    assert "`--loud`" in text and "Shout it." in text


def test_configuration_reference_lists_every_key() -> None:
    text = _script("gen_cli_reference").config_reference()
    for key in valid_keys():
        assert f"`{key}`" in text, key


def test_readme_pages_rewrite_links_for_the_site() -> None:
    hooks = _script("docs_hooks")
    pages = hooks.readme_pages((ROOT / "README.md").read_text(encoding="utf-8"))
    assert set(pages) == set(hooks.README_PAGES)
    for page, text in pages.items():
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            assert not target.startswith("docs/"), (page, target)
            assert (
                "://" in target
                or target.startswith("#")
                or ".md" in target
                or target.startswith("results/")
            ), (page, target)
    assert "](verbs.md#train)" in pages["index.md"]


def test_docs_name_no_machine_specific_paths() -> None:
    """Commands in the docs run from a fresh clone: no shared folders or CPU lock files."""
    files = [
        ROOT / "README.md",
        *sorted((ROOT / "docs").glob("*.md")),
        *sorted((ROOT / "scripts").glob("*.py")),
    ]
    bad = re.compile(r"/work/[a-z-]*shared|flock /tmp/|(--source |IMDB_SOURCE=)\.\./shared")
    hits = [
        f"{f.name}:{n}"
        for f in files
        for n, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1)
        if bad.search(line)
    ]
    assert not hits


@pytest.mark.skipif(
    shutil.which("mkdocs", path=str(Path(sys.executable).parent)) is None,
    reason="mkdocs is not installed (pip install -e '.[docs]')",
)
def test_site_builds_strict(tmp_path: Path) -> None:
    mkdocs = Path(sys.executable).parent / "mkdocs"
    result = subprocess.run(
        [str(mkdocs), "build", "--strict", "--quiet", "--site-dir", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={
            "PATH": str(Path(sys.executable).parent),
            "NO_MKDOCS_2_WARNING": "1",
            "HOME": str(tmp_path),
        },
    )
    assert result.returncode == 0, result.stderr[-2000:]
    cli_page = (tmp_path / "site" / "reference" / "cli" / "index.html").read_text()
    for name in COMMANDS:
        assert f"imdb-sentiment {name}" in cli_page
    assert 'class="mermaid"' in (tmp_path / "site" / "ARCHITECTURE" / "index.html").read_text()

"""MkDocs hooks (mkdocs.yml ``hooks:``): pages made at build time, never kept in ``docs/``.

- the CLI and configuration references, from the code (``gen_cli_reference.py``);
- the quick start, the verbs, results and development pages, cut from ``README.md`` by its
  ``##`` headings, so the README stays the one place they are written. Links are rewritten for
  the site: ``docs/X.md`` becomes ``X.md``, an ``#anchor`` points at the page that now holds
  its heading, and a link to a repository file outside ``docs/`` becomes a code span (the site
  holds no copy of it).
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# page -> (title, README "##" headings it takes, in order)
README_PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "index.md": ("imdb-sentiment", ("Quick start", "Install")),
    "verbs.md": (
        "The verbs",
        (
            "The four verbs, and the rest",
            "Run directory",
            "Several GPUs and machines",
            "Weights & Biases",
        ),
    ),
    "results.md": ("Results", ("Measured results",)),
    "development.md": ("Development", ("Development", "Docker", "Exit codes")),
}
LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")


def _reference_module() -> Any:
    spec = importlib.util.spec_from_file_location(
        "gen_cli_reference", Path(__file__).with_name("gen_cli_reference.py")
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def slug(heading: str) -> str:
    """The anchor MkDocs' table of contents gives a heading (its default slugify)."""
    text = re.sub(r"[^\w\s-]", "", heading.replace("`", "")).strip().lower()
    return re.sub(r"[-\s]+", "-", text)


def readme_sections(text: str) -> dict[str, str]:
    """README split at its ``## `` headings: heading -> that section's Markdown."""
    sections: dict[str, str] = {}
    for block in re.split(r"(?m)^(?=## )", text)[1:]:
        sections[block.splitlines()[0][3:].strip()] = block
    return sections


def _rewrite_links(markdown: str, page: str, anchors: dict[str, str]) -> str:
    def fix(match: re.Match[str]) -> str:
        label, target = match.groups()
        if re.match(r"[a-z]+://|mailto:", target):
            return match.group(0)
        if target.startswith("#"):
            home = anchors.get(target[1:], page)
            return f"[{label}]({'' if home == page else home}{target})"
        if target.startswith("docs/"):
            return f"[{label}]({target[len('docs/') :]})"
        return f"{label} (`{target}`)"

    return LINK.sub(fix, markdown)


def readme_pages(readme: str) -> dict[str, str]:
    """The site pages cut from the README, links rewritten."""
    sections = readme_sections(readme)
    missing = [h for _, hs in README_PAGES.values() for h in hs if h not in sections]
    if missing:
        raise ValueError(f"README.md has no '## ' section {missing}: update README_PAGES")
    anchors: dict[str, str] = {}
    for page, (_, headings) in README_PAGES.items():
        for heading in headings:
            for line in sections[heading].splitlines():
                if line.startswith("#"):
                    anchors.setdefault(slug(line.lstrip("#").strip()), page)
    pages = {}
    for page, (title, headings) in README_PAGES.items():
        body = "\n".join(sections[h].rstrip() + "\n" for h in headings)
        pages[page] = _rewrite_links(f"# {title}\n\n{body}", page, anchors)
    return pages


def generated_pages() -> dict[str, str]:
    """Every page the site builds from the code and the README: path -> Markdown."""
    reference = _reference_module()
    pages = readme_pages((ROOT / "README.md").read_text(encoding="utf-8"))
    pages["reference/cli.md"] = reference.cli_reference()
    pages["reference/configuration.md"] = reference.config_reference()
    return pages


def on_files(files: Any, config: Any) -> Any:
    """MkDocs event: add the generated pages to the site's files."""
    from mkdocs.structure.files import File

    for uri, content in generated_pages().items():
        files.append(File.generated(config, uri, content=content))
    return files

"""The documentation holds together: the README stays a front door, and nothing points at what is not there.

- README.md is at most 250 lines: the lab notebook lives in docs/, one page per topic.
- Every relative Markdown link in README.md and docs/*.md (``[text](path)`` or ``[text](path#anchor)``) names a
  file or folder of the repository, and an ``#anchor`` names a heading of the target page, slugged as GitHub
  slugs headings (lowercase; punctuation other than ``-`` and ``_`` dropped; each space becomes ``-``), so
  ``## SNI scale — 2026-12-01, CPU`` is ``#sni-scale--2026-12-01-cpu``.
- Every repository path quoted as code in those pages (`` `t2t/tasks/sandbox.py` ``, under t2t/, tests/,
  benchmarks/ or docs/) exists: a page that cites a moved or deleted module fails here, naming page and line.
- No file of the repository cites the reference notes that live outside it: a citation names the primary
  source, or docs/references.md, which does.

These read files only; they need neither torch nor the network.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MAX_README_LINES = 250

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
CODE_PATH = re.compile(r"`((?:t2t|tests|benchmarks|docs)/[A-Za-z0-9_./-]+)`")
FENCE = re.compile(r"^(```|~~~)")
# The outside notes' name, built so that this file does not match its own check.
OUTSIDE_NOTES = re.compile(r"\b" + "REFER" + r"ENCE(\.md)?\b")
# What a repository checkout holds besides build output, caches and the virtual environment.
SCANNED = ["README.md", "Makefile", "pyproject.toml", ".ci", "t2t", "tests", "benchmarks", "docs", "templates",
           "task_registry"]
SKIPPED_PARTS = {"__pycache__", ".pytest_cache", ".ruff_cache"}


def pages() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def slug(heading: str) -> str:
    """GitHub's anchor for a Markdown heading: ``The same experiment: `--model minilm-ed` `` ->
    ``the-same-experiment---model-minilm-ed``."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page (headings inside fenced code blocks are not headings)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m and not fenced:
            base = slug(m.group(1))
            n = seen.get(base, 0)
            seen[base] = n + 1
            found.add(base if n == 0 else f"{base}-{n}")  # GitHub numbers repeated headings
    return found


def outside_fences(page: Path) -> list[tuple[int, str]]:
    """(line number, text) of the page's lines that are prose, not fenced code."""
    lines, fenced = [], False
    for number, line in enumerate(page.read_text(encoding="utf-8").splitlines(), start=1):
        if FENCE.match(line):
            fenced = not fenced
        elif not fenced:
            lines.append((number, line))
    return lines


def test_slug_follows_github() -> None:
    assert slug("SNI scale — 2026-12-01, CPU") == "sni-scale--2026-12-01-cpu"
    assert slug("The same experiment on a pre-trained offline base: `--model minilm-ed`") == (
        "the-same-experiment-on-a-pre-trained-offline-base---model-minilm-ed")
    assert slug("T5, transformers and peft") == "t5-transformers-and-peft"


def test_readme_is_a_front_door() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= MAX_README_LINES, (
        f"README.md has {len(lines)} lines (at most {MAX_README_LINES}): move the detail to a page under docs/")


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    broken = []
    for number, line in outside_fences(page):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ... are not checked offline
                continue
            path_part, _, anchor = target.partition("#")
            where = (page.parent / path_part).resolve() if path_part else page
            if not where.exists():
                broken.append(f"{page.relative_to(ROOT)}:{number}: {target} (no such file)")
            elif anchor and where.suffix == ".md" and anchor not in anchors(where):
                broken.append(f"{page.relative_to(ROOT)}:{number}: {target} (no heading with that anchor)")
    assert not broken, "broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_quoted_repository_paths_exist(page: Path) -> None:
    missing = [f"{page.relative_to(ROOT)}:{number}: {path}"
               for number, line in outside_fences(page) for path in CODE_PATH.findall(line)
               if not (ROOT / path).exists()]
    assert not missing, "pages quote repository paths that do not exist:\n" + "\n".join(missing)


def repository_files() -> list[Path]:
    files: list[Path] = []
    for name in SCANNED:
        top = ROOT / name
        if top.is_file():
            files.append(top)
        elif top.is_dir():
            files.extend(p for p in sorted(top.rglob("*"))
                         if p.is_file() and not SKIPPED_PARTS.intersection(p.relative_to(ROOT).parts))
    return files


def test_the_scan_sees_the_repository() -> None:
    # The citation check below is only as good as the files it reads.
    names = {p.relative_to(ROOT).as_posix() for p in repository_files()}
    assert {"README.md", "Makefile", "t2t/__init__.py", "tests/test_docs.py", "docs/references.md"} <= names
    assert any(n.startswith("templates/hub/") for n in names) and any(n.startswith("task_registry/") for n in names)


def test_nothing_cites_notes_outside_the_repository() -> None:
    citing = []
    for path in repository_files():
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:  # a binary file (an image) cites nothing
            continue
        for number, line in enumerate(text.splitlines(), start=1):
            if OUTSIDE_NOTES.search(line):
                citing.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()[:100]}")
    assert not citing, ("these cite notes that are not in the repository; cite the primary source or "
                        "docs/references.md instead:\n" + "\n".join(citing))

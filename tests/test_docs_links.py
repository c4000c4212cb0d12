"""The README and docs/*.md: every relative link resolves, and the README stays short.

A link is markdown ``[text](target)`` or an image ``![alt](target)``, outside fenced code
blocks and inline code. ``target`` is ``path``, ``path#anchor`` or ``#anchor`` (this
file); ``http(s)://`` and ``mailto:`` targets are not checked. An anchor into a markdown
file must be one of its headings under GitHub's slug rule (:func:`github_slug`).
"""

import re
from pathlib import Path
from typing import Iterator, List, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
README_MAX_LINES = 250
DOCUMENTS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]

FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
# [text](target) or ![alt](target); the target may carry a "title" after a space.
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
EXTERNAL = ("http://", "https://", "mailto:")


def prose_lines(text: str) -> Iterator[Tuple[int, str]]:
    """(1-based line number, line) of the lines outside fenced code blocks."""
    in_fence = False
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if not in_fence:
            yield number, line


def links(text: str) -> List[Tuple[int, str]]:
    """(line number, target) of every link and image in ``text``'s prose."""
    found = []
    for number, line in prose_lines(text):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            found.append((number, match.group(1)))
    return found


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup and punctuation removed (letters, digits,
    ``_``, ``-`` and spaces kept), lowercase, each space a hyphen."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link: its text
    text = text.replace("`", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> Set[str]:
    """Every heading anchor of a markdown file; repeated headings get ``-1``, ``-2``..."""
    seen: dict = {}
    out = set()
    for _, line in prose_lines(path.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        out.add(slug if count == 0 else f"{slug}-{count}")
    return out


def broken_links(document: Path, root: Path = REPO) -> List[str]:
    """A message per link of ``document`` (a file under ``root``) that does not resolve."""
    problems = []
    rel = document.relative_to(root)
    for number, target in links(document.read_text(encoding="utf-8")):
        if target.startswith(EXTERNAL):
            continue
        path_part, _, anchor = target.partition("#")
        resolved = (document.parent / path_part).resolve() if path_part else document
        where = f"{rel}:{number}: link {target!r}"
        if not resolved.exists():
            problems.append(f"{where}: {resolved} does not exist")
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            problems.append(f"{where}: no heading with anchor #{anchor} in {path_part or rel}")
    return problems


def test_slug_rule_follows_github():
    assert github_slug("Crowded-world study (`tools/ablate.py`)") == (
        "crowded-world-study-toolsablatepy"
    )
    assert github_slug("In sgg_d2's scene-graph JSON format (no h5 needed)") == (
        "in-sgg_d2s-scene-graph-json-format-no-h5-needed"
    )
    assert github_slug("The crowded synthetic world (`--preset crowded`)") == (
        "the-crowded-synthetic-world---preset-crowded"
    )
    assert github_slug("Results (3 seeds, 1,000 relation iterations)") == (
        "results-3-seeds-1000-relation-iterations"
    )


def test_checker_finds_broken_links_and_anchors(tmp_path):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "A.md").write_text("# Title\n\n## Two words\n", encoding="utf-8")
    doc = tmp_path / "README.md"
    doc.write_text(
        "[ok](docs/A.md#two-words) [here](#top) ![img](docs/missing.png)\n"
        "[bad anchor](docs/A.md#three-words) [web](https://example.org/x#y)\n"
        "```\n[in code](nowhere.md)\n```\n`[inline](nowhere.md)`\n# Top\n",
        encoding="utf-8",
    )
    problems = broken_links(doc, tmp_path)
    assert len(problems) == 2, problems
    assert "docs/missing.png" in problems[0] and "README.md:1" in problems[0]
    assert "#three-words" in problems[1] and "README.md:2" in problems[1]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(document):
    problems = broken_links(document)
    assert not problems, "\n".join(problems)


def test_readme_is_at_most_250_lines():
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert (
        lines <= README_MAX_LINES
    ), f"README.md has {lines} lines, more than {README_MAX_LINES}: move details to docs/"

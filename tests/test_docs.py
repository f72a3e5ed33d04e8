"""The documentation holds together: every `design.md §n` the code cites is a section of docs/design.md, and every
relative link (and #anchor) in README.md and docs/*.md points at a file (and heading) that exists."""

import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DESIGN = REPO / "docs" / "design.md"
MD_FILES = [REPO / "README.md"] + sorted((REPO / "docs").glob("*.md")) + [REPO / "bench" / "README.md"]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def design_sections() -> set[int]:
    return {int(m) for m in re.findall(r"^## (\d+)\.", DESIGN.read_text(), flags=re.M)}


def cited_sections(text: str) -> list[int]:
    """Section numbers after each "design.md": §3, §2–4, §1, §4 (a range counts every section in it)."""
    out = []
    for m in re.finditer(r"design\.md", text):
        tail = text[m.end():m.end() + 30].split("\n")[0].split(")")[0]
        for a, b in re.findall(r"§\s*(\d+)(?:\s*[–-]\s*(\d+))?", tail):
            out.extend(range(int(a), int(b or a) + 1))
    return out


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped (hyphens and underscores kept), spaces → -."""
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)
    return s.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    out, fence = set(), False
    for line in path.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        elif not fence and line.startswith("#"):
            out.add(slug(line.lstrip("#")))
    return out


def test_cited_sections_exist():
    sections = design_sections()
    assert {1, 2, 3, 4, 5, 6, 7} <= sections
    bad = []
    for path in list((REPO / "harness").rglob("*.py")) + list((REPO / "tests").glob("*.py")) + \
            list((REPO / "bench").glob("*.py")) + MD_FILES:
        for n in cited_sections(path.read_text()):
            if n not in sections:
                bad.append(f"{path.relative_to(REPO)}: design.md §{n}")
    assert not bad, "cited sections missing from docs/design.md:\n" + "\n".join(bad)


def test_cited_sections_parser():
    assert cited_sections("see design.md §3.") == [3]
    assert cited_sections("(design.md §2–4)") == [2, 3, 4]
    assert cited_sections("(design.md §1, §4) and later §9") == [1, 4]


@pytest.mark.parametrize("md", MD_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_and_anchors_exist(md):
    bad = []
    fence = False
    for line in md.read_text().splitlines():
        if line.startswith("```"):
            fence = not fence
        if fence:
            continue
        for target in LINK.findall(line):
            if re.match(r"^[a-z]+:", target):  # http:, https:, mailto:
                continue
            file, _, anchor = target.partition("#")
            dest = (md.parent / file).resolve() if file else md
            if not dest.exists():
                bad.append(f"{target}: no such file")
            elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
                bad.append(f"{target}: no such heading in {dest.relative_to(REPO)}")
    assert not bad, f"{md.relative_to(REPO)}:\n" + "\n".join(bad)


def test_slug_matches_github():
    assert slug(" Measuring through the devices — `vlh run --transport loopback`") == \
        "measuring-through-the-devices--vlh-run---transport-loopback"
    assert slug(" How boundaries are found (and how exact they are)") == "how-boundaries-are-found-and-how-exact-they-are"

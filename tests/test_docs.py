"""The README is the front door and docs/ holds the detail: the README stays short, and every
relative link in the README, docs/ and benchmarks/README.md resolves (a file, and a heading where
the link names one)."""

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "benchmarks" / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a Markdown file's headings."""
    out = set()
    for line in page.read_text().splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            out.add("".join(c for c in text if c.isalnum() or c in " -_").replace(" ", "-"))
    return out


def test_the_readme_is_a_front_door():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= 200, len(lines)
    for page in PAGES[2:]:
        assert f"docs/{page.name}" in "\n".join(lines), f"the README does not link {page.name}"


def broken_links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code blocks hold no links
    broken = []
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):
            continue  # http(s), mailto: not checked offline
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists() or (anchor and file.suffix == ".md" and anchor not in anchors(file)):
            broken.append(target)
    return broken


@pytest.mark.parametrize("page", PAGES, ids=[str(p.relative_to(ROOT)) for p in PAGES])
def test_every_link_resolves(page):
    assert not broken_links(page), page.name


def test_the_link_check_catches_a_broken_link(tmp_path):
    page = tmp_path / "a.md"
    (tmp_path / "b.md").write_text("## Other page\n")
    page.write_text("# A title\n[ok](#a-title) [gone](missing.md) [no heading](#nope) [there](b.md#other-page) [not there](b.md#x)\n")
    assert broken_links(page) == ["missing.md", "#nope", "b.md#x"]


def test_the_component_tables_are_generated_from_the_declarations():
    from bnlab import catalog

    text = (ROOT / "docs" / "norms-and-models.md").read_text()
    block = text.split("<!-- components: bnlab list --markdown -->\n", 1)[1].split("<!-- /components -->", 1)[0]
    assert block == catalog.markdown(), "run `bnlab list --markdown` and paste it into docs/norms-and-models.md"

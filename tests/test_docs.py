"""The docs the code cites exist: every ``docs/paper.md §N`` in code, configs, notebooks and docs names a section of
docs/paper.md (the paper's facts live in the repository, not in a file outside it)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CITATION = re.compile(r"docs/paper\.md (§+[0-9][0-9.]*)")
SECTION = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", re.M)


def tracked_text_files() -> list[Path]:
    listed = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, text=True, check=True).stdout.split()
    return [ROOT / name for name in listed if name.endswith((".py", ".smk", ".yaml", ".md", ".rst")) or name in
            ("Snakefile", "Makefile")]


def cited_sections() -> dict[str, list[str]]:
    cited: dict[str, list[str]] = {}
    for path in tracked_text_files():
        if not path.is_file():
            continue
        for match in CITATION.finditer(path.read_text(errors="replace")):
            for number in match[1].lstrip("§").split("§"):
                cited.setdefault(number.rstrip("."), []).append(str(path.relative_to(ROOT)))
    return cited


def test_every_cited_paper_section_exists():
    sections = {m.rstrip(".") for m in SECTION.findall((ROOT / "docs" / "paper.md").read_text())}
    assert {"0", "1", "2", "2.1", "2.10", "7"} <= sections
    cited = cited_sections()
    assert len(cited) >= 10, cited  # the docstrings do cite it
    missing = {number: files for number, files in cited.items() if number not in sections}
    assert not missing, f"citations of sections docs/paper.md lacks: {missing}"


def test_nothing_cites_the_spec_outside_the_repository():
    stale = [str(p.relative_to(ROOT)) for p in tracked_text_files()
             if p.is_file() and p.name != "test_docs.py" and re.search(r"paper_spec|(?<![\w/.])spec §", p.read_text(errors="replace"))]
    assert stale == []

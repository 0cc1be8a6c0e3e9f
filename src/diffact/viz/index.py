"""The index of regenerated figures and tables: ``paper_figures/<profile>/README.md``.

It accounts for all 24 items of the paper (18 figures, 6 tables; the list is data, ``paper_items.yaml``): for each,
the files this profile produced, the rule and the inputs that produced them (from the provenance files that
``diffact notebook`` writes beside each executed notebook), the paper's reported numbers, and, for tables, our table
with the paper's numbers beside ours. An item without files is listed with the reason the profile cannot produce it.
Files in ``paper_figures/<profile>/`` that belong to no paper item (demo-only figures) are listed at the end.
"""

from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from diffact.utils.errors import ConfigError

ITEMS_FILE = "paper_items.yaml"
EMBED_MAX_LINES = 40
IGNORED = ("README.md", ".gitkeep")


@dataclass
class PaperItem:
    id: str
    title: str
    files: list[str]
    missing: str
    paper: str = ""
    embed: str = ""
    note: str = ""


@dataclass
class Provenance:
    rule: str
    notebook: str
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)


def paper_items(path: str | Path | None = None) -> list[PaperItem]:
    """The paper's 24 figures and tables (``diffact/viz/paper_items.yaml`` unless ``path`` is given)."""
    import yaml

    if path is None:
        with resources.as_file(resources.files("diffact.viz") / ITEMS_FILE) as file:
            raw = yaml.safe_load(Path(file).read_text())
    else:
        raw = yaml.safe_load(Path(path).read_text())
    items = []
    for i, entry in enumerate(raw or []):
        try:
            items.append(PaperItem(**entry))
        except TypeError as err:
            raise ConfigError(f"{path or ITEMS_FILE}: item {i} ({entry.get('id', '?')}): {err}") from None
    return items


def read_provenance(folder: str | Path) -> list[Provenance]:
    """Every ``*.provenance.json`` under ``folder`` (written by ``diffact notebook --rule ...``)."""
    records = []
    for path in sorted(Path(folder).glob("**/*.provenance.json")):
        data = json.loads(path.read_text())
        records.append(Provenance(rule=data.get("rule") or "?", notebook=data.get("notebook", ""),
                                  inputs=list(data.get("inputs", [])), outputs=list(data.get("outputs", []))))
    return records


def matching(names: list[str], patterns: list[str]) -> list[str]:
    return sorted({n for n in names for p in patterns if fnmatch.fnmatch(n, p)})


def producers(files: list[str], figures_dir: Path, records: list[Provenance]) -> list[Provenance]:
    """The provenance records whose outputs include any of ``files`` (names inside ``figures_dir``)."""
    wanted = {str(figures_dir / f) for f in files} | set(files)
    return [r for r in records if wanted & {str(Path(o)) for o in r.outputs}]


def _inputs_summary(record: Provenance) -> str:
    inputs = [i for i in record.inputs if i != record.notebook and not i.endswith("viz/theme.py")]
    return ", ".join(f"`{i}`" for i in inputs) or "–"


def _embedded(figures_dir: Path, pattern: str, names: list[str]) -> list[str]:
    lines = []
    for name in matching(names, [pattern]):
        if name.endswith(".csv"):
            import pandas as pd

            text = pd.read_csv(figures_dir / name).to_markdown(index=False).splitlines()
        else:
            text = (figures_dir / name).read_text().strip().splitlines()
        if len(text) > EMBED_MAX_LINES:
            lines += ["", f"[`{name}`]({name}) ({len(text)} lines, not shown here)"]
            continue
        lines += ["", *["> " + line if line else ">" for line in text]]
    return lines


def _status(item: PaperItem, names: list[str]) -> str:
    unmatched = [p for p in item.files if not matching(names, [p])]
    if len(unmatched) == len(item.files):
        return f"not produced: {item.missing}"
    if unmatched:
        return f"partly produced (no file for {', '.join(unmatched)}): {item.missing}"
    return "produced"


def build_index(figures_dir: str | Path, provenance_dir: str | Path, profile: str,
                items: list[PaperItem] | None = None) -> str:
    """The markdown of ``paper_figures/<profile>/README.md`` for what is in ``figures_dir`` now."""
    figures_dir = Path(figures_dir)
    items = items if items is not None else paper_items()
    names = sorted(p.name for p in figures_dir.iterdir() if p.is_file() and p.name not in IGNORED)
    records = read_provenance(provenance_dir)
    produced = [item for item in items if matching(names, item.files)]
    lines = [
        "# Paper figures and tables, regenerated",
        "",
        f"Profile `{profile}`: {len(produced)} of the paper's {len(items)} figures and tables have files here; "
        "the others are listed with the reason. Written by `diffact figures-index` (rule `figures_index`) from "
        "the files in this folder and the provenance each notebook run records; rebuild with `snakemake figures`.",
        "",
        "| item | title | files | rule | status |",
        "|---|---|---|---|---|",
    ]
    for item in items:
        files = matching(names, item.files)
        rules = sorted({r.rule for r in producers(files, figures_dir, records)})
        status = _status(item, names)
        file_links = " ".join(f"[`{f}`]({f})" for f in files if not f.endswith(".pdf")) or "–"
        lines.append(f"| {item.id} | {item.title} | {file_links} | {', '.join(rules) or '–'} | {status} |")
    lines += ["", "## Items in detail"]
    for item in items:
        files = matching(names, item.files)
        lines += ["", f"### {item.id}: {item.title}", ""]
        lines.append(f"- Paper: {item.paper or 'no numbers (qualitative or diagram)'}")
        if item.note:
            lines.append(f"- Note: {item.note}")
        if not files:
            lines.append(f"- Not produced in this profile: {item.missing}")
            continue
        lines.append(f"- Files: {', '.join(f'`{f}`' for f in files)}")
        for record in producers(files, figures_dir, records):
            lines.append(f"- Rule `{record.rule}` ran `{record.notebook}` on: {_inputs_summary(record)}")
        if item.embed:
            lines += _embedded(figures_dir, item.embed, names)
    claimed = set(matching(names, [p for item in items for p in item.files]))
    extras = [n for n in names if n not in claimed and not n.endswith(".pdf")]
    if extras:
        lines += ["", "## Workspace outputs that are not paper items", ""]
        for name in extras:
            rules = sorted({r.rule for r in producers([name], figures_dir, records)})
            lines.append(f"- [`{name}`]({name}) (rule {', '.join(f'`{r}`' for r in rules) or '?'})")
    return "\n".join(lines) + "\n"


def write_index(out: str | Path, figures_dir: str | Path, provenance_dir: str | Path, profile: str) -> Path:
    from diffact.utils.io import write_text

    write_text(out, build_index(figures_dir, provenance_dir, profile))
    return Path(out)

"""CLI of the figures:

* ``diffact notebook``      — run a jupytext ``.py`` notebook with papermill (rules call it) and record its
  provenance;
* ``diffact figures-index`` — write paper_figures/<profile>/README.md, the index of the paper's 24 items.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

log = logging.getLogger(__name__)

KERNEL = "diffact"


def register(subparsers) -> None:
    _register_notebook(subparsers)
    _register_figures_index(subparsers)


def _register_notebook(subparsers) -> None:
    p = subparsers.add_parser("notebook", help="execute a notebooks/*.py (jupytext) with papermill")
    p.add_argument("notebook", help="notebooks/<name>.py")
    p.add_argument("--executed", help="where the executed .ipynb is kept (results/notebooks/...)")
    p.add_argument("--executed-dir", metavar="DIR",
                   help="instead of --executed: keep it in DIR, named after the first of --outputs (a rule's outputs "
                        "name each job apart, so a rule need not name its executed notebook)")
    p.add_argument("-p", "--param", action="append", default=[], metavar="KEY=YAML",
                   help="notebook parameter (value parsed as YAML)")
    p.add_argument("--kernel", default=None, help=f"Jupyter kernel (default: {KERNEL} if installed, else python3)")
    p.add_argument("--rule", default=None, help="the Snakemake rule running it (recorded in the provenance file)")
    p.add_argument("--inputs", nargs="*", default=[], help="the rule's input files (recorded in the provenance file)")
    p.add_argument("--outputs", nargs="*", default=[],
                   help="the rule's output files (recorded in the provenance file); the first, without its extension, "
                        "is the notebook's out_stem parameter unless -p out_stem=... is given")
    p.set_defaults(func=cmd_notebook)


def parse_params(items: list[str]) -> dict:
    import yaml

    from diffact.utils.errors import ConfigError

    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isidentifier():
            raise ConfigError(f"notebook parameter {item!r}: expected KEY=VALUE with KEY a Python name")
        params[key] = yaml.safe_load(value)
    return params


def derived_params(outputs: list[str]) -> dict:
    """The parameters a rule's outputs give: ``out_stem``, the first output without its extension (where the
    notebook writes its figure or table; each notebook adds its own suffixes)."""
    return {"out_stem": str(Path(outputs[0]).with_suffix(""))} if outputs else {}


def executed_path(executed: str | None, executed_dir: str | None, outputs: list[str]) -> str:
    """Where the executed notebook is kept: ``--executed``, else ``--executed-dir`` / <first output's stem>.ipynb."""
    from diffact.utils.errors import ConfigError

    if executed:
        return executed
    if not (executed_dir and outputs):
        raise ConfigError("diffact notebook: give --executed, or --executed-dir with the rule's --outputs")
    return str(Path(executed_dir) / f"{Path(outputs[0]).stem}.ipynb")


def _kernel(requested: str | None) -> str:
    if requested:
        return requested
    from jupyter_client.kernelspec import KernelSpecManager

    return KERNEL if KERNEL in KernelSpecManager().find_kernel_specs() else "python3"


def skip_unused_iri_grammar() -> None:
    """Keep jsonschema from compiling its IRI grammar in the notebook runner.

    papermill and jupytext validate notebooks with nbformat, which imports jsonschema, which at import builds an
    Earley parser for the ``iri`` format checks when the optional ``rfc3987_syntax`` is installed: 1.1 of the
    1.5 CPU seconds the runner spent importing (measured here), in every notebook job. nbformat validates without a
    format checker and its schemas use no ``format`` keyword, so the checks are never run; a module set to None in
    ``sys.modules`` makes that optional import fail, as if it were not installed, and jsonschema skips those checks.
    """
    sys.modules.setdefault("rfc3987_syntax", None)


def cmd_notebook(args) -> int:
    skip_unused_iri_grammar()
    import jupytext
    import papermill

    from diffact.utils.errors import ConfigError
    from diffact.utils.io import atomic_path, write_json

    source = Path(args.notebook)
    if not source.is_file():
        raise ConfigError(f"notebook {source} does not exist")
    params = {**derived_params(args.outputs), **parse_params(args.param)}
    args.executed = executed_path(args.executed, args.executed_dir, args.outputs)
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir) / f"{source.stem}.ipynb"
        jupytext.write(jupytext.read(source), tmp, fmt="ipynb")
        with atomic_path(args.executed) as executed:
            papermill.execute_notebook(str(tmp), str(executed), parameters=params, kernel_name=_kernel(args.kernel),
                                       cwd=str(Path.cwd()), progress_bar=False)
    write_json(provenance_path(args.executed), {
        "notebook": str(source), "rule": args.rule, "parameters": params,
        "inputs": sorted(set(args.inputs)), "outputs": sorted(set(args.outputs)),
    })
    log.info("executed %s → %s", source, args.executed)
    return 0


def provenance_path(executed: str | Path) -> Path:
    """Where ``diffact notebook`` records what produced a figure: beside the executed notebook.

    The paper_figures index (``diffact figures-index``) reads these files to name each output's rule and inputs.
    """
    executed = Path(executed)
    return executed.with_name(executed.stem + ".provenance.json")


def _register_figures_index(subparsers) -> None:
    p = subparsers.add_parser("figures-index", help="write the index of regenerated paper figures and tables")
    p.add_argument("--figures", default="paper_figures/demo", help="folder of regenerated figures and tables")
    p.add_argument("--provenance", default="results/notebooks", help="folder of the notebooks' provenance files")
    p.add_argument("--profile", default="demo", help="the active profile's name (shown in the index)")
    p.add_argument("--out", default=None, help="index file (default: <figures>/README.md)")
    p.set_defaults(func=cmd_figures_index)


def cmd_figures_index(args) -> int:
    from pathlib import Path

    from diffact.utils.errors import ConfigError
    from diffact.viz.index import write_index

    if not Path(args.figures).is_dir():
        raise ConfigError(f"--figures {args.figures}: no such folder")
    write_index(args.out or Path(args.figures) / "README.md", args.figures, args.provenance, args.profile)
    return 0

"""CLI of the figures:

* ``diffact notebook``      — run a jupytext ``.py`` notebook with papermill (rules call it) and record its
  provenance;
* ``diffact figures-index`` — write paper_figures/<profile>/README.md, the index of the paper's 24 items;
* ``diffact kernel``        — the notebooks' Jupyter kernel (:mod:`diffact.viz.kernel`; ``--install`` writes its
  kernelspec);
* ``diffact figure-maps``   — the PCA maps a figure draws (Fig 3 style), from a store or streamed from the model, so
  the figure's notebook reads a small file instead of the store.
"""

from __future__ import annotations

import logging
import sys
import tempfile
from pathlib import Path

from diffact.viz.kernel import KERNEL

log = logging.getLogger(__name__)


def register(subparsers) -> None:
    _register_notebook(subparsers)
    _register_kernel(subparsers)
    _register_figures_index(subparsers)
    _register_figure_maps(subparsers)


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


def _register_kernel(subparsers) -> None:
    p = subparsers.add_parser("kernel", help="the notebooks' Jupyter kernel (kernelspec diffact): an IPython kernel, "
                                             "forked from the preload server when one runs")
    p.add_argument("-f", dest="connection_file", help="the kernel's connection file (Jupyter passes it)")
    p.add_argument("--install", action="store_true",
                   help=f"instead: install the {KERNEL!r} kernelspec (into --prefix, default this environment)")
    p.add_argument("--prefix", default=None, help="with --install: the environment prefix (default: sys.prefix)")
    p.set_defaults(func=cmd_kernel)


def cmd_kernel(args) -> int:
    from diffact.utils.errors import ConfigError
    from diffact.viz import kernel

    if args.install:
        log.info("installed the %s kernelspec in %s", KERNEL, kernel.install_kernelspec(args.prefix))
        return 0
    if not args.connection_file:
        raise ConfigError("diffact kernel: give -f CONNECTION_FILE (Jupyter starts it so), or --install")
    return kernel.run_kernel(args.connection_file)


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


def _register_figure_maps(subparsers) -> None:
    from diffact.extract.commands import add_extraction_args

    p = subparsers.add_parser("figure-maps", help="PCA → RGB maps of a few images' activations (diffact.viz."
                                                  "figure_maps), from a store (--store) or streamed from the model "
                                                  "(the arguments of diffact extract instead of --store)")
    p.add_argument("--store", help="feature store folder")
    add_extraction_args(p, required=False)  # streaming: the store's own extract arguments, so the features are its
    p.add_argument("--images", type=int, default=2, help="the first N images of the store (default 2)")
    p.add_argument("--show", nargs="*", default=[], metavar="LAYER",
                   help="the activations to map (default: every one of the store or layer set)")
    p.add_argument("--out", required=True, help="NPZ")
    p.set_defaults(func=cmd_figure_maps)


def cmd_figure_maps(args) -> int:
    from diffact.utils.errors import ConfigError
    from diffact.viz.figure_maps import FigureMapRecorder

    if args.images < 1:
        raise ConfigError(f"figure-maps --images must be ≥ 1, got {args.images}")
    if args.store:
        if args.model:
            raise ConfigError("figure-maps: --store and --model exclude each other (read a store, or extract from the "
                              "model without storing)")
        from diffact.analysis.plots import store_image_paths
        from diffact.extract.store import FeatureStore

        store = FeatureStore.open(args.store)
        image_ids, layers = store.image_ids()[: args.images], store.layers
        paths = store_image_paths(store, image_ids)
        features_of = store.read_layer
    else:
        from diffact.extract.commands import images_from_args, require_stream_args, streamed_extraction_from_args

        require_stream_args(args, "figure-maps")
        images = images_from_args(args)
        image_ids, paths = [i for i, _ in images][: args.images], dict(images)
        source = streamed_extraction_from_args(args)
        layers, features_of = source.layers, _streamed_reader(source)
    unknown = sorted(set(args.show) - set(layers))
    if unknown:
        raise ConfigError(f"figure-maps --show: {', '.join(unknown)} not among the {len(layers)} activations "
                          f"{'of the store' if args.store else 'of --layers'}")
    shown = [n for n in args.show] or list(layers)
    recorder = FigureMapRecorder(image_ids)
    recorder.read(features_of, shown)
    recorder.save(args.out, {i: paths.get(i) for i in image_ids})
    log.info("wrote %s: PCA maps of %d image(s) × %d activations", args.out, len(image_ids), len(shown))
    return 0


def _streamed_reader(source):
    """``features_of(image_id, layer)`` of a :class:`diffact.streamed.StreamedExtraction`: each image's batch is
    extracted once, as a store holds it, and read back as float32 (as :meth:`FeatureStore.read_layer`)."""
    held: dict = {}

    def features_of(image_id: str, name: str):
        if image_id not in held:
            held.clear()
            held.update(source.stored_batch(source.batch_of[image_id]))
        return held[image_id][name].float()

    return features_of

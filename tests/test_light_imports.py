"""Light commands start without torch (issue #19 point 1: most demo jobs are a few seconds, mostly start-up).

Every ``diffact`` job builds the whole parser (``diffact.cli.build_parser``), so a command module's ``register``
that reads a default from a module importing torch made every job, `diffact --help` included, import torch
(~1 CPU second here). The settings the parsers read live in modules without torch (``extract.settings``,
``models.control_config``, ``tasks.correspondence.settings``, ``tasks.scarce.settings``); the light commands'
handlers (tables, set choice, notebooks runner, figures index, demo data builders, the workflow's planning) import
no torch either. Each check runs in a fresh interpreter, since this test session has torch loaded already.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

HEAVY = ("torch", "diffusers", "transformers", "mmseg", "mmengine")

# The modules the light commands' handlers import (see each cmd_* in the command modules), and the workflow package
# Snakemake imports to plan the DAG.
LIGHT_MODULES = (
    "diffact.cli",
    "diffact.workflow",
    "diffact.budget",
    "diffact.usage",
    "diffact.extract.settings",
    "diffact.extract.layersets",
    "diffact.data.demo_seg",  # make-demo-seg
    "diffact.data.demo_ade",  # make-demo-ade
    "diffact.data.demo_spair",  # make-demo-spair
    "diffact.analysis.property_runs",  # properties-table (merge_property_tables)
    "diffact.analysis.availability",  # properties-unavailable
    "diffact.analysis.compare",  # scarce-compare
    "diffact.tasks.correspondence.practical",  # practical-set
    "diffact.tasks.correspondence.table1",  # corr-table1
    "diffact.viz.index",  # figures-index
    "diffact.viz.commands",  # notebook (the runner; the kernel imports what its notebook needs)
)


def heavy_modules_after(code: str) -> list[str]:
    """The heavy libraries imported (in ``sys.modules``, not blocked as None) after ``code`` in a fresh interpreter."""
    probe = f"{code}\nimport json, sys\nprint(json.dumps([m for m in {HEAVY!r} if sys.modules.get(m) is not None]))"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_building_the_parser_imports_no_torch():
    # = what `diffact --help` and every job do before running their command
    assert heavy_modules_after("from diffact.cli import build_parser; build_parser()") == []


@pytest.mark.parametrize("module", LIGHT_MODULES)
def test_light_command_modules_import_no_torch(module):
    assert heavy_modules_after(f"import {module}") == []


def test_the_moved_settings_are_the_ones_the_runs_use():
    # The parsers read the defaults from the light modules; the heavy modules must keep using the same classes.
    from diffact.extract import pipeline, run, settings, store
    from diffact.models import control_config, control_unet
    from diffact.tasks.correspondence import aggregation, matching
    from diffact.tasks.correspondence import settings as corr_settings
    from diffact.tasks.scarce import ensemble, pipeline as scarce_pipeline, settings as scarce_settings

    assert pipeline.ExtractionSettings is settings.ExtractionSettings
    assert run.store_key is settings.store_key and store.settings_key is settings.settings_key
    assert control_unet.ControlConfig is control_config.ControlConfig
    assert aggregation.AggregationTrainSettings is corr_settings.AggregationTrainSettings
    assert matching.PAPER_EVAL_SIZE == aggregation.PAPER_EVAL_SIZE == 512  # docs/paper.md §2.8
    assert ensemble.EnsembleTrainSettings is scarce_settings.EnsembleTrainSettings
    assert scarce_pipeline.ScarceConfig is scarce_settings.ScarceConfig


def test_a_demo_data_builder_runs_without_torch(tmp_path):
    # The whole command, not just its imports: torch made unimportable, make-demo-seg still writes its dataset.
    code = ("import sys; sys.modules['torch'] = None\n"
            "from diffact.cli import main\n"
            f"code = main(['make-demo-seg', '--kind', 'simple', '--out', {str(tmp_path / 'seg')!r}, '--size', '32', "
            "'--train', '2', '--test', '1'])\n"
            "assert code == 0, code")
    assert heavy_modules_after(code) == []
    assert any((tmp_path / "seg").rglob("*.png"))


NOTEBOOK = """# ---
# jupyter:
#   kernelspec:
#     display_name: diffact
#     language: python
#     name: diffact
# ---

# %% tags=["parameters"]
value = 1
out_stem = "unused"

# %%
from pathlib import Path

Path(out_stem + ".txt").write_text(str(value * 2))
"""


def test_the_notebook_runner_skips_the_iri_grammar_and_writes_a_valid_notebook(tmp_path):
    # jsonschema compiles rfc3987_syntax's grammar at import (1.1 of the runner's 1.5 CPU s of imports, measured);
    # nbformat never checks formats, so the runner hides it. The executed notebook must still validate and run.
    source = tmp_path / "tiny.py"
    source.write_text(NOTEBOOK)
    executed = tmp_path / "tiny.ipynb"
    code = ("from diffact.cli import main\n"
            f"code = main(['notebook', {str(source)!r}, '--executed', {str(executed)!r}, "
            f"'--outputs', {str(tmp_path / 'result.txt')!r}, '-p', 'value=21'])\n"
            "assert code == 0, code\n"
            "import sys\n"
            "assert sys.modules.get('rfc3987_syntax') is None, 'the IRI grammar was compiled'")
    assert heavy_modules_after(code) == []
    assert (tmp_path / "result.txt").read_text() == "42"
    import nbformat

    nbformat.validate(nbformat.read(executed, as_version=4))

"""Determinism (issue #11): the same settings give the same bytes. A small slice of the demo (train a demo
model, make the demo SPair tree, extract a feature store, score it with NN PCK) runs twice into two clean
results folders through the CLI; every file must be byte-identical. docs/determinism.md says why this
holds (seeded draws, pinned thread counts, deterministic kernels) and where it stops (other CPUs, GPUs)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from diffact.utils.io import atomic_path


def demo_slice(cli, workdir: Path, monkeypatch) -> None:
    """The slice in ``workdir``/results, with relative paths as the workflow passes them (stores record
    their model and dataset paths, which must not differ between the two runs)."""
    workdir.mkdir(parents=True)
    monkeypatch.chdir(workdir)
    results = Path("results")
    model, data = results / "models" / "sd15-tiny", results / "data" / "spair-demo"
    store = results / "features" / "spair" / "sd15-tiny" / "legacy"
    steps = [
        ("build-demo-model", "--arch", "sd15", "--out", model, "--image-size", 32, "--batch-size", 2,
         "--vae-steps", 2, "--unet-steps", 3, "--no-progress", "--loss-csv", results / "models" / "sd15-tiny.loss.csv"),
        ("make-demo-spair", "--out", data, "--seed", 0, "--n-images", 2, "--pairs-per-image", 3, "--image-size", 48),
        ("extract", "--model", model, "--family", "sd15", "--layers", "legacy", "--dataset-kind", "spair",
         "--dataset-root", data, "--split", "test", "--t", 50, "--image-size", 32, "--prompt", "a photo",
         "--batch-size", 2, "--device", "cpu", "--out", store),
        ("pck-screen", "--store", store, "--dataset-root", data, "--split", "test", "--eval-size", 32,
         "--model-name", "sd15-tiny", "--threads", 1, "--out", results / "correspondence" / "nn_pck.csv"),
    ]
    for args in steps:
        done = cli(*args)
        assert done.returncode == 0, (args[0], done.stderr[-2000:])


def tree_bytes(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow
def test_demo_slice_twice_gives_identical_files(cli, tmp_path, monkeypatch):
    threads = torch.get_num_threads()
    demo_slice(cli, tmp_path / "first", monkeypatch)
    demo_slice(cli, tmp_path / "second", monkeypatch)
    assert torch.get_num_threads() == threads  # training pins its own thread count and restores the caller's

    first, second = tree_bytes(tmp_path / "first" / "results"), tree_bytes(tmp_path / "second" / "results")
    assert sorted(first) == sorted(second)
    assert any(name.endswith(".safetensors") for name in first) and "correspondence/nn_pck.csv" in first
    different = [name for name in first if first[name] != second[name]]
    assert not different, f"not byte-identical: {different[:10]}"
    # Nothing of the run's wall clock leaks into a result table (it would differ between the two runs).
    header = first["correspondence/nn_pck.csv"].decode().splitlines()[0].split(",")
    assert not {"seconds", "keypoints_per_s", "elapsed_s"} & set(header)


def test_result_files_get_ordinary_permissions(tmp_path):
    """Temporary files are created 0600 (mkstemp); a published result gets 0666 minus the umask, as any
    file the user writes, so a shared results folder stays readable by the group."""
    import os

    mask = os.umask(0o022)
    try:
        with atomic_path(tmp_path / "table.csv") as tmp:
            tmp.write_text("a,b\n")
    finally:
        os.umask(mask)
    assert (tmp_path / "table.csv").stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize("fmt", ["pdf", "svg"])
def test_figures_are_byte_identical_whenever_they_are_made(tmp_path, monkeypatch, fmt):
    """matplotlib stamps PDF/SVG files with the time (SOURCE_DATE_EPOCH when set) and salts SVG ids randomly;
    ``save_figure`` removes both, so a rerun's figure is the same file."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from diffact.utils.io import save_figure

    fig, ax = plt.subplots(figsize=(2, 2))
    ax.plot([0, 1, 3], label="curve")
    ax.legend()
    for epoch, name in (("0", "first"), ("86400", "second")):
        monkeypatch.setenv("SOURCE_DATE_EPOCH", epoch)  # a day apart
        save_figure(fig, tmp_path / f"{name}.{fmt}")
    plt.close(fig)
    assert (tmp_path / f"first.{fmt}").read_bytes() == (tmp_path / f"second.{fmt}").read_bytes()

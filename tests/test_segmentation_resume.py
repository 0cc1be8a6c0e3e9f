"""``diffact seg-train --resume`` (the paper profile's ``segmentation.resume``) under torch's safe loading: an
interrupted demo run continues from its last checkpoint and ends exactly where an uninterrupted run ends; a
checkpoint from elsewhere is refused with one line; and a training batch of 1 is refused before training."""

from __future__ import annotations

import math
from pathlib import Path

import pandas as pd
import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmseg.registry import HOOKS

REPO = Path(__file__).resolve().parents[1]
DEMO_CONFIG = REPO / "config" / "mmseg" / "demo" / "ade_demo.py"
# A checkpoint after iteration 2 (and the last), killed after it. Few checkpoints: mmengine formats the whole config
# with yapf for each one (a second or two).
ITERS, CHECKPOINT_EVERY, KILLED_AFTER = 3, 2, 2
# Small heads; last_norm init so that the ResBlocks' convolutions train too and the weight comparison covers them.
OPTIONS = [f"default_hooks.checkpoint.interval={CHECKPOINT_EVERY}", "model.decode_head.channels=16",
           "model.auxiliary_head.channels=16", "model.backbone.resblock_init=last_norm"]


class Interrupted(Exception):
    """Stands for the job being killed."""


@HOOKS.register_module(force=True)
class InterruptAfterIter(Hook):
    """Stops training right after iteration ``iters`` (and after the checkpoint hook saved it)."""

    priority = "LOWEST"

    def __init__(self, iters: int):
        self.iters = iters

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        if runner.iter + 1 >= self.iters:
            raise Interrupted(f"killed after iteration {self.iters}")


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    from diffact.data.demo_ade import DemoAdeConfig, make_demo_ade

    return make_demo_ade(tmp_path_factory.mktemp("seg") / "ade-demo", DemoAdeConfig(size=32, n_train=2, n_val=1))


@pytest.fixture
def seg_train(cli, tiny_pipeline_dirs, demo_root, tmp_path):
    """``diffact seg-train`` of the demo config on the tiny SD1.5 pipeline, in work dir ``tmp_path/<name>``."""

    def run(name, *extra, options=()):
        work = tmp_path / name
        return cli("seg-train", DEMO_CONFIG, "--work-dir", work, "--out", tmp_path / f"{name}.csv", "--model",
                   tiny_pipeline_dirs["sd15"], "--layers", "legacy", "--data-root", demo_root, "--iters", ITERS,
                   "--threads", "1", *extra, "--cfg-options", *OPTIONS, *options), work

    return run


def _weights(path):
    from diffact.tasks.segmentation.checkpoints import checkpoint_globals

    with torch.serialization.safe_globals(checkpoint_globals()):
        return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def _error_line(stderr: str) -> str:
    """The CLI's one error line (stderr also carries the log)."""
    (line,) = [x for x in stderr.splitlines() if x.startswith("diffact seg-train: error:")]
    return line


def _same(a, b) -> bool:
    return (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)) or a == b


@pytest.mark.slow
def test_resume_continues_from_the_last_checkpoint_and_matches_an_uninterrupted_run(seg_train, tmp_path):
    from diffact.tasks.segmentation.checkpoints import allowed_global_names

    validate = "train_cfg.val_interval=1"  # a history of 3 validations; the kill comes before the second
    full, full_dir = seg_train("full", options=[validate])
    assert full.returncode == 0, full.stderr
    with pytest.raises(Interrupted):
        seg_train("part", options=[validate, f"custom_hooks=[{{type: InterruptAfterIter, iters: {KILLED_AFTER}}}]"])
    part_dir = tmp_path / "part"
    assert sorted(p.name for p in part_dir.glob("*.pth")) == [f"iter_{KILLED_AFTER}.pth"]
    # What the allowlist admits is all an mmengine checkpoint needs beyond torch's defaults (see checkpoints.py).
    needed = set(torch.serialization.get_unsafe_globals_in_checkpoint(part_dir / f"iter_{KILLED_AFTER}.pth"))
    assert "mmengine.logging.history_buffer.HistoryBuffer" in needed and needed <= allowed_global_names()

    resumed, _ = seg_train("part", "--resume", options=[validate])
    assert resumed.returncode == 0, resumed.stderr
    # The history too: the validation before the checkpoint kept, the one the kill prevented (mmengine writes the
    # checkpoint of iteration 2 before validating it, and a resume does not validate it) run first, then the rest.
    history = {name: (tmp_path / f"{name}.history.csv").read_text() for name in ("full", "part")}
    assert [line.split(",")[0] for line in history["full"].splitlines()] == ["iteration", "1", "2", "3"]
    assert history["part"] == history["full"]
    a, b = pd.read_csv(tmp_path / "full.csv").iloc[0], pd.read_csv(tmp_path / "part.csv").iloc[0]
    assert (a["trained_iters"], b["trained_iters"]) == (ITERS, ITERS - KILLED_AFTER)  # resumed at iteration 2
    scores = ["miou", "macc", "aacc", *(c for c in a.index if c.startswith(("iou.", "acc.")))]
    assert all(_same(a[c], b[c]) for c in scores), {c: (a[c], b[c]) for c in scores if not _same(a[c], b[c])}
    wa, wb = _weights(full_dir / f"iter_{ITERS}.pth"), _weights(part_dir / f"iter_{ITERS}.pth")
    assert wa.keys() == wb.keys()
    assert [k for k in wa if not torch.equal(wa[k], wb[k])] == []


@pytest.mark.slow
def test_the_final_checkpoint_holds_the_trained_weights_only(seg_train, tmp_path):
    """Issue #19 (disk): a checkpoint holds no frozen diffusion weight (the pipelines live outside the module tree),
    and the last iteration's, the one a paper run keeps, no optimizer state either (2/3 of its bytes); an earlier
    one keeps it for --resume, and --resume of the finished run reads the weights and gives the same scores."""
    from diffact.tasks.segmentation.checkpoints import checkpoint_globals

    def load(path):
        with torch.serialization.safe_globals(checkpoint_globals()):
            return torch.load(path, map_location="cpu", weights_only=True)

    full, full_dir = seg_train("full", options=["default_hooks.checkpoint.max_keep_ckpts=-1"])
    assert full.returncode == 0, full.stderr
    earlier, final = load(full_dir / f"iter_{CHECKPOINT_EVERY}.pth"), load(full_dir / f"iter_{ITERS}.pth")
    assert "optimizer" in earlier and "optimizer" not in final
    trainable = ("backbone.layer_blocks.", "backbone.level_blocks.", "decode_head.", "auxiliary_head.")
    assert final["state_dict"] and all(k.startswith(trainable) for k in final["state_dict"])
    assert final["state_dict"].keys() == earlier["state_dict"].keys()
    weights = sum(t.numel() * t.element_size() for t in final["state_dict"].values())
    moments = sum(t.numel() * t.element_size() for state in earlier["optimizer"]["state"].values()
                  for t in state.values() if torch.is_tensor(t) and t.ndim > 0)
    assert (full_dir / f"iter_{ITERS}.pth").stat().st_size < weights + moments / 4
    before = (tmp_path / "full.csv").read_text()
    again, _ = seg_train("full", "--resume", options=["default_hooks.checkpoint.max_keep_ckpts=-1"])
    assert again.returncode == 0, again.stderr
    a, b = pd.read_csv(pd.io.common.StringIO(before)).iloc[0], pd.read_csv(tmp_path / "full.csv").iloc[0]
    assert b["trained_iters"] == 0
    scores = ["miou", "macc", "aacc", *(c for c in a.index if c.startswith(("iou.", "acc.")))]
    assert all(_same(a[c], b[c]) for c in scores), {c: (a[c], b[c]) for c in scores if not _same(a[c], b[c])}


def _touch(path):  # what unpickling the foreign checkpoint below would run
    Path(path).touch()


class Payload:
    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return _touch, (self.marker,)


class _Toy(BaseModel):
    def __init__(self):
        super().__init__()
        self.linear = torch.nn.Linear(2, 2)

    def forward(self, inputs, data_samples=None, mode="tensor"):
        return self.linear(inputs)


def test_a_checkpoint_from_elsewhere_is_refused_with_one_line(tmp_path):
    """What ``--resume`` or ``load_from`` does with a foreign file: SegRunner.load_checkpoint refuses it with a
    ModelError (which the CLI prints as one line, exit 2) and never runs what it pickles."""
    from diffact.tasks.segmentation.checkpoints import SegRunner
    from diffact.utils.errors import ModelError

    marker, checkpoint = tmp_path / "payload-ran", tmp_path / "iter_2.pth"
    torch.save({"meta": {"epoch": 0, "iter": 2}, "state_dict": {}, "extra": Payload(marker)}, checkpoint)
    runner = SegRunner(model=_Toy(), work_dir=str(tmp_path / "work"))
    with pytest.raises(ModelError) as refused:
        runner.load_checkpoint(str(checkpoint))
    line = str(refused.value)
    assert "\n" not in line and str(checkpoint) in line and f"types {__name__}._touch" in line, line
    assert "HistoryBuffer" in line and "seg-train" in line, line
    assert not marker.exists()
    good = tmp_path / "good.pth"
    torch.save({"meta": {}, "state_dict": _Toy().state_dict()}, good)
    assert runner.load_checkpoint(str(good))["meta"] == {}


def test_a_training_batch_of_one_is_refused_before_training(seg_train, tmp_path):
    result, work = seg_train("batch1", options=["train_dataloader.batch_size=1"])
    assert result.returncode == 2
    line = _error_line(result.stderr)
    assert str(DEMO_CONFIG) in line and "train_dataloader.batch_size = 1" in line, line
    assert "≥ 2" in line and "UPerHead" in line and "BatchNorm" in line, line
    assert not work.exists()  # nothing was built


class _Getattr:
    """Pickles as ``getattr(owner, name)``, the call HistoryBuffer's pickles make for its statistics methods."""

    def __init__(self, owner, name):
        self.owner, self.name = owner, name

    def __reduce__(self):
        return getattr, (self.owner, self.name)


def test_the_allowlisted_getattr_reaches_only_history_buffer_statistics(tmp_path):
    import pickle

    from mmengine.logging.history_buffer import HistoryBuffer

    from diffact.tasks.segmentation.checkpoints import checkpoint_globals

    def load(obj):
        torch.save({"x": obj}, tmp_path / "c.pth")
        with torch.serialization.safe_globals(checkpoint_globals()):
            return torch.load(tmp_path / "c.pth", weights_only=True)["x"]

    assert load(_Getattr(HistoryBuffer, "mean")) is HistoryBuffer.mean
    for owner, name in ((HistoryBuffer, "__init__"), (HistoryBuffer, "update"), (torch.Tensor, "__class__")):
        with pytest.raises(pickle.UnpicklingError, match="not allowed"):
            load(_Getattr(owner, name))


def test_validation_leaves_the_training_random_states_alone():
    import random

    import numpy as np

    from diffact.tasks.segmentation.checkpoints import RandomStatesHook

    hook = RandomStatesHook()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    expected = torch.rand(1), np.random.rand(), random.random()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    hook.before_val(None)
    torch.rand(5), np.random.rand(5), random.random()  # what a validation loop (a dataloader's seed) draws
    hook.after_val(None)
    assert (torch.rand(1), np.random.rand(), random.random()) == expected

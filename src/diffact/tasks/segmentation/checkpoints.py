"""Checkpoints of a segmentation run: loading them under torch's safe unpickler, and resuming exactly.

**Safe loading.** mmengine 0.10.7 reads checkpoints with ``torch.load`` without a ``weights_only`` argument. Since torch 2.6 that
means ``weights_only=True``, and the safe unpickler refuses mmengine's own checkpoints: their message hub pickles
``HistoryBuffer`` objects holding numpy arrays (open-mmlab/mmengine#1655), so ``--resume`` crashed. Instead of
switching safe loading off, :class:`SegRunner` (mmengine's ``Runner``) loads every checkpoint (``--resume`` and
``load_from``) inside ``torch.serialization.safe_globals(checkpoint_globals())``: the unpickler stays the safe one
and admits, for that one load only, exactly the types an mmengine checkpoint holds besides tensors.

Why an allowlist and not full unpickling of checkpoints inside the run's own work dir: the list is short and
stable — mmengine's ``HistoryBuffer``, the numpy pieces its arrays and scalars pickle to (``ndarray``, ``dtype``,
the array and scalar reconstructors, the float64 / int64 dtype classes of the buffers) and a ``getattr`` restricted
to the four statistics methods a buffer pickles (:func:`history_buffer_method`). ``torch.serialization.
get_unsafe_globals_in_checkpoint`` on a checkpoint of the demo run lists these (all but the dtype classes, which
only loading reveals), and every config writes the same ones, because the model, optimizer and scheduler states
are tensors and plain Python values. A path check, in contrast, would fully unpickle whatever file ended
up in a work dir. A checkpoint that needs anything else is refused with one
:class:`~diffact.utils.errors.ModelError` line naming the file and the unexpected types.

**Exact resume.** mmengine restores weights, optimizer, scheduler and message hub, and skips the batches already
trained, but not the global random states: dropout in the heads (torch) and the training augmentations (numpy,
Python ``random``) would draw differently after a restart. :class:`RandomStatesHook` stores the three states in
every checkpoint's ``meta`` and puts them back right before the first batch after the skipped ones is loaded, so
an interrupted run that resumes ends with the same weights as one that never stopped. Validation in between is
made neutral to the random states (it creates a dataloader, which draws a seed), since a resumed run does not
repeat a validation that happened right after the checkpoint was written.
"""

from __future__ import annotations

import logging
from pickle import UnpicklingError  # the error type only: nothing here unpickles outside torch's safe loader
import random
import re

import numpy as np
import torch
from mmengine.hooks import Hook
from mmengine.runner import Runner

from diffact.utils.errors import ModelError

log = logging.getLogger(__name__)

RANDOM_STATES_KEY = "diffact_random_states"


# HistoryBuffer pickles its statistics methods as ``getattr(HistoryBuffer, name)``: these names only.
HISTORY_BUFFER_METHODS = ("min", "max", "current", "mean")


def history_buffer_method(owner, name: str):
    """Stands in for ``builtins.getattr`` while a checkpoint loads; admits the calls mmengine's pickles make.

    Allowing ``getattr`` itself would let a pickle walk from any allowed type to anything reachable through
    attributes (a function's ``__globals__``, modules, ``os``); this one returns only the four statistics methods
    of :class:`~mmengine.logging.history_buffer.HistoryBuffer` that every buffer pickles.
    """
    from mmengine.logging.history_buffer import HistoryBuffer

    if owner is not HistoryBuffer or name not in HISTORY_BUFFER_METHODS:
        raise UnpicklingError(f"getattr({getattr(owner, '__qualname__', type(owner).__name__)}, {name!r}) is "
                                     f"not allowed; only HistoryBuffer.{{{', '.join(HISTORY_BUFFER_METHODS)}}}")
    return getattr(HistoryBuffer, name)


def checkpoint_globals() -> list:
    """What an mmengine checkpoint pickles besides what torch's safe unpickler admits by default.

    Entries are objects or ``(object, pickled name)`` pairs (torch's form for a name that maps elsewhere): the
    numpy reconstructors under numpy 2's names (``numpy._core``) and numpy 1's (``numpy.core``, checkpoints
    written before the numpy 2 pin), and the restricted :func:`history_buffer_method` as ``builtins.getattr``.
    """
    from mmengine.logging.history_buffer import HistoryBuffer
    from numpy._core.multiarray import _reconstruct, scalar

    return [HistoryBuffer, np.ndarray, np.dtype, np.dtypes.Float64DType, np.dtypes.Int64DType, _reconstruct, scalar,
            (_reconstruct, "numpy.core.multiarray._reconstruct"), (scalar, "numpy.core.multiarray.scalar"),
            (history_buffer_method, "builtins.getattr")]


def allowed_global_names() -> set[str]:
    """The pickled names :func:`checkpoint_globals` admits."""
    return {g[1] if isinstance(g, tuple) else f"{g.__module__}.{g.__qualname__}" for g in checkpoint_globals()}


def refused_types(filename, err: Exception) -> list[str]:
    """The types outside :func:`checkpoint_globals` a refused checkpoint needs: the globals its pickle names
    (read statically) and the one class the unpickler stopped at (found only while loading)."""
    try:
        found = set(torch.serialization.get_unsafe_globals_in_checkpoint(filename)) - allowed_global_names()
    except Exception:  # noqa: BLE001 — not a torch.save zip file: only the error tells
        found = set()
    text = str(err)
    found |= set(re.findall(r"GLOBAL (\S+) was not an allowed global", text))
    found |= set(re.findall(r"but got <class '([^']+)'>", text))
    return sorted(found)


def load_refusal(filename, err: Exception) -> str:
    """The one-line reason a checkpoint was refused."""
    types = refused_types(filename, err)
    if types:
        what = f"types {', '.join(types)}"
    else:  # torch's message, from its "WeightsUnpickler error:" line on, as one line
        text = str(err).split("WeightsUnpickler error:")[-1]
        what = " ".join(line.strip() for line in text.splitlines() if line.strip() and "documentation" not in line)
    return (f"checkpoint {filename} was refused by torch's safe loading: it needs {what}, but an mmengine "
            "checkpoint holds only tensors, plain Python values, numpy arrays and mmengine's HistoryBuffer; "
            "resume only from checkpoints a diffact seg-train run wrote")


class SegRunner(Runner):
    """mmengine's ``Runner`` whose checkpoint loads admit exactly :func:`checkpoint_globals` (see module doc)."""

    def load_checkpoint(self, filename, *args, **kwargs):
        with torch.serialization.safe_globals(checkpoint_globals()):
            try:
                return super().load_checkpoint(filename, *args, **kwargs)
            except UnpicklingError as err:
                raise ModelError(load_refusal(filename, err)) from None


def capture_random_states() -> dict:
    """torch's (CPU and every CUDA device), numpy's and Python's global random states, as tensors and plain values
    (safe to unpickle)."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    return {"torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                      "has_gauss": int(has_gauss), "gauss": float(gauss)},
            "python": {"version": version, "internal": list(internal), "gauss_next": gauss_next}}


def restore_random_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda") or []
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    p = states["python"]
    random.setstate((p["version"], tuple(p["internal"]), p["gauss_next"]))


class _RestoreBeforeBatch:
    """The train loop's batch iterator, restoring the random states before batch ``index`` is loaded."""

    def __init__(self, iterator, index: int, states: dict):
        self._iterator, self._index, self._states, self._count = iterator, index, states, 0

    def __iter__(self):
        return self

    def __next__(self):
        if self._count == self._index and self._states is not None:
            restore_random_states(self._states)
            self._states = None
        self._count += 1
        return next(self._iterator)

    def __getattr__(self, name):  # only called for names not set in __init__
        if name.startswith("_") and name in ("_iterator", "_index", "_states", "_count"):
            raise AttributeError(name)
        return getattr(self._iterator, name)


class RandomStatesHook(Hook):
    """Random states into every checkpoint, and back after a resume (see the module docstring)."""

    priority = "VERY_LOW"

    def __init__(self) -> None:
        self._resumed: dict | None = None
        self._before_val: dict | None = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        checkpoint.setdefault("meta", {})[RANDOM_STATES_KEY] = capture_random_states()

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._resumed = checkpoint.get("meta", {}).get(RANDOM_STATES_KEY)

    def before_train(self, runner) -> None:
        if runner.iter == 0:
            return
        if self._resumed is None:
            log.warning("checkpoint without random states (not written by diffact seg-train): training continues "
                        "from iteration %d, but not with the random draws of an uninterrupted run", runner.iter)
            return
        loop = runner.train_loop
        # The loop first advances the iterator past the runner.iter batches already trained, then loads the next.
        loop.dataloader_iterator = _RestoreBeforeBatch(loop.dataloader_iterator, runner.iter, self._resumed)

    def before_val(self, runner) -> None:
        self._before_val = capture_random_states()

    def after_val(self, runner) -> None:
        if self._before_val is not None:
            restore_random_states(self._before_val)
            self._before_val = None



class FinalCheckpointHook(Hook):
    """The checkpoint of the last iteration without the optimizer state (issue #19 point 2: disk).

    A checkpoint already holds only what training changes: the frozen diffusion pipelines live outside the module
    tree (:mod:`.backbone`), so its weights are the ResBlocks and heads alone. Two thirds of its bytes are AdamW's
    two moments, which only a continued training reads; after the last iteration nothing continues, and
    ``--resume`` of a finished run reads the weights only (mmengine skips an absent ``optimizer``). The final
    checkpoint, the one ``max_keep_ckpts=1`` keeps, is therefore written without them; every earlier one keeps them,
    so an interrupted run resumes exactly (:class:`RandomStatesHook`)."""

    priority = "VERY_LOW"

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if int(checkpoint.get("meta", {}).get("iter", -1)) >= int(runner.max_iters) and "optimizer" in checkpoint:
            del checkpoint["optimizer"]
            log.info("final checkpoint (iteration %d) written without the optimizer state: training is over",
                     runner.max_iters)

"""The paper's trained aggregation for semantic correspondence (algorithm ``conv``, docs/paper.md §2.8; from DHF).

Per image, every activation of a layer set is resized bilinearly to a square grid (paper: 128×128,
``F.interpolate(mode="bilinear")``) and the maps are concatenated along channels — for a multi-model set
(Ours-XL-t) the models' maps are concatenated in the order given. The only trainable parameters are
one ``Conv2d(C, C, 3, padding=1, bias=False)`` (``C // 2`` output channels when several models are
concatenated). Training minimises a CLIP-style symmetric cross entropy over cosine similarities with a
fixed ``logit_scale = log(1/0.07)``: each source keypoint's row of similarities to every target position
must pick the target keypoint's position, and the reverse. Keypoints are rescaled to the grid and
rounded (DHF's ``rescale_points`` + ``points_to_idxs``). AdamW, lr 5e-4, weight decay 0.01, one pair per
step, 2 epochs × 5000 random pairs, an evaluation every 500 steps (step > 0): features after the conv
are upsampled to 512² and matched by hard nearest neighbour (:mod:`.matching`), PCK pooled over keypoints
(and per image beside it, :mod:`.pck`).

The ``nn`` algorithm is the same pipeline without the conv: the resized, concatenated maps are matched
directly. Features come from feature stores, read lazily, one pair (two images) at a time.

Diffusion noise: GDF (``task-corres.py``) extracts the two images of every training pair and every validation
pair anew, each with a fresh VAE sample and fresh noise, so the conv trains on noise as augmentation and the
paper's "max over 19 validations" is also a max over noise draws. :class:`NoiseDrawFeatures` reproduces that
with K stored draws per image (one store per draw, noise_seed + k), one sampled per image and visit.
"""

from __future__ import annotations

import json
import logging
import math
import time
import weakref
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch import nn

from diffact.data.spair import keypoints_present
from diffact.tasks.correspondence.matching import keypoints_to_eval_pixels, transfer_pair
from diffact.tasks.correspondence.pck import ALPHAS, PER_IMAGE, PCKAccumulator, metric_column
# The training settings live in a module without torch (the command parser reads their defaults).
from diffact.tasks.correspondence.settings import PAPER_EVAL_SIZE, PAPER_FEATURE_SIZE, AggregationTrainSettings  # noqa: F401
from diffact.utils.errors import ConfigError, DataError
from diffact.utils.seeding import derive_seed, numpy_rng

log = logging.getLogger(__name__)

PAPER_TEMPERATURE = 0.07  # docs/paper.md §2.8: logit_scale = log(1/0.07), fixed (not a parameter)
LOGIT_SCALE = math.log(1.0 / PAPER_TEMPERATURE)
DEFAULT_CACHE_BYTES = 2 * 2**30  # resized input maps kept in memory (≈ 8 images at the paper's 3840×128²)

# A feature source: pair → (source C×S×S, target C×S×S) on the aggregation grid.
PairFeatures = Callable[[object], tuple[torch.Tensor, torch.Tensor]]


# ----------------------------------------------------------------------------------------------
# Inputs: resize + concatenate, from feature stores
# ----------------------------------------------------------------------------------------------


def resize_and_concat(maps: Sequence[torch.Tensor], size: int) -> torch.Tensor:
    """C_i×h_i×w_i maps → one (ΣC_i)×size×size map: each bilinearly resized (align_corners=False, as
    upstream's ``F.interpolate(f, (128, 128), mode="bilinear")``), then concatenated in order."""
    if not maps:
        raise DataError("no feature maps to aggregate")
    resized = []
    for feat in maps:
        if feat.ndim != 3:
            raise DataError(f"expected C×H×W feature maps, got shape {tuple(feat.shape)}")
        feat = feat.float()
        if tuple(feat.shape[-2:]) != (size, size):
            feat = F.interpolate(feat[None], (size, size), mode="bilinear", align_corners=False)[0]
        resized.append(feat)
    return torch.cat(resized, dim=0)


def aggregation_out_channels(in_channels: int, n_models: int) -> int:
    """Conv output width: C for one model, C // 2 when several models are concatenated (docs/paper.md §2.8,
    upstream ``out_dim = dim if len(configs) == 1 else dim // 2``)."""
    if n_models < 1:
        raise ConfigError(f"need at least one model, got {n_models}")
    return in_channels if n_models == 1 else max(1, in_channels // 2)


class StorePairFeatures:
    """``features_of(pair)`` for the aggregation: the pair's two images read from one feature store per
    model (lazily, only the named layers), resized to ``size``² and concatenated (stores in order,
    layers in each store's forward order).

    ``layers``: one list per store, or None for all layers of every store. ``cache_bytes``: the resized
    maps of recently used images are kept up to this many bytes (least recently used dropped first), so
    small datasets (the demo) are read once while the paper's 250 MB-per-image inputs stay bounded.
    """

    def __init__(self, stores: Sequence, size: int, layers: Sequence[Sequence[str]] | None = None,
                 device: str | torch.device = "cpu", cache_bytes: int = DEFAULT_CACHE_BYTES):
        from diffact.data.registry import spair_image_id

        if not stores:
            raise ConfigError("StorePairFeatures needs at least one feature store")
        if size < 1:
            raise ConfigError(f"feature size must be positive, got {size}")
        self.stores = list(stores)
        self.layers = [list(s.layers) for s in self.stores] if layers is None else [list(x) for x in layers]
        if len(self.layers) != len(self.stores):
            raise ConfigError(f"got {len(self.layers)} layer lists for {len(self.stores)} stores")
        self.size = int(size)
        self.device = torch.device(device)
        self._image_id = spair_image_id
        self.cache_bytes = int(cache_bytes)
        self._cache: OrderedDict[str, torch.Tensor] = OrderedDict()
        self._cached_bytes = 0

    @property
    def channels(self) -> int:
        return sum(store.channels(names) for store, names in zip(self.stores, self.layers))

    @property
    def n_models(self) -> int:
        return len(self.stores)

    @property
    def resize(self):
        """The stores' resize policy (None: the paper's square stretch); they must agree, or the
        concatenated maps would not cover the same image area."""
        policies = {store.resize for store in self.stores}
        if len(policies) > 1:
            raise ConfigError(f"the feature stores were extracted with different resize policies: {policies}")
        return policies.pop()

    def image(self, category: str, path) -> torch.Tensor:
        image_id = self._image_id(category, path)
        if image_id in self._cache:
            self._cache.move_to_end(image_id)
            return self._cache[image_id]
        maps = []
        for store, names in zip(self.stores, self.layers):
            features = store.read(image_id, names)
            # Resize on the device: at the paper's size (3840 channels → 128²) that is the costly part.
            maps.extend(features[n].to(self.device, non_blocking=True) for n in names)
        result = resize_and_concat(maps, self.size)
        self._remember(image_id, result)
        return result

    def _remember(self, image_id: str, value: torch.Tensor) -> None:
        size = value.numel() * value.element_size()
        if size > self.cache_bytes:
            return
        while self._cached_bytes + size > self.cache_bytes and self._cache:
            _, dropped = self._cache.popitem(last=False)
            self._cached_bytes -= dropped.numel() * dropped.element_size()
        self._cache[image_id] = value
        self._cached_bytes += size

    def __call__(self, pair) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(pair.category, pair.src_path), self.image(pair.category, pair.trg_path)


class NoiseDrawFeatures:
    """``features_of(pair)`` over K noise draws of the same stores: each image of each visit is read from one
    draw, chosen by a seeded generator (``seed``, ``stream``), so a training run sees the diffusion noise as
    augmentation and each validation pass scores other draws, as GDF's per-visit re-extraction does (module
    docstring; ``correspondence.table1.noise: draws``).

    ``draws``: one :class:`StorePairFeatures` per draw, all over the same models and layers. The choices depend
    on the seed and on the order of the calls only, so a rerun visits the same draws."""

    def __init__(self, draws: Sequence[StorePairFeatures], seed: int, stream: str):
        if len(draws) < 1:
            raise ConfigError("NoiseDrawFeatures needs at least one draw")
        layers = {tuple(tuple(x) for x in d.layers) for d in draws}
        if len(layers) > 1 or len({d.channels for d in draws}) > 1:
            raise DataError("the noise draws of a store hold different layers: "
                            + "; ".join(",".join(str(s.root) for s in d.stores) for d in draws))
        self.draws = list(draws)
        self._rng = numpy_rng(seed, "noise-draw", stream)
        self.visits = [0] * len(self.draws)  # images read from each draw (logged, tested)

    @property
    def channels(self) -> int:
        return self.draws[0].channels

    @property
    def n_models(self) -> int:
        return self.draws[0].n_models

    @property
    def layers(self):
        return self.draws[0].layers

    @property
    def resize(self):
        policies = {d.resize for d in self.draws}
        if len(policies) > 1:
            raise ConfigError(f"the noise draws were extracted with different resize policies: {policies}")
        return policies.pop()

    def image(self, category: str, path) -> torch.Tensor:
        draw = int(self._rng.integers(len(self.draws)))
        self.visits[draw] += 1
        return self.draws[draw].image(category, path)

    def __call__(self, pair) -> tuple[torch.Tensor, torch.Tensor]:
        return self.image(pair.category, pair.src_path), self.image(pair.category, pair.trg_path)


# ----------------------------------------------------------------------------------------------
# The network and its loss
# ----------------------------------------------------------------------------------------------


class AggregationNetwork(nn.Module):
    """One 3×3 convolution without bias over the concatenated maps: (B×)C×S×S → (B×)C_out×S×S.

    ``logit_scale`` is a fixed buffer (log(1/0.07)), not trained, as upstream."""

    def __init__(self, in_channels: int, out_channels: int | None = None):
        super().__init__()
        out_channels = in_channels if out_channels is None else out_channels
        if in_channels < 1 or out_channels < 1:
            raise ConfigError(f"channel counts must be positive, got {in_channels} → {out_channels}")
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=1, padding=1, bias=False)
        self.register_buffer("logit_scale", torch.tensor(LOGIT_SCALE), persistent=False)

    @property
    def in_channels(self) -> int:
        return self.conv.in_channels

    @property
    def out_channels(self) -> int:
        return self.conv.out_channels

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        if features.ndim == 3:
            return self.conv(features[None].float())[0]
        return self.conv(features.float())


def seeded_network(in_channels: int, out_channels: int, seed: int) -> AggregationNetwork:
    """The conv with PyTorch's default initialisation drawn from a seed (global RNG left untouched)."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "aggregation-conv"))
        return AggregationNetwork(in_channels, out_channels)


def keypoint_grid_indices(kps: np.ndarray, image_size: Sequence[int], grid: int, resize=None) -> np.ndarray:
    """(N, 2) keypoints (x, y) of a W×H image → (N,) flat indices row·S + col on the S×S grid
    (scaled, clipped to [0, S−1], rounded half to even: DHF's ``points_to_idxs``; ``resize``: the stores'
    policy, None for the paper's square stretch)."""
    pixels = keypoints_to_eval_pixels(kps, image_size, grid, resize)
    return pixels[:, 1] * grid + pixels[:, 0]


def training_targets(pair, grid: int, resize=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Grid indices (src, trg) of the keypoints annotated in both images of a pair."""
    both = keypoints_present(pair.src_kps) & keypoints_present(pair.trg_kps)
    src = keypoint_grid_indices(pair.src_kps[both], pair.src_size, grid, resize)
    trg = keypoint_grid_indices(pair.trg_kps[both], pair.trg_size, grid, resize)
    return torch.as_tensor(src, dtype=torch.long), torch.as_tensor(trg, dtype=torch.long)


def clip_loss(src: torch.Tensor, trg: torch.Tensor, src_idx: torch.Tensor, trg_idx: torch.Tensor,
              logit_scale: float | torch.Tensor = LOGIT_SCALE) -> torch.Tensor:
    """CLIP-style symmetric cross entropy (docs/paper.md §2.8, upstream ``compute_clip_loss``).

    ``src``, ``trg``: C×S×S maps; ``src_idx``/``trg_idx``: (N,) matching grid indices. Logits are
    exp(logit_scale)·cosine similarity; the source keypoints' rows over all S² target positions are
    classified into ``trg_idx`` and the target keypoints' rows over the source positions into
    ``src_idx``; the loss is the mean of the two. Only the N keypoint rows are formed (upstream forms
    the full S²×S² matrix and indexes it: same value, S²/N times less memory)."""
    scale = torch.as_tensor(logit_scale, dtype=torch.float32, device=src.device).exp()
    src_flat = F.normalize(src.reshape(src.shape[0], -1), dim=0)  # C × S²
    trg_flat = F.normalize(trg.reshape(trg.shape[0], -1), dim=0)
    src_idx, trg_idx = src_idx.to(src.device), trg_idx.to(src.device)
    forward_logits = scale * (src_flat[:, src_idx].T @ trg_flat)  # N × S²
    backward_logits = scale * (trg_flat[:, trg_idx].T @ src_flat)
    return (F.cross_entropy(forward_logits, trg_idx) + F.cross_entropy(backward_logits, src_idx)) / 2


# ----------------------------------------------------------------------------------------------
# Training schedule
# ----------------------------------------------------------------------------------------------


def training_pair_order(n_pairs: int, settings: AggregationTrainSettings) -> np.ndarray:
    """Indices of the training pair of every step. Each epoch takes ``pairs_per_epoch`` pairs from a
    seeded random permutation (upstream: ``np.random.permutation(train_anns)[:5000]``); when an epoch
    asks for more pairs than exist (the demo), further permutations are appended."""
    if n_pairs < 1:
        raise DataError("no training pairs")
    order = []
    for epoch in range(settings.epochs):
        rng = numpy_rng(settings.seed, "corr-train-pairs", epoch)
        rounds = math.ceil(settings.pairs_per_epoch / n_pairs)
        epoch_order = np.concatenate([rng.permutation(n_pairs) for _ in range(rounds)])
        order.append(epoch_order[: settings.pairs_per_epoch])
    return np.concatenate(order)


def evaluation_steps(total_steps: int, eval_every: int) -> list[int]:
    """Steps after which the model is evaluated and saved: ``step > 0 and step % eval_every == 0``
    (upstream; 0-based step index, so 10 000 steps every 500 give 19 evaluations, 500 … 9500)."""
    return [s for s in range(1, total_steps) if s % eval_every == 0]


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def pck_columns(alphas: Sequence[float] = ALPHAS) -> list[str]:
    """The PCK columns of an evaluation row: each pooled column followed by its per-image twin."""
    return [metric_column(kind, alpha) + suffix for kind in ("img", "bbox") for alpha in alphas
            for suffix in ("", PER_IMAGE)]


class ConvOutputs:
    """``network(features)`` of one evaluation, kept per input tensor: the feature sources hand out the same tensor
    object for the same image (and noise draw) while they cache it, so an image in several pairs (the demo's val
    sources are each in 3 of the 18 pairs) is convolved once per evaluation. Entries are found by the input's
    identity, checked through a weak reference (a dropped input is never matched by a new tensor at its address),
    and hold only the outputs, and only while their inputs live (so never more than the sources keep), up to
    ``max_bytes`` (least recently used dropped first). Same network, same input:
    the same output bits, so the scores are those of convolving every visit."""

    def __init__(self, network: AggregationNetwork, max_bytes: int = DEFAULT_CACHE_BYTES):
        self.network = network
        self.max_bytes = int(max_bytes)
        self.calls = 0  # convolutions run (tested)
        self._entries: OrderedDict[int, tuple[weakref.ref, torch.Tensor]] = OrderedDict()
        self._bytes = 0

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        key = id(features)
        entry = self._entries.get(key)
        if entry is not None and entry[0]() is features:
            self._entries.move_to_end(key)
            return entry[1]
        self.calls += 1
        output = self.network(features)
        self._forget(key)
        for dead in [k for k, (ref, _) in self._entries.items() if ref() is None]:  # inputs the sources dropped
            self._forget(dead)
        size = output.numel() * output.element_size()
        while self._entries and self._bytes + size > self.max_bytes:
            self._forget(next(iter(self._entries)))
        if size <= self.max_bytes:
            self._entries[key] = (weakref.ref(features), output)
            self._bytes += size
        return output

    def _forget(self, key: int) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            self._bytes -= entry[1].numel() * entry[1].element_size()


@torch.no_grad()
def evaluate(pairs: Sequence, features_of: PairFeatures, network: AggregationNetwork | None, eval_size: int,
             alphas: Sequence[float] = ALPHAS) -> dict:
    """PCK of hard-NN transfer on ``pairs`` with the conv applied (``network``) or not (``nn``).

    Returns the summary (pooled ``pck_img@0.10`` … each with its ``pck_img@0.10_per_image`` twin, n_pairs,
    n_keypoints; :meth:`PCKAccumulator.summary`) plus ``seconds`` and
    ``keypoints_per_s`` (annotated keypoints scored per second, feature reading included)."""
    convolved = None
    if network is not None:
        network.eval()
        convolved = ConvOutputs(network)
    resize = getattr(features_of, "resize", None)  # StorePairFeatures: the stores' resize policy
    acc = PCKAccumulator(alphas=tuple(alphas))
    start = time.perf_counter()
    for pair in pairs:
        src, trg = features_of(pair)
        if convolved is not None:
            src, trg = convolved(src), convolved(trg)
        acc.add_spair_pair(pair, transfer_pair(pair, src, trg, eval_size=eval_size, resize=resize))
    seconds = time.perf_counter() - start
    summary = acc.summary()
    summary["seconds"] = seconds
    summary["keypoints_per_s"] = acc.n_keypoints / seconds if seconds > 0 else float("nan")
    return summary


# ----------------------------------------------------------------------------------------------
# Checkpoints (safetensors, atomic)
# ----------------------------------------------------------------------------------------------


def checkpoint_name(step: int) -> str:
    return f"step_{step:06d}.safetensors"


def save_checkpoint(path: str | Path, network: AggregationNetwork, meta: Mapping) -> Path:
    """Write the conv weight and ``meta`` (JSON in the safetensors header) atomically."""
    from safetensors.torch import save_file

    from diffact.utils.io import atomic_path

    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({"conv.weight": network.conv.weight.detach().cpu().contiguous()}, str(tmp),
                  metadata={"meta": json.dumps(dict(meta), sort_keys=True, default=str)})
    return path


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[AggregationNetwork, dict]:
    """The network and its metadata from :func:`save_checkpoint`; DataError naming the file otherwise."""
    from safetensors import safe_open

    path = Path(path)
    if not path.is_file():
        raise DataError(f"aggregation checkpoint {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as f:
            weight = f.get_tensor("conv.weight")
            meta = json.loads((f.metadata() or {}).get("meta", "{}"))
    except Exception as err:  # safetensors raises its own error types for damaged files
        raise DataError(f"{path}: not a readable aggregation checkpoint ({err})") from err
    out_channels, in_channels = int(weight.shape[0]), int(weight.shape[1])
    network = AggregationNetwork(in_channels, out_channels)
    network.conv.weight.data.copy_(weight)
    return network.to(device), meta


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


class BestCheckpoint:
    """Keeps on disk only the checkpoint :func:`diffact.tasks.correspondence.protocol.select_checkpoint` would
    select by ``metric`` (the highest value, the earliest on ties, NaN never chosen over a number): the heldout
    protocol reads that one alone, and the paper protocol none (issue #19: 19 → 1 per run)."""

    def __init__(self, metric: str):
        self.metric = metric
        self.path: Path | None = None
        self.value = float("nan")

    def offer(self, path: Path, row: Mapping) -> None:
        if self.metric not in row:
            raise ConfigError(f"--keep-best {self.metric}: not a validation column (e.g. pck_img@0.10)")
        value = float(row[self.metric])
        if self.path is None or (not math.isnan(value) and (math.isnan(self.value) or value > self.value)):
            if self.path is not None:
                self.path.unlink()
            self.path, self.value = path, value
        else:
            path.unlink()


def train_aggregation(
    train_pairs: Sequence,
    train_features: PairFeatures,
    val_pairs: Sequence,
    val_features: PairFeatures,
    in_channels: int,
    settings: AggregationTrainSettings,
    *,
    n_models: int = 1,
    checkpoint_dir: str | Path | None = None,
    checkpoint_meta: Mapping | None = None,
    device: str | torch.device = "cpu",
    alphas: Sequence[float] = ALPHAS,
    keep_best: str | None = None,
) -> tuple[AggregationNetwork, pd.DataFrame, pd.DataFrame]:
    """Train the conv on ``train_pairs`` and evaluate it on ``val_pairs`` every ``eval_every`` steps.

    ``*_features``: pair → (src, trg) C×S×S maps on the ``feature_size`` grid (e.g.
    :class:`StorePairFeatures`). With ``checkpoint_dir`` a checkpoint is saved at every evaluation; with
    ``keep_best`` (a validation column) only the one the heldout protocol selects stays on disk
    (:class:`BestCheckpoint`), while every evaluation row still names its checkpoint.
    Returns the final network, the evaluations (one row per evaluation: step, val PCK, mean training
    loss since the previous evaluation, timing, checkpoint file) and the training log (step, pair, loss).
    """
    device = torch.device(device)
    network = seeded_network(in_channels, aggregation_out_channels(in_channels, n_models), settings.seed).to(device)
    optimizer = torch.optim.AdamW(network.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    order = training_pair_order(len(train_pairs), settings)
    eval_at = set(evaluation_steps(len(order), settings.eval_every))
    if not eval_at:
        raise ConfigError(
            f"{len(order)} training steps with eval_every={settings.eval_every} give no evaluation "
            "(evaluations happen at steps > 0 that are multiples of eval_every)")
    train_log, evaluations, recent = [], [], []
    best = BestCheckpoint(keep_best) if keep_best else None
    resize = getattr(train_features, "resize", None)  # StorePairFeatures: the stores' resize policy
    started = time.perf_counter()
    for step, index in enumerate(order):
        pair = train_pairs[int(index)]
        src_idx, trg_idx = training_targets(pair, settings.feature_size, resize)
        loss_value = float("nan")
        if len(src_idx):
            network.train()
            src, trg = train_features(pair)
            loss = clip_loss(network(src.to(device)), network(trg.to(device)), src_idx, trg_idx, network.logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_value = float(loss.detach())
            recent.append(loss_value)
        train_log.append({"step": step, "pair": pair.name, "loss": loss_value})
        if step in eval_at:
            result = evaluate(val_pairs, val_features, network, settings.eval_size, alphas)
            row = {"step": step, "updates": step + 1, "train_loss": float(np.mean(recent)) if recent else float("nan"),
                   **result, "elapsed_s": time.perf_counter() - started}
            if checkpoint_dir is not None:
                name = checkpoint_name(step)
                save_checkpoint(Path(checkpoint_dir) / name, network,
                                {**dict(checkpoint_meta or {}), "step": step, "settings": settings.as_dict()})
                row["checkpoint"] = name
                if best is not None:
                    best.offer(Path(checkpoint_dir) / name, row)
            evaluations.append(row)
            recent = []
            log.info("step %d: train loss %.4f, val PCK@0.1 img %.2f bbox %.2f (%.0f keypoints/s)", step,
                     row["train_loss"], row.get("pck_img@0.10", float("nan")), row.get("pck_bbox@0.10", float("nan")),
                     row["keypoints_per_s"])
    return network, pd.DataFrame(evaluations), pd.DataFrame(train_log)

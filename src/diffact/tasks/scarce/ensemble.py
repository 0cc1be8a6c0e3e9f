"""The 10-MLP pixel-classifier ensemble of DDPM-seg / datasetGAN (paper §2.10).

Each member is ``Linear(C,128)-ReLU-BN-Linear(128,32)-ReLU-BN-Linear(32,K)`` (``256/128`` hidden units when
K ≥ 30), weights N(0, 0.02), biases 0, BatchNorm at its defaults; Adam lr 1e-3, cross-entropy, batch 64,
≤ 100 epochs with DDPM-seg's early stop (:class:`EarlyStop`). Prediction: per-member argmax, then the mode
over members.

The members are trained *together* as one stacked module (:class:`StackedMLP`: every weight has a leading
member axis and each member sees its own random batches). This is the same computation as training them one
after another — BatchNorm statistics are per channel and per member, Adam is element-wise with a shared step
count — but reads every training pixel from the feature store once per epoch instead of once per member.
A member that early-stops keeps the weights it had at that moment (:meth:`StackedMLP.snapshot`), exactly as if
its training loop had ended.
"""

from __future__ import annotations

import logging
from typing import Iterable, Iterator

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

# The settings and the protocol constants live in a module without torch (the command parser reads their defaults).
from diffact.tasks.scarce.settings import EnsembleTrainSettings  # noqa: F401
from diffact.utils.seeding import numpy_rng, torch_generator

log = logging.getLogger(__name__)

INIT_STD = 0.02  # DDPM-seg pixel_classifier.init_weights(init_type="normal", gain=0.02)


def hidden_sizes(num_classes: int) -> tuple[int, int]:
    """(128, 32) for K < 30, else (256, 128) (DDPM-seg ``pixel_classifier``)."""
    return (128, 32) if num_classes < 30 else (256, 128)


def single_mlp(in_channels: int, num_classes: int) -> nn.Sequential:
    """One member as a plain ``nn.Sequential`` (the upstream module), e.g. for export or checks."""
    h1, h2 = hidden_sizes(num_classes)
    return nn.Sequential(
        nn.Linear(in_channels, h1), nn.ReLU(), nn.BatchNorm1d(h1),
        nn.Linear(h1, h2), nn.ReLU(), nn.BatchNorm1d(h2),
        nn.Linear(h2, num_classes),
    )


class StackedLinear(nn.Module):
    """M independent linear layers: (M, B, in) → (M, B, out)."""

    def __init__(self, members: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(members, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(members, 1, out_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.baddbmm(self.bias, x, self.weight)


class StackedBatchNorm(nn.Module):
    """M independent ``BatchNorm1d(F)``: one ``batch_norm`` over the M·F channels of (B, M·F) is the same,
    because batch statistics are taken per channel."""

    def __init__(self, members: int, features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.ones(members, features))
        self.bias = nn.Parameter(torch.zeros(members, features))
        self.register_buffer("running_mean", torch.zeros(members, features))
        self.register_buffer("running_var", torch.ones(members, features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m, b, f = x.shape
        flat = x.transpose(0, 1).reshape(b, m * f)
        # Views of the (M, F) buffers: batch_norm updates the running statistics in place.
        out = F.batch_norm(flat, self.running_mean.view(-1), self.running_var.view(-1), self.weight.view(-1),
                           self.bias.view(-1), self.training, self.momentum, self.eps)
        return out.reshape(b, m, f).transpose(0, 1)


class StackedMLP(nn.Module):
    """M pixel classifiers with stacked weights; input (M, B, C) → logits (M, B, K)."""

    def __init__(self, members: int, in_channels: int, num_classes: int) -> None:
        super().__init__()
        h1, h2 = hidden_sizes(num_classes)
        self.members, self.in_channels, self.num_classes = members, in_channels, num_classes
        self.fc1, self.bn1 = StackedLinear(members, in_channels, h1), StackedBatchNorm(members, h1)
        self.fc2, self.bn2 = StackedLinear(members, h1, h2), StackedBatchNorm(members, h2)
        self.fc3 = StackedLinear(members, h2, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn1(F.relu(self.fc1(x)))
        x = self.bn2(F.relu(self.fc2(x)))
        return self.fc3(x)

    def init_weights(self, seed: int, *keys) -> None:
        """Linear weights ~ N(0, 0.02), biases 0, each member from its own seeded generator."""
        with torch.no_grad():
            for m in range(self.members):
                gen = torch_generator(seed, *keys, "member", m)
                for fc in (self.fc1, self.fc2, self.fc3):
                    fc.weight[m].normal_(0.0, INIT_STD, generator=gen)
                    fc.bias[m].zero_()

    def snapshot(self, member: int) -> dict[str, torch.Tensor]:
        """Copy of one member's parameters and BatchNorm statistics."""
        return {name: t[member].detach().clone() for name, t in self.state_dict().items()}

    def restore(self, member: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for name, t in self.state_dict().items():
                t[member].copy_(state[name])

    def member(self, m: int) -> nn.Sequential:
        """Member ``m`` as a standalone ``nn.Sequential`` (see :func:`single_mlp`), in eval mode."""
        seq = single_mlp(self.in_channels, self.num_classes)
        with torch.no_grad():
            for fc, lin in ((self.fc1, seq[0]), (self.fc2, seq[3]), (self.fc3, seq[6])):
                lin.weight.copy_(fc.weight[m].T)
                lin.bias.copy_(fc.bias[m, 0])
            for bn, norm in ((self.bn1, seq[2]), (self.bn2, seq[5])):
                norm.weight.copy_(bn.weight[m])
                norm.bias.copy_(bn.bias[m])
                norm.running_mean.copy_(bn.running_mean[m])
                norm.running_var.copy_(bn.running_var[m])
        return seq.eval()


class EarlyStop:
    """DDPM-seg's stopping rule (``train_interpreter.py`` train loop), per member.

    From epoch index ``after_epoch + 1`` on (``if epoch > 3``, epochs counted from 0), each batch loss is compared
    with the best batch loss so far: lower → new best and the counter resets, else the counter grows; the
    member stops as soon as the counter exceeds ``patience`` (``break_count > 50``, i.e. on the 51st
    consecutive non-improving batch). The best loss starts at 1e7 and is never reset between epochs.
    """

    def __init__(self, members: int, after_epoch: int = 3, patience: int = 50) -> None:
        self.after_epoch, self.patience = after_epoch, patience
        self.best = np.full(members, 1e7)
        self.count = np.zeros(members, dtype=np.int64)
        self.stopped = np.zeros(members, dtype=bool)

    def update(self, epoch: int, losses) -> np.ndarray:
        """Record one batch loss per member; return the members that stop at this batch."""
        losses = np.asarray(losses, dtype=np.float64)
        newly = np.zeros_like(self.stopped)
        if epoch <= self.after_epoch:
            return newly
        active = ~self.stopped
        better = active & (losses < self.best)
        self.best[better] = losses[better]
        self.count[better] = 0
        self.count[active & ~better] += 1
        newly = active & (self.count > self.patience)
        self.stopped |= newly
        return newly


def member_batches(buffers: Iterable[tuple[torch.Tensor, torch.Tensor]], members: int, batch_size: int,
                   rng: np.random.Generator, drop_last: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Batches for all members at once: (M, B, C) inputs and (M, B) labels, each member with its own order.

    Within an epoch, each member walks through every buffer in its own random order; the rows left over at the
    end of one buffer (fewer than a batch) open the next buffer's first batch, so every pixel is used once per
    epoch per member. The final partial batch is dropped (``drop_last=True``, as the paper's DataLoader).
    The leftover count does not depend on the order, so all members have the same number of batches.
    """
    left_x: torch.Tensor | None = None
    left_y: torch.Tensor | None = None
    for x, y in buffers:
        n = x.shape[0]
        order = torch.from_numpy(np.stack([rng.permutation(n) for _ in range(members)]))  # (M, n)
        start = 0
        if left_x is not None and left_x.shape[1] + n >= batch_size:
            need = batch_size - left_x.shape[1]
            idx = order[:, :need]
            yield torch.cat([left_x, x[idx]], dim=1), torch.cat([left_y, y[idx]], dim=1)
            left_x = left_y = None
            start = need
        while start + batch_size <= n:
            idx = order[:, start : start + batch_size]
            yield x[idx], y[idx]
            start += batch_size
        if start < n:
            idx = order[:, start:]
            rest_x, rest_y = x[idx], y[idx]
            left_x = rest_x if left_x is None else torch.cat([left_x, rest_x], dim=1)
            left_y = rest_y if left_y is None else torch.cat([left_y, rest_y], dim=1)
    if left_x is not None and not drop_last:
        yield left_x, left_y


def train_ensemble(stream, num_classes: int, settings: EnsembleTrainSettings, seed: int = 0, keys: tuple = (),
                   progress: bool = False) -> tuple[StackedMLP, dict]:
    """Train the ensemble on a :class:`~diffact.tasks.scarce.pixels.PixelStream`; return it (eval mode) and a
    log dict (epochs and batches each member trained for, its last loss)."""
    from tqdm.auto import tqdm

    device = torch.device(settings.device)
    model = StackedMLP(settings.members, stream.channels, num_classes)
    model.init_weights(seed, *keys)
    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr)
    stopper = EarlyStop(settings.members, settings.stop_after_epoch, settings.patience)
    snapshots: dict[int, dict[str, torch.Tensor]] = {}
    batches_run = np.zeros(settings.members, dtype=np.int64)
    epochs_run = np.zeros(settings.members, dtype=np.int64)
    last_loss = np.full(settings.members, np.nan)
    bar = tqdm(range(settings.max_epochs), desc="epochs", leave=False, disable=None if progress else True)
    for epoch in bar:
        rng = numpy_rng(seed, *keys, "batches", epoch)
        epochs_run[~stopper.stopped] += 1
        for step, (xb, yb) in enumerate(member_batches(stream.buffers(epoch), settings.members,
                                                       settings.batch_size, rng)):
            if settings.max_batches_per_epoch is not None and step >= settings.max_batches_per_epoch:
                break
            xb, yb = xb.to(device, non_blocking=True), yb.to(device, non_blocking=True)
            logits = model(xb)  # (M, B, K)
            losses = F.cross_entropy(logits.reshape(-1, num_classes), yb.reshape(-1), reduction="none")
            losses = losses.view(settings.members, -1).mean(dim=1)  # each member's own mean batch loss
            optimizer.zero_grad(set_to_none=True)
            losses.sum().backward()  # members share no weights, so the sum gives each its own gradient
            optimizer.step()
            values = losses.detach().cpu().numpy()
            active = ~stopper.stopped
            batches_run[active] += 1
            last_loss[active] = values[active]
            for m in np.flatnonzero(stopper.update(epoch, values)):
                snapshots[int(m)] = model.snapshot(int(m))
            if stopper.stopped.all():
                break
        bar.set_postfix(active=int((~stopper.stopped).sum()), loss=float(np.nanmean(last_loss)))
        if stopper.stopped.all():
            break
    for m, state in snapshots.items():
        model.restore(m, state)
    model.eval()
    info = {"epochs": epochs_run.tolist(), "batches": batches_run.tolist(), "last_loss": last_loss.tolist(),
            "early_stopped": stopper.stopped.tolist()}
    log.debug("ensemble trained: %s", info)
    return model, info


def vote(member_predictions: torch.Tensor, num_classes: int) -> torch.Tensor:
    """Mode over members of (M, P) class ids → (P,). Ties go to the smallest class id (what ``torch.mode``,
    used upstream, returns on CPU; made explicit here so it does not depend on the backend)."""
    m, p = member_predictions.shape
    counts = torch.zeros(p, num_classes, dtype=torch.int64, device=member_predictions.device)
    counts.scatter_add_(1, member_predictions.T.contiguous(), torch.ones_like(member_predictions.T))
    return counts.argmax(dim=1)  # argmax returns the first maximum


@torch.no_grad()
def predict(model: StackedMLP, x: torch.Tensor) -> torch.Tensor:
    """Ensemble prediction for P×C pixel features: per-member argmax, then :func:`vote`."""
    device = next(model.parameters()).device
    xm = x.to(device)[None].expand(model.members, -1, -1)
    member = model(xm).argmax(dim=2)  # (M, P)
    return vote(member, model.num_classes).cpu()

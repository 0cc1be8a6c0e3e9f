"""Capture activations of a stock diffusers U-Net or DiT with forward hooks and, for attention maps only, a
map-capturing attention processor. No diffusers file is edited (docs/paper.md §3 lists what the paper's
code patched and the hook that replaces each patch).

Every captured tensor is returned as B×C×H×W. Token tensors (B×N×C inside a ViT) are reshaped with the
H, W that the enclosing ``Transformer2DModel`` (in a DiT: the whole transformer) actually received
(recorded by a pre-hook; see ``Family.token_grid``), not sqrt(N). In a DiT the image tokens may be part
of a joint [image; text] sequence or of a tuple output; ``families.catalog.DiTActivation`` says which part.
Attention maps are averaged over heads (as the paper's AttentionStore, §2.5) and laid out so that each
query pixel's feature is its attention distribution over the keys: B×K×H×W.
"""

from __future__ import annotations

import contextlib
from typing import Callable, Iterable, Iterator

import torch
import torch.nn as nn

from diffact.families.catalog import AGGREGATE_KIND, MAP_KINDS, Activation, image_part, map_part
from diffact.families.registry import family_of, resolve_layers
from diffact.utils.errors import LayerError


class StopForward(Exception):
    """Raised from a hook once every requested activation is captured (early exit)."""


def _tokens_to_map(tokens: torch.Tensor, hw: tuple[int, int], name: str) -> torch.Tensor:
    """(B, H·W, C) → (B, C, H, W) with the recorded H, W."""
    b, n, c = tokens.shape
    h, w = hw
    if n != h * w:
        raise RuntimeError(f"{name}: {n} tokens do not match the ViT input {h}×{w}")
    return tokens.transpose(1, 2).reshape(b, c, h, w)


def _output_tensor(output, index: int = 0) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if hasattr(output, "sample"):
        return output.sample
    return output[index]


class ActivationCapture:
    """Installs hooks for the requested activations of ``unet``; use as a context manager around one forward.

    >>> with ActivationCapture(unet, ["up-level1-repeat1-vit-block0-cross-q"]) as cap:
    ...     cap.run(lambda: unet(latents, t, encoder_hidden_states=text))
    >>> cap.features["up-level1-repeat1-vit-block0-cross-q"].shape   # B×C×H×W

    ``early_exit`` stops the forward (via :class:`StopForward`) as soon as the last requested activation
    is captured, so an up-level0/1 set never runs the high-resolution decoder tail.
    """

    def __init__(self, unet: nn.Module, names: Iterable[str], early_exit: bool = True):
        self.unet = unet
        self.family = family_of(unet)
        self.activations = resolve_layers(unet, names)
        if not self.activations:
            raise LayerError("no activations requested")
        self.early_exit = early_exit
        # Aggregates are computed after the forward from their member maps, which are captured silently.
        from diffact.extract.aggregate import member_maps

        self._aggregates = {a.name: member_maps(unet, a.name) for a in self.activations if a.kind == AGGREGATE_KIND}
        if self._aggregates:
            self.early_exit = False  # a member map may come after the last named activation
        self._hidden = {m.name: m for members in self._aggregates.values() for m in members
                        if m.name not in {a.name for a in self.activations}}
        self.features: dict[str, torch.Tensor] = {}
        self._grid_hw: dict[str, tuple[int, int]] = {}
        self._handles: list = []
        self._saved_processors: dict[nn.Module, object] = {}

    # ---- storage -------------------------------------------------------------------------------
    def _store(self, act: Activation, tensor: torch.Tensor) -> None:
        tensor = tensor.detach()
        span = getattr(act, "span", "all")  # DiT joint sequences: where the image tokens are
        if act.kind in MAP_KINDS:
            hw = self._grid_hw[act.grid]
            probs = tensor.float().mean(dim=1)  # head-mean: (B, Nq, Nk)
            if span != "all":
                probs = map_part(probs, hw[0] * hw[1], span, act.kind)
            tensor = _tokens_to_map(probs, hw, act.name)  # → B×Nk×H×W
        elif act.tokens:
            hw = self._grid_hw[act.grid]
            tensor = _tokens_to_map(image_part(tensor, hw[0] * hw[1], span), hw, act.name)
        self.features[act.name] = tensor
        if self.early_exit and len(self.features) == len(self.activations) + len(self._hidden):
            raise StopForward

    # ---- hook installation ---------------------------------------------------------------------
    def _hook_output(self, act: Activation) -> None:
        module = self.unet.get_submodule(act.module)

        def hook(_module, _inputs, output, act=act):
            self._store(act, _output_tensor(output, getattr(act, "output", 0)))

        self._handles.append(module.register_forward_hook(hook))

    def _hook_input(self, act: Activation) -> None:
        module = self.unet.get_submodule(act.module)

        def pre_hook(_module, inputs, act=act):
            self._store(act, inputs[0])

        self._handles.append(module.register_forward_pre_hook(pre_hook))

    def _record_grid(self, path: str, patch: int) -> None:
        module = self.unet.get_submodule(path)

        def pre_hook(_module, args, kwargs, path=path):
            self._grid_hw[path] = self.family.token_grid(args, kwargs, patch)

        self._handles.append(module.register_forward_pre_hook(pre_hook, with_kwargs=True))

    def _install_map_processor(self, acts: list[Activation]) -> None:
        """One processor per attention module, feeding every requested map of it (a DiT's joint attention
        gives both the self- and the cross-map)."""
        attn = self.unet.get_submodule(acts[0].module)

        def sink(probs, acts=acts):
            for act in acts:
                self._store(act, probs)

        self._saved_processors[attn] = attn.processor
        attn.set_processor(self.family.map_processor(attn, sink))

    def __enter__(self) -> "ActivationCapture":
        self.features = {}
        hooked = [a for a in [*self.activations, *self._hidden.values()] if a.kind != AGGREGATE_KIND]
        for grid, patch in {(a.grid, a.patch) for a in hooked if a.tokens}:
            self._record_grid(grid, patch)
        maps: dict[str, list[Activation]] = {}
        for act in hooked:
            if act.kind == "unet-in":
                self._hook_input(act)
            elif act.kind in MAP_KINDS:
                maps.setdefault(act.module, []).append(act)
            else:
                self._hook_output(act)
        for acts in maps.values():
            self._install_map_processor(acts)
        return self

    def _compute_aggregates(self) -> None:
        from diffact.extract.aggregate import aggregate

        for name, members in self._aggregates.items():
            maps = {m.name: self.features[m.name] for m in members if m.name in self.features}
            # The latent grid = the size of the largest map's grid times its scale.
            latent_hw = next((tuple(s * m.scale for s in self.features[m.name].shape[-2:])
                              for m in members if m.name in self.features), None)
            if latent_hw is not None:
                self.features[name] = aggregate(maps, latent_hw)
        for name in self._hidden:
            self.features.pop(name, None)

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        for attn, processor in self._saved_processors.items():
            attn.set_processor(processor)
        self._saved_processors.clear()

    def run(self, forward: Callable[[], object]) -> dict[str, torch.Tensor]:
        """Run ``forward`` (one U-Net call), stopping early if allowed; return the features in catalog order."""
        with contextlib.suppress(StopForward):
            forward()
        self._compute_aggregates()
        missing = [a.name for a in self.activations if a.name not in self.features]
        if missing:
            raise LayerError(f"the forward did not produce {missing[:3]} (is the layer used by this model's forward?)")
        return {a.name: self.features[a.name] for a in self.activations}


@contextlib.contextmanager
def capture(unet: nn.Module, names: Iterable[str], early_exit: bool = True) -> Iterator[ActivationCapture]:
    with ActivationCapture(unet, names, early_exit=early_exit) as cap:
        yield cap

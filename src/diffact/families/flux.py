"""Flux (``FluxTransformer2DModel``): the 19 double-stream blocks, then the 38 single-stream blocks,
numbered continuously (``vit-block19`` is the first single block of FLUX.1).

Kinds as the paper code's HEAD: ``norm-out`` (the modulated norm1 output the attention reads), ``q``, ``k``,
``v``, ``self-map``, ``cross-map``, ``attn-out`` (the image part of the attention output; after ``to_out`` in
double blocks, before the fused ``proj_out`` in single blocks), ``out``. Single blocks run on [text; image]
tokens; only the image part is kept. FluxPipeline packs 2×2 latent patches into one token, so the token grid
is latent / 2, read from the positional ids ``img_ids``; guidance-distilled transformers (FLUX.1-dev) get
guidance 3.5 (FluxPipeline's default), and the schedule's resolution-dependent shift ``mu`` is
FluxPipeline's rule.
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn as nn

from diffact.families.attention import attention_probs
from diffact.families.catalog import Activation
from diffact.families.dit import DiTFamily, entry
from diffact.utils.errors import ConfigError, LayerError

PACK = 2  # FluxPipeline packs 2×2 latent patches into one token
GUIDANCE = 3.5  # FluxPipeline's default guidance_scale; fed to guidance-distilled transformers only


def walk_flux(model: nn.Module) -> Iterator[Activation]:
    """``FluxTransformer2DModel``: 8 activations per block, double-stream blocks first."""
    patch = PACK
    blocks = [(f"transformer_blocks.{j}", b, False) for j, b in enumerate(model.transformer_blocks)]
    blocks += [(f"single_transformer_blocks.{j}", b, True) for j, b in enumerate(model.single_transformer_blocks)]
    for i, (path, block, single) in enumerate(blocks):
        pre, span = f"vit-block{i}", ("tail" if single else "all")  # single blocks see [text; image]
        dim, inner = block.attn.to_q.in_features, block.attn.to_q.out_features
        yield entry(f"{pre}-norm-out", "norm-out", f"{path}.{'norm' if single else 'norm1'}", dim, patch, span=span)
        for proj in ("q", "k", "v"):
            yield entry(f"{pre}-{proj}", proj, f"{path}.attn.to_{proj}", inner, patch, span=span)
        yield entry(f"{pre}-self-map", "self-map", f"{path}.attn", 0, patch, span="tail")
        yield entry(f"{pre}-cross-map", "cross-map", f"{path}.attn", 0, patch, span="tail")
        yield entry(f"{pre}-attn-out", "attn-out", f"{path}.attn", inner if single else block.attn.out_dim, patch,
                     span=span)
        yield entry(f"{pre}-out", "out", path, dim, patch, output=1)


class FluxMapCaptureProcessor:
    """Flux's ``FluxAttnProcessor`` (unfused projections) with explicit probabilities; ``sink`` gets the
    head-mean map as (B, 1, Nq, Nk) over [text; image] tokens."""

    def __init__(self, sink: Callable[[torch.Tensor], None]):
        self.sink = sink

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        from diffusers.models.embeddings import apply_rotary_emb

        if getattr(attn, "fused_projections", False):
            raise LayerError("attention maps need unfused q/k/v projections (unfuse_qkv_projections())")

        def split(x):
            return x.unflatten(-1, (-1, attn.head_dim))

        query, key, value = (split(p(hidden_states)) for p in (attn.to_q, attn.to_k, attn.to_v))
        query, key = attn.norm_q(query), attn.norm_k(key)
        if encoder_hidden_states is not None and attn.added_kv_proj_dim is not None:
            eq, ek, ev = (split(p(encoder_hidden_states)) for p in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
            eq, ek = attn.norm_added_q(eq), attn.norm_added_k(ek)
            query, key, value = torch.cat([eq, query], 1), torch.cat([ek, key], 1), torch.cat([ev, value], 1)
        if image_rotary_emb is not None:
            query = apply_rotary_emb(query, image_rotary_emb, sequence_dim=1)
            key = apply_rotary_emb(key, image_rotary_emb, sequence_dim=1)
        probs = attention_probs(query.transpose(1, 2), key.transpose(1, 2), attn.head_dim ** -0.5, attention_mask)
        out = torch.matmul(probs.to(value.dtype), value.transpose(1, 2)).transpose(1, 2).flatten(2, 3)
        out = out.to(query.dtype)
        self.sink(probs.mean(dim=1, keepdim=True))
        if encoder_hidden_states is None:
            return out
        n_text = encoder_hidden_states.shape[1]
        context, out = out[:, :n_text], out[:, n_text:]
        out = attn.to_out[1](attn.to_out[0](out.contiguous()))
        return out, attn.to_add_out(context.contiguous())


class Flux(DiTFamily):
    name = "flux"
    description = "FLUX.1 dev / schnell MMDiT (FluxPipeline)"
    denoiser_classes = ("FluxTransformer2DModel",)
    walker = staticmethod(walk_flux)

    def map_processor(self, attn, sink):
        return FluxMapCaptureProcessor(sink)

    def token_grid(self, args, kwargs, patch):
        """Packed B×N×C tokens: the grid is in ``img_ids`` (N×3: 0, row, column)."""
        hidden = args[0] if args else kwargs["hidden_states"]
        if hidden.ndim == 4:
            return super().token_grid(args, kwargs, patch)
        ids = kwargs.get("img_ids")
        if ids is None:
            raise LayerError(f"cannot tell the token grid of a {tuple(hidden.shape)} input without img_ids")
        ids = ids[0] if ids.ndim == 3 else ids
        return int(ids[:, 1].max()) + 1, int(ids[:, 2].max()) + 1

    def encode_prompt(self, pipe, model, prompt, image_size, device):
        embeds, pooled, text_ids = pipe.encode_prompt(prompt=prompt, prompt_2=None, device=device,
                                                      num_images_per_prompt=1)
        cond = {"encoder_hidden_states": embeds, "pooled_projections": pooled, "txt_ids": text_ids}
        if model.config.guidance_embeds:
            cond["guidance"] = torch.full([1], GUIDANCE, dtype=torch.float32, device=device)
        return cond

    def batched_cond(self, cond, batch):
        text_ids = cond.get("txt_ids")  # positional ids have no batch axis
        out = super().batched_cond({k: v for k, v in cond.items() if k != "txt_ids"}, batch)
        return {**out, "txt_ids": text_ids} if "txt_ids" in cond else out

    def timestep_shift(self, pipe, scheduler, image_size):
        if not scheduler.config.get("use_dynamic_shifting", False):
            return {}
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        side = image_size // getattr(pipe, "vae_scale_factor", 8) // PACK
        config = scheduler.config
        return {"mu": calculate_shift(side * side, config.get("base_image_seq_len", 256),
                                      config.get("max_image_seq_len", 4096), config.get("base_shift", 0.5),
                                      config.get("max_shift", 1.15))}

    def forward(self, pipe, model, model_in, t, cond):
        batch, channels, h, w = model_in.shape
        if h % PACK or w % PACK:
            raise ConfigError(f"Flux packs 2×2 latent patches; latent {h}×{w} is odd (change image_size)")
        packed = pipe._pack_latents(model_in, batch, channels, h, w)
        img_ids = pipe._prepare_latent_image_ids(batch, h // PACK, w // PACK, model_in.device, model_in.dtype)
        return lambda: model(hidden_states=packed, timestep=t.to(model_in.dtype) / 1000, img_ids=img_ids,
                             return_dict=False, **cond)

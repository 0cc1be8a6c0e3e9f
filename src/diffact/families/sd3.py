"""SD3 / SD3.5 (``SD3Transformer2DModel``; MMDiT ``JointTransformerBlock``): one joint attention over
[image; text] tokens.

``self-{q,k,v}`` are ``to_q/to_k/to_v`` of the image stream, ``self-map`` / ``cross-map`` the image-query rows
of the joint softmax restricted to image / text keys (each row sums to 1 over *both* parts together),
``ffn-inner``, ``out`` (the image stream). SD3.5's second, image-only attention (``attn2``,
``dual_attention_layers``) adds ``self2-{q,k,v,map}``. Conditioning: 77 CLIP-L ⊕ CLIP-G and :data:`T5_TOKENS`
T5 tokens plus the pooled CLIP projections (StableDiffusion3Pipeline.encode_prompt).
"""

from __future__ import annotations

from typing import Callable, Iterator

import torch
import torch.nn as nn

from diffact.families.attention import MapCaptureProcessor, attention_probs
from diffact.families.catalog import Activation
from diffact.families.dit import DiTFamily, entry, ffn_inner

# The T5 tokens fed to SD3, for extraction and for training the demo's DiT alike: 77, the length SD3 is trained
# with (diffusers' examples/dreambooth/train_dreambooth_sd3.py, ``--max_sequence_length`` default 77, "Maximum
# sequence length to use with the T5 text encoder"), not encode_prompt's inference default 256. The demo's sd3 has
# no T5, so its T5 tokens are zeros that carry no information, and the joint attention's cost grows with the square
# of the joint length, 256 image + 77 CLIP + 77 T5 = 410 tokens at 64 px instead of 589: a demo DiT training step
# costs 1.10 instead of 2.01 CPU s (models.train.DemoTrainSettings).
T5_TOKENS = 77


def walk_sd3(model: nn.Module) -> Iterator[Activation]:
    """``SD3Transformer2DModel``: 7 activations per joint block, +4 for SD3.5's dual-attention blocks."""
    patch = model.config.patch_size
    for i, block in enumerate(model.transformer_blocks):
        pre, path = f"vit-block{i}", f"transformer_blocks.{i}"
        for proj in ("q", "k", "v"):
            layer = getattr(block.attn, f"to_{proj}")
            yield entry(f"{pre}-self-{proj}", f"self-{proj}", f"{path}.attn.to_{proj}", layer.out_features, patch)
        # JointAttnProcessor2_0 concatenates [image; text]: the image tokens come first.
        yield entry(f"{pre}-self-map", "self-map", f"{path}.attn", 0, patch, span="head")
        yield entry(f"{pre}-cross-map", "cross-map", f"{path}.attn", 0, patch, span="head")
        if getattr(block, "attn2", None) is not None:
            for proj in ("q", "k", "v"):
                layer = getattr(block.attn2, f"to_{proj}")
                yield entry(f"{pre}-self2-{proj}", f"self-{proj}", f"{path}.attn2.to_{proj}", layer.out_features,
                             patch)
            yield entry(f"{pre}-self2-map", "self-map", f"{path}.attn2", 0, patch)
        yield entry(f"{pre}-ffn-inner", "ffn-inner", f"{path}.ff.net.0", ffn_inner(block.ff), patch)
        yield entry(f"{pre}-out", "out", path, block.attn.to_q.in_features, patch, output=1)


class JointMapCaptureProcessor:
    """SD3's ``JointAttnProcessor2_0`` with the probabilities formed explicitly; ``sink`` gets the
    head-mean map as (B, 1, Nq, Nk) over the joint [image; text] sequence."""

    def __init__(self, sink: Callable[[torch.Tensor], None]):
        self.sink = sink

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, *args, **kwargs):
        batch, n_image = hidden_states.shape[:2]
        query, key, value = attn.to_q(hidden_states), attn.to_k(hidden_states), attn.to_v(hidden_states)
        head_dim = key.shape[-1] // attn.heads

        def split(x):
            return x.view(batch, -1, attn.heads, head_dim).transpose(1, 2)

        query, key, value = split(query), split(key), split(value)
        if attn.norm_q is not None:
            query = attn.norm_q(query)
        if attn.norm_k is not None:
            key = attn.norm_k(key)
        if encoder_hidden_states is not None:
            eq, ek, ev = (split(p(encoder_hidden_states)) for p in (attn.add_q_proj, attn.add_k_proj, attn.add_v_proj))
            if attn.norm_added_q is not None:
                eq = attn.norm_added_q(eq)
            if attn.norm_added_k is not None:
                ek = attn.norm_added_k(ek)
            query, key, value = torch.cat([query, eq], 2), torch.cat([key, ek], 2), torch.cat([value, ev], 2)
        probs = attention_probs(query, key, head_dim ** -0.5)
        out = torch.matmul(probs.to(value.dtype), value).transpose(1, 2).reshape(batch, -1, attn.heads * head_dim)
        self.sink(probs.mean(dim=1, keepdim=True))
        if encoder_hidden_states is not None:
            out, context = out[:, :n_image], out[:, n_image:]
            if not attn.context_pre_only:
                context = attn.to_add_out(context)
        out = attn.to_out[1](attn.to_out[0](out))
        return (out, context) if encoder_hidden_states is not None else out


class SD3(DiTFamily):
    name = "sd3"
    description = "Stable Diffusion 3 / 3.5 MMDiT (StableDiffusion3Pipeline)"
    denoiser_classes = ("SD3Transformer2DModel",)
    walker = staticmethod(walk_sd3)

    def map_processor(self, attn, sink):
        # the joint blocks' attn; SD3.5's image-only attn2 is a classic attention
        if "Joint" in type(getattr(attn, "processor", None)).__name__:
            return JointMapCaptureProcessor(sink)
        return MapCaptureProcessor(sink)

    def encode_prompt(self, pipe, model, prompt, image_size, device):
        embeds, _, pooled, _ = pipe.encode_prompt(prompt=prompt, prompt_2=None, prompt_3=None, device=device,
                                                  num_images_per_prompt=1, do_classifier_free_guidance=False,
                                                  max_sequence_length=T5_TOKENS)
        return {"encoder_hidden_states": embeds, "pooled_projections": pooled}

    def text_tokens(self, read_config) -> int:
        """:data:`T5_TOKENS` (what :meth:`encode_prompt` asks for, not the pipeline's default 256) plus
        :meth:`extra_text_tokens`."""
        return T5_TOKENS + self.extra_text_tokens(read_config)

    def extra_text_tokens(self, read_config) -> int:
        """The CLIP tokens SD3 concatenates in front of its T5 tokens ([CLIP-L ⊕ CLIP-G padded], 77)."""
        tokenizer = read_config("tokenizer") or {}
        return int(tokenizer.get("model_max_length", 77))

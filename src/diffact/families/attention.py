"""Map-capturing attention processors: the fused SDPA processors never form the probabilities, so where an
attention map is requested its module gets a processor that computes softmax(QKᵀ·scale) explicitly and hands
it to a sink. Installed only on the modules whose maps are requested (every other module keeps its fast
processor). Joint-attention processors (SD3, Flux) live with their families."""

from __future__ import annotations

from typing import Callable

import torch


def attention_probs(query: torch.Tensor, key: torch.Tensor, scale: float,
                    mask: torch.Tensor | None = None) -> torch.Tensor:
    """softmax(QKᵀ·scale) over (B, heads, N, d) inputs, in fp32 (SDPA's semantics for bool/float masks)."""
    scores = torch.matmul(query.float(), key.float().transpose(-1, -2)) * scale
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf")) if mask.dtype == torch.bool else scores + mask.float()
    return scores.softmax(dim=-1)


class MapCaptureProcessor:
    """diffusers' classic ``AttnProcessor`` (U-Net ViTs, PixArt) with the probabilities handed to ``sink`` as
    (B, heads, Nq, Nk)."""

    def __init__(self, sink: Callable[[torch.Tensor], None]):
        self.sink = sink

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, temb=None,
                 *args, **kwargs):
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        input_ndim = hidden_states.ndim
        if input_ndim == 4:
            batch, channel, height, width = hidden_states.shape
            hidden_states = hidden_states.view(batch, channel, height * width).transpose(1, 2)
        batch, seq_len, _ = (hidden_states if encoder_hidden_states is None else encoder_hidden_states).shape
        attention_mask = attn.prepare_attention_mask(attention_mask, seq_len, batch)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        query = attn.to_q(hidden_states)
        if encoder_hidden_states is None:
            encoder_hidden_states = hidden_states
        elif attn.norm_cross:
            encoder_hidden_states = attn.norm_encoder_hidden_states(encoder_hidden_states)
        key = attn.to_k(encoder_hidden_states)
        value = attn.to_v(encoder_hidden_states)
        query, key, value = (attn.head_to_batch_dim(x) for x in (query, key, value))
        probs = attn.get_attention_scores(query, key, attention_mask)  # (B·heads, Nq, Nk)
        out = attn.batch_to_head_dim(torch.bmm(probs, value))
        out = attn.to_out[1](attn.to_out[0](out))
        if input_ndim == 4:
            out = out.transpose(-1, -2).reshape(batch, channel, height, width)
        if attn.residual_connection:
            out = out + residual
        out = out / attn.rescale_output_factor
        self.sink(probs.reshape(batch, attn.heads, *probs.shape[1:]))
        return out

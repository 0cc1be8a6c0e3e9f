"""Captured activations equal independent recomputations (docs/paper.md §3: hooks replace the paper's patches)."""

import pytest
import torch

from conftest import sd15_inputs, sdxl_inputs
from diffact.extract.hooks import ActivationCapture

BLOCK = "up_blocks.1.attentions.1.transformer_blocks.0"
NAME = "up-level1-repeat1-vit-block0"


def _run(unet, names, inputs, early_exit=False):
    with torch.no_grad(), ActivationCapture(unet, names, early_exit=early_exit) as cap:
        return cap.run(lambda: unet(**inputs))


def _tokens(t):  # B×C×H×W → B×HW×C
    return t.flatten(2).transpose(1, 2)


def _keep(store, key, pick=lambda *a: a[-1]):
    """A hook that records a value and returns None (a non-None return would replace the output)."""
    def hook(*args):
        store.setdefault(key, pick(*args))
    return hook


def test_q_k_v_and_block_out_equal_recomputation(tiny_sd15_unet):
    unet, inputs = tiny_sd15_unet, sd15_inputs(batch=2)
    block = unet.get_submodule(BLOCK)
    seen = {}
    h1 = block.norm1.register_forward_hook(_keep(seen, "norm1"))
    h2 = block.register_forward_hook(_keep(seen, "out"))
    h3 = block.norm2.register_forward_hook(_keep(seen, "norm2"))
    try:
        feats = _run(unet, [f"{NAME}-self-q", f"{NAME}-self-k", f"{NAME}-self-v", f"{NAME}-cross-q", f"{NAME}-out",
                            f"{NAME}-ffn-inner"], inputs)
    finally:
        for h in (h1, h2, h3):
            h.remove()
    x = seen["norm1"]
    torch.testing.assert_close(_tokens(feats[f"{NAME}-self-q"]), block.attn1.to_q(x))
    torch.testing.assert_close(_tokens(feats[f"{NAME}-self-k"]), block.attn1.to_k(x))
    torch.testing.assert_close(_tokens(feats[f"{NAME}-self-v"]), block.attn1.to_v(x))
    torch.testing.assert_close(_tokens(feats[f"{NAME}-cross-q"]), block.attn2.to_q(seen["norm2"]))
    torch.testing.assert_close(_tokens(feats[f"{NAME}-out"]), seen["out"])
    assert feats[f"{NAME}-ffn-inner"].shape[1] == block.ff.net[2].in_features  # GEGLU output = 4C


def test_res_out_is_shortcut_plus_increment(tiny_sd15_unet):
    unet, inputs = tiny_sd15_unet, sd15_inputs()
    resnet = unet.up_blocks[1].resnets[0]  # has a 1×1 conv shortcut (channel change on the skip concat)
    assert resnet.conv_shortcut is not None
    seen = {}
    h = resnet.register_forward_pre_hook(_keep(seen, "x", lambda m, args: args[0]))
    try:
        feats = _run(unet, ["up-level1-repeat0-res-increment", "up-level1-repeat0-res-out"], inputs)
    finally:
        h.remove()
    expected = (resnet.conv_shortcut(seen["x"]) + feats["up-level1-repeat0-res-increment"]) / resnet.output_scale_factor
    torch.testing.assert_close(feats["up-level1-repeat0-res-out"], expected)


def test_vit_out_and_samplers_equal_module_outputs(tiny_sd15_unet):
    unet, inputs = tiny_sd15_unet, sd15_inputs()
    seen = {}
    hs = [unet.up_blocks[2].attentions[2].register_forward_hook(_keep(seen, "vit", lambda m, i, o: o[0])),
          unet.up_blocks[1].upsamplers[0].register_forward_hook(_keep(seen, "up")),
          unet.conv_in.register_forward_hook(_keep(seen, "in", lambda m, i, o: (i[0], o)))]
    try:
        feats = _run(unet, ["up-level2-repeat2-vit-out", "up-level1-upsampler-out", "unet-in", "unet-after-conv-in"], inputs)
    finally:
        for h in hs:
            h.remove()
    torch.testing.assert_close(feats["up-level2-repeat2-vit-out"], seen["vit"])
    torch.testing.assert_close(feats["up-level1-upsampler-out"], seen["up"])
    torch.testing.assert_close(feats["unet-in"], inputs["sample"])
    torch.testing.assert_close(feats["unet-after-conv-in"], seen["in"][1])


@pytest.mark.parametrize("kind", ["self", "cross"])
def test_maps_are_row_stochastic_softmax(tiny_sd15_unet, kind):
    unet, inputs = tiny_sd15_unet, sd15_inputs()
    block = unet.get_submodule(BLOCK)
    attn = block.attn1 if kind == "self" else block.attn2
    default_processor = attn.processor
    feats = _run(unet, [f"{NAME}-{kind}-map", f"{NAME}-{kind}-q", f"{NAME}-out"] if kind == "self"
                 else [f"{NAME}-{kind}-map", f"{NAME}-{kind}-q"], inputs)
    assert attn.processor is default_processor  # restored after capture
    amap = feats[f"{NAME}-{kind}-map"]  # B×K×H×W, head mean
    torch.testing.assert_close(amap.sum(dim=1), torch.ones_like(amap[:, 0]))
    q = _tokens(feats[f"{NAME}-{kind}-q"])
    context = inputs["encoder_hidden_states"]
    if kind == "self":  # keys come from the normed ViT tokens
        seen = {}
        h = block.norm1.register_forward_hook(_keep(seen, "x"))
        _run(unet, [f"{NAME}-self-q"], inputs)
        h.remove()
        context = seen["x"]
    key = attn.to_k(context)
    b, n, c = q.shape
    heads, d = attn.heads, c // attn.heads
    qh = q.reshape(b, n, heads, d).transpose(1, 2)
    kh = key.reshape(b, key.shape[1], heads, d).transpose(1, 2)
    probs = torch.softmax(qh @ kh.transpose(-1, -2) * attn.scale, dim=-1).mean(dim=1)  # B×N×K
    torch.testing.assert_close(_tokens(amap), probs, atol=1e-5, rtol=1e-4)


def test_map_processor_does_not_change_the_output(tiny_sd15_unet):
    unet, inputs = tiny_sd15_unet, sd15_inputs()
    with torch.no_grad():
        plain = unet(**inputs).sample
        with ActivationCapture(unet, [f"{NAME}-self-map", f"{NAME}-cross-map"], early_exit=False) as cap:
            hooked = unet(**inputs).sample
    torch.testing.assert_close(hooked, plain, atol=1e-5, rtol=1e-4)
    assert set(cap.features) == {f"{NAME}-self-map", f"{NAME}-cross-map"}


def test_early_exit_gives_the_same_features(tiny_sdxl_unet):
    unet, inputs = tiny_sdxl_unet, sdxl_inputs()
    names = ["up-level0-repeat0-vit-block1-out", "up-level0-repeat1-vit-block2-cross-q"]
    calls = []
    h = unet.conv_out.register_forward_hook(lambda *a: calls.append(1) and None)
    try:
        early = _run(unet, names, inputs, early_exit=True)
        assert calls == []  # the tail of the U-Net never ran
        full = _run(unet, names, inputs, early_exit=False)
        assert calls == [1]
    finally:
        h.remove()
    for name in names:
        torch.testing.assert_close(early[name], full[name])


def test_non_square_latents_reshape_with_true_height_and_width(tiny_sd15_unet):
    inputs = sd15_inputs()
    inputs["sample"] = torch.randn(1, 4, 16, 24)
    feats = _run(tiny_sd15_unet, [f"{NAME}-self-k", "up-level3-repeat0-vit-block0-out"], inputs)
    assert feats[f"{NAME}-self-k"].shape[-2:] == (4, 6)
    assert feats["up-level3-repeat0-vit-block0-out"].shape[-2:] == (16, 24)

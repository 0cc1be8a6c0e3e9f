"""DiT family (PixArt-Σ, SD3, Flux) through the same extraction mechanism as the U-Nets (docs/paper.md §2.2 HEAD
names, §3 hooks): catalog names and shapes, captures equal independent recomputations, attention maps of
joint attention, and saved tiny pipelines end to end (offline T5 / CLIP tokenizers, random weights)."""

import json

import pytest
import torch

from diffact.families.catalog import MAP_KINDS
from diffact.families.unet import walk_unet
from diffact.families.registry import walk as walk_model
from diffact.extract.hooks import ActivationCapture
from diffact.utils.errors import ModelError

B, LATENT_HW, GRID_HW, TEXT = 2, (8, 12), (4, 6), 5  # non-square: H·W = 24 is no square number


# ---- tiny models (configs only; nothing is downloaded) --------------------------------------------
def _pixart():
    from diffusers import PixArtTransformer2DModel

    return PixArtTransformer2DModel(num_attention_heads=2, attention_head_dim=8, in_channels=4, out_channels=8,
                                    num_layers=2, cross_attention_dim=16, sample_size=8, patch_size=2,
                                    caption_channels=12)


def _sd3(in_channels=4, joint_dim=12, pooled_dim=10):
    from diffusers import SD3Transformer2DModel

    # block 0 is an SD3.5 dual-attention block; qk RMS-norm as SD3.5
    return SD3Transformer2DModel(sample_size=8, patch_size=2, in_channels=in_channels, out_channels=in_channels,
                                 num_layers=2, attention_head_dim=8, num_attention_heads=2,
                                 joint_attention_dim=joint_dim, caption_projection_dim=16,
                                 pooled_projection_dim=pooled_dim, pos_embed_max_size=16, dual_attention_layers=(0,),
                                 qk_norm="rms_norm")


def _flux(in_channels=16, pooled_dim=10):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(patch_size=1, in_channels=in_channels, num_layers=1, num_single_layers=2,
                                  attention_head_dim=8, num_attention_heads=2, joint_attention_dim=12,
                                  pooled_projection_dim=pooled_dim, guidance_embeds=True, axes_dims_rope=(2, 2, 4))


def _image_ids(h, w):
    ids = torch.zeros(h, w, 3)
    ids[..., 1] += torch.arange(h)[:, None]
    ids[..., 2] += torch.arange(w)[None, :]
    return ids.reshape(h * w, 3)


def _inputs(family):
    g = torch.Generator().manual_seed(1)
    text = torch.randn(B, TEXT, 12, generator=g)
    if family == "pixart":
        mask = torch.tensor([[1, 1, 1, 1, 0], [1, 1, 1, 0, 0]])  # padded T5 tokens are masked out
        return dict(hidden_states=torch.randn(B, 4, *LATENT_HW, generator=g), encoder_hidden_states=text,
                    timestep=torch.tensor([50] * B), encoder_attention_mask=mask,
                    added_cond_kwargs={"resolution": None, "aspect_ratio": None})
    if family == "sd3":
        return dict(hidden_states=torch.randn(B, 4, *LATENT_HW, generator=g), encoder_hidden_states=text,
                    pooled_projections=torch.randn(B, 10, generator=g), timestep=torch.tensor([500.0] * B))
    return dict(hidden_states=torch.randn(B, GRID_HW[0] * GRID_HW[1], 16, generator=g), encoder_hidden_states=text,
                pooled_projections=torch.randn(B, 10, generator=g), timestep=torch.tensor([0.5] * B),
                img_ids=_image_ids(*GRID_HW), txt_ids=torch.zeros(TEXT, 3), guidance=torch.tensor([3.5] * B))


def _tokens(t):  # B×C×H×W → B×HW×C
    return t.flatten(2).transpose(1, 2)


def _keep(store, key, pick=lambda m, i, o: o):
    def hook(module, inputs, output):
        store.setdefault(key, pick(module, inputs, output))
    return hook


@pytest.fixture(scope="module", params=["pixart", "sd3", "flux"])
def captured(request):
    """One forward of a tiny DiT with every activation captured, plus module outputs seen by plain hooks."""
    family = request.param
    torch.manual_seed(0)
    model = {"pixart": _pixart, "sd3": _sd3, "flux": _flux}[family]().eval()
    inputs = _inputs(family)
    acts = list(walk_model(model))
    seen, handles = {}, []

    def watch(path, key, pick=lambda m, i, o: o):
        handles.append(model.get_submodule(path).register_forward_hook(_keep(seen, key, pick)))

    if family == "pixart":
        block = model.transformer_blocks[1]
        watch("transformer_blocks.1.norm1", "norm1")
        handles.append(block.register_forward_pre_hook(
            lambda m, a, kw: seen.update(timestep=kw["timestep"]), with_kwargs=True))  # returns None
        watch("transformer_blocks.1", "out")
    elif family == "sd3":
        watch("transformer_blocks.0.norm1", "norm1", lambda m, i, o: o[0])
        watch("transformer_blocks.0.norm1", "norm1-x2", lambda m, i, o: o[5])  # SD3.5: attn2's own modulation
        watch("transformer_blocks.1.norm1", "norm1-b1", lambda m, i, o: o[0])
        watch("transformer_blocks.0", "out", lambda m, i, o: o[1])
        watch("transformer_blocks.1", "out-b1", lambda m, i, o: o[1])
        watch("transformer_blocks.1.attn.add_k_proj", "text-k")
    else:
        watch("transformer_blocks.0.norm1", "norm1", lambda m, i, o: o[0])
        watch("transformer_blocks.0.attn.add_k_proj", "text-k")
        watch("transformer_blocks.0.attn", "attn", lambda m, i, o: o[0])
        watch("transformer_blocks.0", "out", lambda m, i, o: o[1])
        watch("single_transformer_blocks.1.norm", "single-norm", lambda m, i, o: o[0])
        watch("single_transformer_blocks.1.attn", "single-attn")
        watch("single_transformer_blocks.1", "single-out", lambda m, i, o: o[1])
    try:
        with torch.no_grad():
            plain = model(**inputs, return_dict=False)[0]
            seen.clear()
            with ActivationCapture(model, [a.name for a in acts], early_exit=False) as cap:
                hooked = model(**inputs, return_dict=False)[0]
    finally:
        for h in handles:
            h.remove()
    return dict(family=family, model=model, inputs=inputs, acts=acts, feats=cap.features, seen=seen,
                plain=plain, hooked=hooked)


# ---- catalog ----------------------------------------------------------------------------------------
def test_walk_model_dispatches_and_names_unsupported_classes(tiny_sd15_unet):
    assert list(walk_model(tiny_sd15_unet)) == list(walk_unet(tiny_sd15_unet))
    with pytest.raises(ModelError, match="Linear"):
        walk_model(torch.nn.Linear(2, 2))


def test_catalog_names_per_family():
    per_block = {
        "pixart": ["self-q", "self-k", "self-v", "self-map", "cross-q", "cross-map", "ffn-inner", "out"],
        "sd3": ["self-q", "self-k", "self-v", "self-map", "cross-map", "ffn-inner", "out"],
        "flux": ["norm-out", "q", "k", "v", "self-map", "cross-map", "attn-out", "out"],
    }
    with torch.device("meta"):
        models = {"pixart": _pixart(), "sd3": _sd3(), "flux": _flux()}
    for family, model in models.items():
        names = [a.name for a in walk_model(model)]
        blocks = {"pixart": 2, "sd3": 2, "flux": 3}[family]  # Flux: 1 double + 2 single blocks, numbered on
        expected = [f"vit-block{i}-{k}" for i in range(blocks) for k in per_block[family]]
        if family == "sd3":  # block 0 has SD3.5's second self-attention, between the joint attention and the FFN
            at = expected.index("vit-block0-ffn-inner")
            expected[at:at] = [f"vit-block0-self2-{k}" for k in ("q", "k", "v", "map")]
        assert names == expected, family
    counts = {f: len(list(walk_model(m))) for f, m in models.items()}
    assert counts == {"pixart": 16, "sd3": 18, "flux": 24}


def test_captured_shapes_equal_the_catalog_on_a_non_square_grid(captured):
    feats, acts = captured["feats"], captured["acts"]
    assert set(feats) == {a.name for a in acts}
    for act in acts:
        row = act.as_row(LATENT_HW, text_tokens=TEXT)
        assert (row["height"], row["width"]) == GRID_HW
        assert set(row) == {"name", "kind", "module", "channels", "scale", "tokens", "height", "width"}
        assert feats[act.name].shape == (B, row["channels"], *GRID_HW), act.name


def test_hooks_and_map_processors_leave_the_output_unchanged(captured):
    torch.testing.assert_close(captured["hooked"], captured["plain"], atol=1e-5, rtol=1e-4)
    model = captured["model"]
    assert all("MapCapture" not in type(p).__name__ for p in model.attn_processors.values())  # restored


def test_q_k_v_are_projections_of_the_modulated_norm1_tokens(captured):
    family, model, feats, seen = captured["family"], captured["model"], captured["feats"], captured["seen"]
    if family == "pixart":  # ada_norm_single: norm1(x)·(1 + scale_msa) + shift_msa, recomputed here
        block = model.transformer_blocks[1]
        shift, scale = (block.scale_shift_table[None] + seen["timestep"].reshape(B, 6, -1)).chunk(6, dim=1)[:2]
        x, attn, pre = seen["norm1"] * (1 + scale) + shift, block.attn1, "vit-block1-self-"
    elif family == "sd3":
        x, attn, pre = seen["norm1"], model.transformer_blocks[0].attn, "vit-block0-self-"
        torch.testing.assert_close(_tokens(feats["vit-block0-self2-q"]),
                                   model.transformer_blocks[0].attn2.to_q(seen["norm1-x2"]))
    else:
        x, attn, pre = seen["norm1"], model.transformer_blocks[0].attn, "vit-block0-"
        torch.testing.assert_close(_tokens(feats["vit-block0-norm-out"]), x)
    with torch.no_grad():
        for proj in ("q", "k", "v"):
            torch.testing.assert_close(_tokens(feats[pre + proj]), getattr(attn, f"to_{proj}")(x))


def test_block_and_attention_outputs_are_the_image_stream(captured):
    family, model, feats, seen = captured["family"], captured["model"], captured["feats"], captured["seen"]
    if family == "pixart":
        torch.testing.assert_close(_tokens(feats["vit-block1-out"]), seen["out"])
        return
    torch.testing.assert_close(_tokens(feats["vit-block0-out"]), seen["out"])
    if family == "sd3":  # the last block (context_pre_only) too
        torch.testing.assert_close(_tokens(feats["vit-block1-out"]), seen["out-b1"])
        return
    n = GRID_HW[0] * GRID_HW[1]  # single-stream blocks run on [text; image]: the image is the tail
    torch.testing.assert_close(_tokens(feats["vit-block0-attn-out"]), seen["attn"])
    torch.testing.assert_close(_tokens(feats["vit-block2-out"]), seen["single-out"])
    torch.testing.assert_close(_tokens(feats["vit-block2-norm-out"]), seen["single-norm"][:, -n:])
    torch.testing.assert_close(_tokens(feats["vit-block2-attn-out"]), seen["single-attn"][:, -n:])
    with torch.no_grad():
        q = model.single_transformer_blocks[1].attn.to_q(seen["single-norm"])
    torch.testing.assert_close(_tokens(feats["vit-block2-q"]), q[:, -n:])


def _head_mean_probs(q, k, heads, norm_q=None, norm_k=None, rope=None):
    """softmax(QKᵀ/√d) averaged over heads from B×N×C projections (optional per-head norms and RoPE)."""
    from diffusers.models.embeddings import apply_rotary_emb

    d = q.shape[-1] // heads
    q, k = q.unflatten(-1, (heads, d)), k.unflatten(-1, (heads, d))  # B×N×heads×d
    if norm_q is not None:
        q, k = norm_q(q), norm_k(k)
    if rope is not None:
        q = apply_rotary_emb(q, tuple(r[-q.shape[1]:] for r in rope), sequence_dim=1)
        k = apply_rotary_emb(k, rope, sequence_dim=1)
    scores = q.transpose(1, 2) @ k.transpose(1, 2).transpose(-1, -2) / d ** 0.5
    return scores.softmax(-1).mean(1)  # B×Nq×Nk


def test_attention_maps_equal_an_independent_softmax(captured):
    family, model, feats, seen = captured["family"], captured["model"], captured["feats"], captured["seen"]
    n = GRID_HW[0] * GRID_HW[1]
    with torch.no_grad():
        if family == "pixart":
            attn, pre = model.transformer_blocks[1].attn1, "vit-block1-"
            probs = _head_mean_probs(_tokens(feats[pre + "self-q"]), _tokens(feats[pre + "self-k"]), attn.heads)
            self_map, cross_map = probs, None
            cross = feats[pre + "cross-map"]  # rows sum to 1 over the unmasked tokens; masked ones get 0
            torch.testing.assert_close(cross.sum(1), torch.ones(B, *GRID_HW))
            assert cross[0, 4].abs().max() < 1e-6 and cross[1, 3:].abs().max() < 1e-6
        elif family == "sd3":  # joint softmax over [image; text] keys
            attn, pre = model.transformer_blocks[1].attn, "vit-block1-"
            q, k = _tokens(feats[pre + "self-q"]), _tokens(feats[pre + "self-k"])
            probs = _head_mean_probs(q, torch.cat([k, seen["text-k"]], 1), attn.heads, attn.norm_q,
                                     _JointNorm(attn))
            self_map, cross_map = probs[:, :, :n], probs[:, :, n:]
        else:  # Flux: [text; image] keys, RoPE over the joint positions
            attn, pre = model.transformer_blocks[0].attn, "vit-block0-"
            rope = model.pos_embed(torch.cat([captured["inputs"]["txt_ids"], captured["inputs"]["img_ids"]]))
            q, k = _tokens(feats[pre + "q"]), _tokens(feats[pre + "k"])
            probs = _head_mean_probs(q, torch.cat([seen["text-k"], k], 1), attn.heads, attn.norm_q,
                                     _JointNorm(attn, added="norm_added_k", text=TEXT), rope)
            self_map, cross_map = probs[:, :, TEXT:], probs[:, :, :TEXT]
    torch.testing.assert_close(_tokens(feats[pre + "self-map"]), self_map, atol=1e-5, rtol=1e-4)
    if cross_map is not None:
        torch.testing.assert_close(_tokens(feats[pre + "cross-map"]), cross_map, atol=1e-5, rtol=1e-4)
        total = feats[pre + "self-map"].sum(1) + feats[pre + "cross-map"].sum(1)
        torch.testing.assert_close(total, torch.ones(B, *GRID_HW))


class _JointNorm:
    """norm_k on the image keys and norm_added_k on the text keys of a joint key sequence (B×N×heads×d)."""

    def __init__(self, attn, added="norm_added_k", text=None):
        self.attn, self.added, self.text = attn, added, text

    def __call__(self, k):
        norm_img, norm_txt = self.attn.norm_k, getattr(self.attn, self.added)
        if self.text is None:  # SD3: image first, TEXT tokens last
            return torch.cat([norm_img(k[:, :-TEXT]), norm_txt(k[:, -TEXT:])], 1)
        return torch.cat([norm_txt(k[:, :self.text]), norm_img(k[:, self.text:])], 1)


def test_early_exit_stops_after_the_last_requested_block(captured):
    model, inputs, feats = captured["model"], captured["inputs"], captured["feats"]
    name = captured["acts"][0].name  # block 0: nothing after it needs to run
    calls = []
    h = model.proj_out.register_forward_hook(lambda *a: calls.append(1) and None)
    try:
        with torch.no_grad(), ActivationCapture(model, [name]) as cap:
            early = cap.run(lambda: model(**inputs, return_dict=False))
    finally:
        h.remove()
    assert calls == []
    torch.testing.assert_close(early[name], feats[name])


# ---- pipelines end to end -------------------------------------------------------------------------
LETTERS = "abcdefghijklmnopqrstuvwxyz"


def _t5_tokenizer():
    """A genuine T5Tokenizer (Unigram) over a letter vocabulary, built offline."""
    from transformers import T5Tokenizer

    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -2.0)]
    pieces += [(c, -3.0) for c in LETTERS + "0123456789"] + [("▁" + c, -2.5) for c in LETTERS]
    return T5Tokenizer(vocab=pieces, extra_ids=0)


def _t5(d_model):
    from transformers import T5Config, T5EncoderModel

    return T5EncoderModel(T5Config(vocab_size=len(_t5_tokenizer()), d_model=d_model, d_kv=4, d_ff=16, num_layers=1,
                                   num_heads=2, relative_attention_num_buckets=8, pad_token_id=0, eos_token_id=1,
                                   decoder_start_token_id=0)).eval()  # T5's dropout is 0.1 in train mode


def _clip(cls, hidden=8, projection=None):
    from transformers import CLIPTextConfig

    from diffact.models.tokenizer import special_token_ids, vocab_size

    return cls(CLIPTextConfig(vocab_size=vocab_size(), hidden_size=hidden, intermediate_size=16, num_hidden_layers=1,
                              num_attention_heads=2, max_position_embeddings=77, projection_dim=projection or hidden,
                              **special_token_ids()))


def _vae(latent_channels, **factors):
    from diffusers import AutoencoderKL

    return AutoencoderKL(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 2,
                         up_block_types=("UpDecoderBlock2D",) * 2, block_out_channels=(8, 8), layers_per_block=1,
                         latent_channels=latent_channels, norm_num_groups=4, sample_size=32,
                         mid_block_add_attention=False, **factors)


def _pipeline(family):
    from diffusers import (DPMSolverMultistepScheduler, FlowMatchEulerDiscreteScheduler, FluxPipeline,
                           PixArtSigmaPipeline, StableDiffusion3Pipeline)
    from transformers import CLIPTextModel, CLIPTextModelWithProjection

    from diffact.models.tokenizer import build_clip_tokenizer

    torch.manual_seed(0)
    if family == "pixart":  # PixArt-Σ: T5 (300 tokens), SDXL-like 4-channel VAE, DPM-Solver
        return PixArtSigmaPipeline(tokenizer=_t5_tokenizer(), text_encoder=_t5(12), vae=_vae(4), transformer=_pixart(),
                                   scheduler=DPMSolverMultistepScheduler())
    if family == "sd3":  # CLIP-L ⊕ CLIG-G (77 tokens, padded to T5's width) then T5 (77 tokens); 16-ch VAE
        return StableDiffusion3Pipeline(
            transformer=_sd3(in_channels=16, joint_dim=20, pooled_dim=10),
            scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=_vae(16, shift_factor=0.1, scaling_factor=0.5),
            text_encoder=_clip(CLIPTextModelWithProjection, 8, 4), tokenizer=build_clip_tokenizer(),
            text_encoder_2=_clip(CLIPTextModelWithProjection, 8, 6), tokenizer_2=build_clip_tokenizer(),
            text_encoder_3=_t5(20), tokenizer_3=_t5_tokenizer())
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0, use_dynamic_shifting=True, base_shift=0.5, max_shift=1.15,
                                                base_image_seq_len=256, max_image_seq_len=4096)
    return FluxPipeline(transformer=_flux(in_channels=64, pooled_dim=8), scheduler=scheduler,
                        vae=_vae(16, shift_factor=0.1, scaling_factor=0.5), text_encoder=_clip(CLIPTextModel, 8),
                        tokenizer=build_clip_tokenizer(), text_encoder_2=_t5(12), tokenizer_2=_t5_tokenizer())


@pytest.fixture(scope="module")
def dit_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dit-pipelines")
    dirs = {}
    for family in ("pixart", "sd3", "flux"):
        _pipeline(family).save_pretrained(root / family)
        dirs[family] = root / family
    return dirs


def _images(n=2, size=32, seed=0):
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# sd3: 77 T5 tokens, SD3's training length (families/sd3.py T5_TOKENS), not encode_prompt's default 256
TEXT_TOKENS = {"pixart": 300, "sd3": 77 + 77, "flux": 512}


@pytest.mark.parametrize("family", ["pixart", "sd3", "flux"])
def test_saved_pipeline_extracts_end_to_end(dit_dirs, family):
    from diffact.extract.pipeline import DiffusionFeatureExtractor, ExtractionSettings
    from diffact.models.loading import load_pipeline, unet_family

    pipe = load_pipeline(str(dit_dirs[family]), device="cpu")
    assert unet_family(pipe.transformer) == family
    names = [a.name for a in walk_model(pipe.transformer)]
    names = [names[0], names[-1], "vit-block1-cross-map", "vit-block0-self-map"]
    settings = ExtractionSettings(t=50, prompt="a photo of a cat", image_size=32, noise_seed=3)
    seen = {}
    h = pipe.transformer.register_forward_pre_hook(
        lambda m, a, kw: seen.update(x=kw["hidden_states"], t=kw["timestep"]) or None, with_kwargs=True)
    try:
        ex = DiffusionFeatureExtractor(pipe, names, settings, early_exit=False)
        a = ex(_images(), ["a", "b"])
        b = DiffusionFeatureExtractor(pipe, names, settings)(_images()[1:], ["b"])  # per-id seeds, early exit
    finally:
        h.remove()
    grid = (8, 8)  # 32 px → VAE factor 2 → 16² latents → patch 2
    for name in names:
        channels = {"vit-block1-cross-map": TEXT_TOKENS[family], "vit-block0-self-map": 64}.get(name)
        assert a[name].shape[-2:] == grid and a[name].dtype == torch.float32
        if channels:
            assert a[name].shape[1] == channels
        torch.testing.assert_close(a[name][1:], b[name], atol=1e-5, rtol=1e-4)
    # the transformer's input: x_t at the grid timestep (flow matching: σ·noise + (1−σ)·x0 via scale_noise)
    latents = ex.encode_latents(_images()[1:], ["b"])  # the last call was image "b" alone
    from diffact.utils.seeding import torch_generator

    noise = torch.randn(latents.shape[1:], generator=torch_generator(3, "noise", "b", 0))[None]
    if family == "pixart":
        assert isinstance(ex.timestep, int) and seen["t"].tolist() == [ex.timestep]
        expected = ex.scheduler.add_noise(latents, noise, torch.tensor([ex.timestep]))
    else:
        sigma = ex.scheduler.sigmas[ex.scheduler.index_for_timestep(torch.tensor(ex.timestep))]
        assert isinstance(ex.timestep, float) and 0 < sigma < 0.3  # t = 50: little noise, as for the U-Nets
        expected = sigma * noise + (1 - sigma) * latents
        t_in = ex.timestep / 1000 if family == "flux" else ex.timestep
        torch.testing.assert_close(seen["t"], torch.tensor([t_in]))
        if family == "flux":
            expected = pipe._pack_latents(expected, 1, 16, 16, 16)
    torch.testing.assert_close(seen["x"], expected, atol=1e-5, rtol=1e-4)


def test_cli_layers_and_extract_on_a_dit_folder(dit_dirs, image_folder, tmp_path, cli):
    listing = cli("layers", "--model", str(dit_dirs["pixart"]), "--json", "--maps", "--resolution", "32")
    assert listing.returncode == 0, listing.stderr
    rows = [json.loads(line) for line in listing.stdout.splitlines()]
    assert len(rows) == 16 and rows[0]["name"] == "vit-block0-self-q"
    assert {(r["height"], r["width"]) for r in rows} == {(8, 8)}
    assert {r["channels"] for r in rows if r["kind"] in MAP_KINDS} == {64, 300}
    flux = cli("layers", "--model", str(dit_dirs["flux"]), "--maps", "--resolution", "32")
    assert flux.returncode == 0 and "# 24 activations" in flux.stdout and "vit-block2-attn-out" in flux.stdout
    out = tmp_path / "store"
    done = cli("extract", "--model", str(dit_dirs["sd3"]), "--family", "sd3", "--layers",
               "vit-block0-self-q,vit-block1-out", "--dataset-kind", "folder", "--dataset-root", str(image_folder),
               "--out", str(out), "--image-size", "32", "--device", "cpu")
    assert done.returncode == 0, done.stderr
    assert (out / "complete.json").is_file()

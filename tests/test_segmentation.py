"""Semantic segmentation with mmseg (paper §2.9, Table 2 left): zero-init ResBlocks, levels and head layout, the
paper configs' widths against the real U-Nets, the segmentor built from a config on tiny pipelines (frozen
diffusion model, trainable adapters and heads, prediction shape), ADE20K / Cityscapes fixture trees and their
checkers, the constant-class baseline, and the command line."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from diffact.utils.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
MMSEG = REPO / "config" / "mmseg"
DEMO_CONFIG = MMSEG / "demo" / "ade_demo.py"
PAPER_SOURCES = {"sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
                 "sdxl": "stabilityai/stable-diffusion-xl-base-1.0"}
PAPER_PROMPTS = {
    "ade20k": "a highly realistic photo of the real world. It can be an indoor scene, or an outdoor scene, or a photo of "
              "nature. high quality.",
    "cityscapes": "An urban street scene with multiple lanes, various buildings, traffic lights, cars in the lanes, and "
                  "pedestrians, highly realistic.",
}


# ---- ResBlock / MultiRes -------------------------------------------------------------------------------------------

@pytest.mark.parametrize("init", ["paper", "last_norm"])
def test_zero_init_resblock_is_the_identity(init):
    from diffact.tasks.segmentation.blocks import ResBlock

    torch.manual_seed(0)
    block = ResBlock(6, init)
    x = torch.randn(2, 6, 5, 5)
    assert torch.equal(block.train()(x), x)
    assert torch.equal(block.eval()(x), x)


def _one_step(block, steps=1):
    opt = torch.optim.SGD(block.parameters(), lr=0.1)
    g = torch.Generator().manual_seed(1)
    for _ in range(steps):
        x = torch.randn(2, 4, 6, 6, generator=g)
        target = torch.randn(2, 4, 6, 6, generator=g)
        opt.zero_grad()
        ((block(x) - target) ** 2).mean().backward()
        opt.step()


def test_paper_init_trains_only_the_last_norm_shift():
    """All-zero init (the paper's code): the inner conv output is constant, BN maps it to 0, so no gradient reaches
    either conv or the BN scales; after any number of steps only conv2's BN bias has moved."""
    from diffact.tasks.segmentation.blocks import ResBlock

    block = ResBlock(4, "paper")
    _one_step(block, steps=3)
    for name, param in block.named_parameters():
        if name == "conv2.1.bias":
            assert param.abs().sum() > 0, name
        else:
            assert torch.count_nonzero(param) == 0, name


def test_last_norm_init_lets_the_convolutions_train():
    from diffact.tasks.segmentation.blocks import ResBlock

    torch.manual_seed(0)
    block = ResBlock(4, "last_norm")
    before = {n: p.detach().clone() for n, p in block.named_parameters()}
    _one_step(block, steps=2)  # step 1 moves BN2's scale off zero, step 2 reaches the convolutions
    for name in ("conv1.0.weight", "conv2.0.weight", "conv2.1.weight", "conv2.1.bias"):
        assert not torch.equal(before[name], dict(block.named_parameters())[name]), name


def test_multires_applies_one_shared_block_n_times():
    from diffact.tasks.segmentation.blocks import MultiRes, ResBlock

    multi = MultiRes(3, 4, "paper")
    assert sum(p.numel() for p in multi.parameters()) == sum(p.numel() for p in ResBlock(3).parameters())
    with torch.no_grad():
        multi.block.conv2[1].bias.copy_(torch.tensor([1.0, -2.0, 0.5]))
    x = torch.randn(1, 3, 4, 4)
    # Paper init: each pass adds the BN2 shift b (the scale is 0), so four passes add 4b.
    expected = x + 4 * torch.tensor([1.0, -2.0, 0.5]).view(1, 3, 1, 1)
    assert torch.allclose(multi.eval()(x), expected)


def test_resblock_rejects_an_unknown_init():
    from diffact.tasks.segmentation.blocks import ResBlock

    with pytest.raises(ConfigError, match="init"):
        ResBlock(2, "xavier")


# ---- levels and head layout on the real architectures ----------------------------------------------------------

@functools.lru_cache(maxsize=None)
def _reference_unet(family):
    from diffact.models.configs import build_unet, reference_unet_config

    return build_unet(reference_unet_config(PAPER_SOURCES[family]))  # meta device: structure only


def _paper_levels(family, layers, image_size=None, levels=None):
    from diffact.extract.layersets import resolve_layers_arg
    from diffact.models.configs import PAPER_IMAGE_SIZE
    from diffact.tasks.segmentation import levels as lv

    unet = _reference_unet(family)
    names = resolve_layers_arg(unet, family, layers)
    infos = lv.layer_infos(unet, names, image_size or PAPER_IMAGE_SIZE[family], vae_factor=8)
    return lv.explicit_levels(infos, levels, "test") if levels else lv.group_by_resolution(infos)


@pytest.mark.parametrize("family, layer_set, widths, sides", [
    ("sd15", "legacy", [1280, 1280, 960], [16, 32, 64]),        # docs/paper.md §2.9 Legacy-v1.5
    ("sd15", "practical", [2560, 640, 320], [16, 32, 64]),      # Ours-v1.5
    ("sdxl", "legacy", [1280, 960], [64, 128]),                 # Legacy-XL [1280, 640 + 320]
    ("sdxl", "practical", [2560, 1280], [32, 64]),              # Ours-XL
    ("sd15", "amalgamation", [1280, 640, 640 + 320 + 154], [16, 32, 64]),  # + 2 × 77 aggregated cross-attn maps
])
def test_levels_group_the_paper_sets_by_resolution(family, layer_set, widths, sides):
    from diffact.tasks.segmentation import levels as lv

    levels = _paper_levels(family, layer_set)
    assert lv.level_channels(levels) == widths
    assert [level[0].side for level in levels] == sides


def test_head_layout_follows_the_paper_rule():
    from diffact.tasks.segmentation.levels import head_layout

    assert head_layout([2560, 1280]) == {"in_channels": [2560, 1280], "in_index": [0, 1], "pool_scales": (1, 2),
                                         "aux_in_index": 1, "aux_in_channels": 1280}
    three = head_layout([1280, 1280, 960])
    assert three["pool_scales"] == (1, 2, 3) and three["aux_in_index"] == 1
    one = head_layout([1280])
    assert one["pool_scales"] == (1,) and one["aux_in_index"] == 0 and one["aux_in_channels"] == 1280
    with pytest.raises(ConfigError):
        head_layout([])


def test_explicit_levels_must_cover_each_layer_once_at_one_size():
    from diffact.tasks.segmentation import levels as lv

    infos = [lv.LayerInfo("a", 4, 8), lv.LayerInfo("b", 2, 8), lv.LayerInfo("c", 3, 16)]
    assert lv.level_channels(lv.explicit_levels(infos, [["a", "b"], ["c"]], "cfg")) == [6, 3]
    with pytest.raises(ConfigError, match="mixes spatial sizes"):
        lv.explicit_levels(infos, [["a", "c"], ["b"]], "cfg")
    with pytest.raises(ConfigError, match="exactly once"):
        lv.explicit_levels(infos, [["a", "b"]], "cfg")
    with pytest.raises(ConfigError, match="'z'"):
        lv.explicit_levels(infos, [["a", "b", "z"], ["c"]], "cfg")


def test_combined_levels_of_ours_xl_t():
    """App. B.4: SDXL practical + up-level1-upsampler-out ⊕ PGv2's three layers = [3840, 1920, 1280]."""
    from diffact.tasks.segmentation import levels as lv

    sdxl = _paper_levels("sdxl", ["up-level0-repeat0-vit-block7-out", "up-level0-repeat0-vit-block5-out",
                                  "up-level1-repeat0-vit-block0-cross-q", "up-level1-repeat0-vit-block0-out",
                                  "up-level1-upsampler-out"])
    pgv2 = _paper_levels("sdxl", ["up-level0-repeat0-vit-block5-out", "up-level1-repeat0-vit-block0-cross-q",
                                  "up-level1-upsampler-out"])
    assert lv.combine_levels([sdxl, pgv2], ["sdxl", "pgv2"]) == [3840, 1920, 1280]
    sd15 = _paper_levels("sd15", "practical")
    with pytest.raises(ConfigError, match="spatial sizes differ"):
        lv.combine_levels([sdxl[:2] + [sdxl[2]], sd15], ["sdxl", "sd15"])
    with pytest.raises(ConfigError, match="same number of levels"):
        lv.combine_levels([sdxl, sdxl[:2]], ["a", "b"])


# ---- the paper configs ---------------------------------------------------------------------------------------------

def _paper_config_files():
    return sorted(p for d in ("ade20k", "cityscapes") for p in (MMSEG / d).glob("*.py"))


def test_every_dataset_set_model_config_exists():
    names = {f"{p.parent.name}/{p.stem}" for p in _paper_config_files()}
    expected = {f"{d}/{m}_{s}" for d in ("ade20k", "cityscapes") for m in ("sd15", "sdxl")
                for s in ("legacy", "practical", "amalgamation")} | {"ade20k/xl_t", "cityscapes/xl_t"}
    assert names == expected


@pytest.mark.parametrize("path", _paper_config_files(), ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_paper_config_widths_match_the_layer_sets(path):
    from mmengine.config import Config

    from diffact.tasks.segmentation import levels as lv

    cfg = Config.fromfile(str(path))
    parts = cfg.model.backbone.models
    per_part = [_paper_levels(p.get("family"), p["layers"], p.get("image_size")) for p in parts]
    widths = (lv.combine_levels(per_part, [p["source"] for p in parts]) if len(parts) > 1
              else lv.level_channels(per_part[0]))
    assert list(cfg.model.decode_head.in_channels) == widths
    assert cfg.model.auxiliary_head.in_channels == widths[lv.aux_index(len(widths))]
    assert cfg.model.decode_head.pool_scales == "auto"  # filled in as (1..n) at build
    for part in parts:
        assert part["source"] in set(PAPER_SOURCES.values()) | {"playgroundai/playground-v2-1024px-aesthetic"}
        assert part["image_size"] == {"sd15": 512, "sdxl": 1024}[part["family"]]


@pytest.mark.parametrize("dataset, crop, classes", [("ade20k", 512, 150), ("cityscapes", 1024, 19)])
def test_paper_schedule_and_data_settings(dataset, crop, classes):
    from mmengine.config import Config

    cfg = Config.fromfile(str(MMSEG / dataset / "sdxl_practical.py"))
    assert cfg.optim_wrapper.optimizer == {"type": "AdamW", "lr": 1.6e-4, "weight_decay": 1e-3}
    (poly,) = cfg.param_scheduler
    assert (poly.type, poly.power, poly.eta_min, poly.end) == ("PolyLR", 0.9, 1e-4, 80000)
    assert cfg.train_cfg.max_iters == 80000 and cfg.train_cfg.val_interval == 2000
    assert cfg.train_dataloader.batch_size == 2
    assert cfg.train_dataloader.sampler.type == "InfiniteSampler"
    assert cfg.model.data_preprocessor.size == (crop, crop)
    assert cfg.model.data_preprocessor.mean == [127.5] * 3 and cfg.model.data_preprocessor.std == [127.5] * 3
    assert cfg.model.test_cfg.mode == "slide" and cfg.model.test_cfg.crop_size == (crop, crop)
    assert cfg.model.decode_head.num_classes == cfg.model.auxiliary_head.num_classes == classes
    assert cfg.model.decode_head.type == "UPerHead" and cfg.model.auxiliary_head.type == "FCNHead"
    losses = [loss.type for loss in cfg.model.decode_head.loss_decode]
    assert losses == ["CrossEntropyLoss", "LovaszLoss"]
    assert cfg.model.backbone.prompt == PAPER_PROMPTS[dataset] and cfg.model.backbone.t == 50
    assert cfg.custom_imports.imports == ["diffact.tasks.segmentation.backbone",
                                          "diffact.tasks.segmentation.mmseg_data"]


# ---- the segmentor built from a config, on tiny pipelines ----------------------------------------------------------

def _demo_cfg(pipeline_dir, layers="legacy", **backbone):
    from mmengine.config import Config

    cfg = Config.fromfile(str(DEMO_CONFIG))
    cfg.model.backbone.models = [dict(source=str(pipeline_dir), layers=layers, image_size=64)]
    cfg.model.backbone.update(backbone)
    return cfg


def _build(cfg):
    from mmengine.model import revert_sync_batchnorm
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    import diffact.tasks.segmentation.backbone  # noqa: F401  (registers the modules, as custom_imports does)

    init_default_scope("mmseg")
    return revert_sync_batchnorm(MODELS.build(cfg.model))  # SyncBN → BN off a process group, as the Runner does


def _batch(n=2, h=64, w=64, classes=6, seed=0):
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample

    g = torch.Generator().manual_seed(seed)
    inputs, samples = [], []
    for _ in range(n):
        inputs.append(torch.randint(0, 256, (3, h, w), generator=g, dtype=torch.uint8))
        sample = SegDataSample(metainfo=dict(img_shape=(h, w), ori_shape=(h, w), pad_shape=(h, w)))
        sample.gt_sem_seg = PixelData(data=torch.randint(0, classes, (1, h, w), generator=g))
        samples.append(sample)
    return {"inputs": inputs, "data_samples": samples}


@pytest.fixture(scope="module")
def sd15_segmentor(tiny_pipeline_dirs):
    return _build(_demo_cfg(tiny_pipeline_dirs["sd15"]))


def test_segmentor_builds_with_levels_from_the_catalog(sd15_segmentor, tiny_pipeline_dirs):
    from diffact.extract.layersets import resolve_set
    from diffact.models.loading import load_pipeline
    from diffact.tasks.segmentation import levels as lv

    model = sd15_segmentor
    unet = load_pipeline(str(tiny_pipeline_dirs["sd15"]), device="cpu").unet
    names = resolve_set(unet, "sd15", "legacy")
    expected = lv.level_channels(lv.group_by_resolution(lv.layer_infos(unet, names, 64, vae_factor=2)))
    assert model.backbone.level_channels == expected and len(expected) == 3
    assert model.decode_head.in_channels == expected
    assert model.decode_head.in_index == [0, 1, 2]
    assert [m[0].output_size for m in model.decode_head.psp_modules] == [1, 2, 3]
    assert model.auxiliary_head.in_index == 1 and model.auxiliary_head.in_channels == expected[1]
    assert set(model.backbone.layer_blocks) == {f"0/{n}" for n in names}
    assert len(model.backbone.level_blocks) == 3 and len(model.backbone.merge_blocks) == 0
    model.init_weights()  # what the Runner calls: must not re-initialise the zero-init blocks
    blocks = [*model.backbone.layer_blocks.values(), *model.backbone.level_blocks.values()]
    assert all(torch.count_nonzero(p) == 0 for b in blocks for p in b.parameters())


def test_one_training_step_updates_only_the_trainable_parts(tiny_pipeline_dirs):
    from mmengine.optim import OptimWrapper

    model = _build(_demo_cfg(tiny_pipeline_dirs["sd15"], resblock_init="last_norm"))
    (part,) = model.backbone.parts
    pipe = part.extractor.pipe
    frozen = {f"{c}.{n}": p.detach().clone() for c in ("unet", "vae")
              for n, p in getattr(pipe, c).named_parameters()}
    assert pipe.text_encoder is None  # released once the prompt was encoded
    trainable = {n: p.detach().clone() for n, p in model.named_parameters()}
    assert not {id(p) for p in model.parameters()} & {id(p) for p in pipe.unet.parameters()}

    model.train()
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-3))
    for seed in range(2):  # last_norm init: step 1 moves the last BN scale, step 2 reaches the convolutions
        losses = model.train_step(_batch(seed=seed), optim)
    assert all(torch.isfinite(v).all() for v in losses.values())

    for name, before in frozen.items():
        component, param_name = name.split(".", 1)
        param = dict(getattr(pipe, component).named_parameters())[param_name]
        assert torch.equal(param, before), name
        assert not param.requires_grad, name
    assert not pipe.unet.training and not pipe.vae.training
    after = dict(model.named_parameters())
    changed = {n for n, before in trainable.items() if not torch.equal(after[n], before)}
    layer_block = next(iter(model.backbone.layer_blocks))
    assert f"backbone.layer_blocks.{layer_block}.block.conv1.0.weight" in changed
    assert any(n.startswith("backbone.level_blocks.") for n in changed)
    assert "decode_head.conv_seg.weight" in changed and "auxiliary_head.conv_seg.weight" in changed


def test_prediction_has_the_input_shape_with_slide_inference(sd15_segmentor):
    model = sd15_segmentor.eval()
    batch = _batch(n=1, h=64, w=96)  # two 64² windows with stride 64 (the second shifted back to fit)
    (out,) = model.test_step(batch)
    assert out.pred_sem_seg.data.shape == (1, 64, 96)
    assert out.seg_logits.data.shape == (6, 64, 96)
    assert int(out.pred_sem_seg.data.max()) < 6


def test_frozen_features_are_deterministic_per_image(sd15_segmentor):
    (part,) = sd15_segmentor.backbone.parts
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    first = part.features(x)
    second = part.features(x.flip(0))  # same images, other batch order → same noise per image
    name = part.layer_names[0]
    assert torch.allclose(first[name], second[name].flip(0), atol=1e-5)


def test_the_frozen_pass_runs_in_inference_mode_and_hands_out_plain_tensors(sd15_segmentor):
    (part,) = sd15_segmentor.backbone.parts
    modes = []
    handle = part.extractor.unet.register_forward_pre_hook(lambda *_: modes.append(torch.is_inference_mode_enabled()))
    try:
        feats = part.features(torch.rand(2, 3, 64, 64) * 2 - 1)
    finally:
        handle.remove()
    assert modes == [True]
    assert not any(t.is_inference() for t in feats.values())  # the trainable blocks may save them for backward


class _CountingExtractor:
    """Wraps a part's extractor and counts its U-Net passes (one per call)."""

    def __init__(self, extractor):
        self.extractor, self.calls = extractor, 0

    def __call__(self, images, ids):
        self.calls += 1
        return self.extractor(images, ids)


@pytest.mark.parametrize("cache_mb, passes", [(None, 1), (0, 2)])
def test_evaluation_windows_seen_before_reuse_their_activations(tiny_pipeline_dirs, cache_mb, passes):
    backbone = {} if cache_mb is None else {"eval_cache_mb": cache_mb}
    model = _build(_demo_cfg(tiny_pipeline_dirs["sd15"], **backbone)).eval()
    (part,) = model.backbone.parts
    counter = part.extractor = _CountingExtractor(part.extractor)
    first, second = (model.test_step(_batch(n=1, seed=3))[0] for _ in range(2))  # validation passes 1 and 2
    assert counter.calls == passes
    assert torch.equal(first.seg_logits.data, second.seg_logits.data)
    model.test_step(_batch(n=1, seed=4))  # another window: computed
    assert counter.calls == passes + 1
    model.train()
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    model.backbone(x), model.backbone(x)  # training crops are never reused
    assert counter.calls == passes + 3


def test_fine_first_order_hands_the_finest_level_to_the_head_first(tiny_pipeline_dirs, sd15_segmentor):
    model = _build(_demo_cfg(tiny_pipeline_dirs["sd15"], level_order="fine_first")).eval()
    paper = sd15_segmentor.backbone
    assert model.backbone.level_channels == paper.level_channels[::-1]
    assert model.decode_head.in_channels == paper.level_channels[::-1]
    x = torch.rand(1, 3, 64, 64) * 2 - 1
    sides = [o.shape[-1] for o in model.backbone(x)]
    assert sides == sorted(sides, reverse=True) == [o.shape[-1] for o in paper(x)][::-1]
    (out,) = model.test_step(_batch(n=1))
    assert out.pred_sem_seg.data.shape == (1, 64, 64)
    with pytest.raises(ConfigError, match="level_order"):
        _build(_demo_cfg(tiny_pipeline_dirs["sd15"], level_order="sideways"))


def test_explicit_widths_that_do_not_match_are_a_config_error(tiny_pipeline_dirs):
    cfg = _demo_cfg(tiny_pipeline_dirs["sd15"])
    cfg.model.decode_head.in_channels = [1280, 1280, 960]
    with pytest.raises(ConfigError, match="decode_head.in_channels"):
        _build(cfg)


def test_multi_model_backbone_concatenates_levels(tiny_pipeline_dirs):
    """Ours-XL-t's structure (App. B.4) on two tiny SDXL parts: MultiRes(C, 4) per layer, MultiRes(sum, 2) per
    level, one amalgamating ResBlock per level over both models' channels."""
    from mmengine.config import Config

    cfg = Config.fromfile(str(DEMO_CONFIG))
    root = str(tiny_pipeline_dirs["sdxl"])
    cfg.model.backbone.models = [
        dict(source=root, image_size=64, layers=["up-level0-repeat0-vit-block3-out", "up-level1-repeat0-vit-block0-out",
                                                 "up-level1-upsampler-out"]),
        dict(source=root, image_size=64, layers=["up-level0-repeat0-vit-block1-out",
                                                 "up-level1-repeat0-vit-block0-cross-q", "up-level1-upsampler-out"]),
    ]
    cfg.model.backbone.dtype = "auto"  # the rehearsal's: resolved once per part, so both parts share one pipeline
    model = _build(cfg)
    backbone = model.backbone
    assert len(backbone.parts) == 2 and backbone.parts[0].extractor.pipe is backbone.parts[1].extractor.pipe
    assert backbone.level_channels == [128, 64, 64]  # 64+64 @ 8², 32+32 @ 16², 32+32 @ 32² (tiny SDXL widths)
    assert {b.repeats for b in backbone.layer_blocks.values()} == {4}
    assert {b.repeats for b in backbone.level_blocks.values()} == {2}
    assert [b.conv1[0].in_channels for b in backbone.merge_blocks.values()] == [128, 64, 64]
    outs = backbone(torch.rand(1, 3, 64, 64) * 2 - 1)
    assert [tuple(o.shape) for o in outs] == [(1, 128, 8, 8), (1, 64, 16, 16), (1, 64, 32, 32)]
    # Both parts encoded their prompt before the shared pipeline's text encoders were released (one load, one
    # release after the last part that uses it): the prompts' conditioning stays, the encoders' weights go.
    pipe = backbone.parts[0].extractor.pipe
    assert pipe.text_encoder is None and pipe.text_encoder_2 is None
    assert all(p.extractor._text["encoder_hidden_states"].shape[0] == 1 for p in backbone.parts)


def test_backbone_config_errors_name_the_field(tiny_pipeline_dirs):
    cfg = _demo_cfg(tiny_pipeline_dirs["sd15"])
    cfg.model.backbone.models = [dict(source=str(tiny_pipeline_dirs["sd15"]))]
    with pytest.raises(ConfigError, match=r"models\[0\].*'layers' is required"):
        _build(cfg)
    cfg.model.backbone.models = []
    with pytest.raises(ConfigError, match="models is empty"):
        _build(cfg)


# ---- ADE20K and Cityscapes layouts ---------------------------------------------------------------------------------

def _png(path, array):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.asarray(array, dtype=np.uint8)).save(path)


def _jpg(path, h, w):
    from diffact.data.images import save_jpeg

    path.parent.mkdir(parents=True, exist_ok=True)
    save_jpeg(np.full((h, w, 3), 128, dtype=np.uint8), path)


def _ade_tree(root, meta=True):
    """2 training + 1 validation image; raw labels (0 = other): training mostly class 1, validation [[1,1],[2,0]]."""
    for i, label in enumerate(([[1, 1], [1, 2]], [[1, 3], [0, 1]])):
        _jpg(root / "images" / "training" / f"ADE_train_{i:08d}.jpg", 2, 2)
        _png(root / "annotations" / "training" / f"ADE_train_{i:08d}.png", label)
    _jpg(root / "images" / "validation" / "ADE_val_00000000.jpg", 2, 2)
    _png(root / "annotations" / "validation" / "ADE_val_00000000.png", [[1, 1], [2, 0]])
    if meta:
        (root / "dataset.json").write_text(json.dumps({"num_classes": 3, "class_names": ["a", "b", "c"],
                                                       "train_count": 2, "val_count": 1}))
    return root


def test_ade20k_fixture_tree_reads_and_checks(tmp_path):
    from diffact.data.ade20k import ade20k_pairs, check_ade20k, load_ade20k_label

    root = _ade_tree(tmp_path / "ade")
    assert check_ade20k(root) == []
    pairs = ade20k_pairs(root, "train")
    assert [p.id for p in pairs] == ["training/ADE_train_00000000", "training/ADE_train_00000001"]
    (val,) = ade20k_pairs(root, "validation")
    assert load_ade20k_label(val.label).tolist() == [[0, 0], [1, 255]]  # reduce_zero_label
    from diffact.data.registry import dataset_images

    assert [i for i, _ in dataset_images("ade20k", root)] == [p.id for p in pairs] + [val.id]
    assert [i for i, _ in dataset_images("ade20k", root, "val")] == ["validation/ADE_val_00000000"]


def test_ade20k_checker_names_the_broken_files(tmp_path):
    from diffact.data.ade20k import check_ade20k

    root = _ade_tree(tmp_path / "ade")
    (root / "annotations" / "training" / "ADE_train_00000001.png").unlink()
    _png(root / "annotations" / "validation" / "ADE_val_00000000.png", [[1, 9, 1], [1, 1, 1]])
    problems = "\n".join(check_ade20k(root))
    assert "ADE_train_00000001" in problems and "no label map" in problems
    assert "ADE_val_00000000.png: label value 9 above 3" in problems
    assert "ADE_val_00000000.png (3×2 vs image 2×2)" in problems
    real = _ade_tree(tmp_path / "real", meta=False)
    assert any("expected 20210" in p and "official" in p for p in check_ade20k(real))
    assert check_ade20k(real, official_counts=False) == []  # a fixture tree in the real layout (the rehearsal)
    assert "does not exist" in check_ade20k(tmp_path / "nowhere")[0]


def test_demo_ade_builder_writes_an_ade20k_layout_mmseg_reads(tmp_path):
    from mmengine.registry import init_default_scope
    from mmseg.registry import DATASETS

    import diffact.tasks.segmentation.mmseg_data  # noqa: F401
    from diffact.data.ade20k import check_ade20k
    from diffact.data.demo_ade import CLASSES, DemoAdeConfig, make_demo_ade

    root = make_demo_ade(tmp_path / "ade-demo", DemoAdeConfig(size=32, n_train=2, n_val=1, seed=0))
    assert check_ade20k(root) == []
    meta = json.loads((root / "dataset.json").read_text())
    assert meta["class_names"] == list(CLASSES) == ["wall", "floor", "window", "table", "ball", "animal"]
    init_default_scope("mmseg")
    pipeline = [dict(type="LoadImageFromFile"), dict(type="LoadAnnotations", reduce_zero_label=True)]
    dataset = DATASETS.build(dict(type="DemoADE20KDataset", data_root=str(root), pipeline=pipeline,
                                  data_prefix=dict(img_path="images/training", seg_map_path="annotations/training")))
    assert len(dataset) == 2 and dataset.metainfo["classes"] == CLASSES
    labels = dataset[0]["gt_seg_map"]
    assert labels.shape == (32, 32) and set(np.unique(labels)) <= set(range(6)) | {255}


def _city_tree(root, label_ids=False):
    frame = "aachen_000000_000019"
    _jpg(root / "leftImg8bit" / "train" / "aachen" / f"{frame}_leftImg8bit.png", 2, 2)
    _jpg(root / "leftImg8bit" / "val" / "lindau" / "lindau_000000_000019_leftImg8bit.png", 2, 2)
    suffix = "_gtFine_labelIds.png" if label_ids else "_gtFine_labelTrainIds.png"
    values = [[7, 26], [0, 33]] if label_ids else [[0, 13], [255, 18]]
    _png(root / "gtFine" / "train" / "aachen" / f"{frame}{suffix}", values)
    _png(root / "gtFine" / "val" / "lindau" / f"lindau_000000_000019{suffix}", values)
    return root


def test_cityscapes_fixture_tree_reads_and_checks(tmp_path):
    from diffact.data.cityscapes import check_cityscapes, cityscapes_pairs, load_cityscapes_label

    root = _city_tree(tmp_path / "city")
    problems = check_cityscapes(root)
    assert len(problems) == 2 and all("official release" in p for p in problems)  # 1 image each, not 2975 / 500
    (pair,) = cityscapes_pairs(root, "train")
    assert pair.id == "train/aachen/aachen_000000_000019"
    assert load_cityscapes_label(pair.label).tolist() == [[0, 13], [255, 18]]
    from diffact.data.registry import dataset_images

    assert [i for i, _ in dataset_images("cityscapes", root)] == [pair.id, "val/lindau/lindau_000000_000019"]


def test_cityscapes_train_ids_from_label_ids(tmp_path):
    from diffact.data.cityscapes import check_cityscapes, cityscapes_pairs, load_cityscapes_label, write_train_ids

    root = _city_tree(tmp_path / "city", label_ids=True)
    assert any("labelTrainIds" in p and "cityscapes-train-ids" in p for p in check_cityscapes(root))
    assert write_train_ids(root) == 2
    (pair,) = cityscapes_pairs(root, "val")
    assert load_cityscapes_label(pair.label).tolist() == [[0, 13], [255, 18]]  # road, car, unlabeled, bicycle
    assert write_train_ids(root) == 0  # existing files are kept


def test_cityscapes_checker_names_the_broken_files(tmp_path):
    from diffact.data.cityscapes import check_cityscapes

    root = _city_tree(tmp_path / "city")
    _png(root / "gtFine" / "val" / "lindau" / "lindau_000000_000019_gtFine_labelTrainIds.png", [[0, 19], [1, 1]])
    (root / "gtFine" / "train" / "aachen" / "aachen_000000_000019_gtFine_labelTrainIds.png").unlink()
    problems = "\n".join(check_cityscapes(root))
    assert "lindau_000000_000019_gtFine_labelTrainIds.png: label value 19 above 18" in problems
    assert "aachen/aachen_000000_000019" in problems and "no label map" in problems
    assert "official release" in problems
    assert "official release" not in "\n".join(check_cityscapes(root, official_counts=False))


# ---- constant-class baseline ---------------------------------------------------------------------------------------

def test_constant_baseline_by_hand(tmp_path):
    """Training pixels: class 0 (raw 1) 5×, class 1 once, class 2 once → predict class 0. Validation (after
    reduce_zero_label) [[0, 0], [1, ignore]]: IoU0 = 2/3, IoU1 = 0, class 2 absent → mIoU = 33.33, aAcc = 66.67."""
    from diffact.tasks.segmentation.baseline import constant_baseline

    row = constant_baseline("ade20k", _ade_tree(tmp_path / "ade"))
    assert (row["class_index"], row["class_name"]) == (0, "a")
    assert row["train_share"] == pytest.approx(5 / 7)
    assert row["miou"] == pytest.approx(100 / 3)
    assert row["aacc"] == pytest.approx(200 / 3)
    assert row["iou.a"] == pytest.approx(200 / 3) and row["iou.b"] == 0 and np.isnan(row["iou.c"])


# ---- command line and workflow config ------------------------------------------------------------------------------

def test_seg_train_overrides_build_the_run_config(tmp_path):
    from diffact.tasks.segmentation.run import PartOverride, SegRun, build_config

    run = SegRun(config=str(DEMO_CONFIG), work_dir=str(tmp_path), data_root="data/x", iters=40, seed=3,
                 parts=[PartOverride(source="m/a", layers="practical"), PartOverride(source="m/b", layers="a,b")],
                 options={"model.backbone.resblock_init": "last_norm"})
    cfg = build_config(run)
    assert cfg.model.backbone.models == [{"source": "m/a", "layers": "practical", "image_size": 64},
                                         {"source": "m/b", "layers": "a,b"}]
    assert cfg.train_cfg.max_iters == 40 and cfg.param_scheduler[0].end == 40
    assert cfg.train_dataloader.dataset.data_root == cfg.test_dataloader.dataset.data_root == "data/x"
    assert cfg.randomness.seed == 3 and cfg.model.backbone.resblock_init == "last_norm"
    with pytest.raises(ConfigError, match="does not exist"):
        build_config(SegRun(config="config/mmseg/nope.py", work_dir=str(tmp_path)))


def test_the_run_config_is_formatted_once_for_every_copy_the_runner_shows(tmp_path, monkeypatch):
    """mmengine formats the config with yapf each time it logs, dumps, visualises or checkpoints it (five times a
    run, ~0.5 CPU s each): the run's config formats each content once, with mmengine's own text."""
    import copy

    import mmengine.config.config as mmconfig
    from mmengine.config import Config

    from diffact.tasks.segmentation.run import SegRun, build_config

    calls = []
    format_code = mmconfig.FormatCode
    monkeypatch.setattr(mmconfig, "FormatCode", lambda *a, **k: calls.append(1) or format_code(*a, **k))
    cfg = build_config(SegRun(config=str(DEMO_CONFIG), work_dir=str(tmp_path), iters=40, seed=11))
    text = cfg.pretty_text
    runner_copy = copy.deepcopy(cfg)  # what Runner.__init__ keeps
    runner_copy.dump(str(tmp_path / "dumped.py"))
    assert runner_copy.pretty_text == text and (tmp_path / "dumped.py").read_text() == text
    assert len(calls) == 1
    plain = Config.fromfile(str(DEMO_CONFIG))
    plain.merge_from_dict(cfg.to_dict())
    assert plain.pretty_text == text  # mmengine's own text
    runner_copy.train_cfg.max_iters = 41  # a changed value is formatted again
    assert "max_iters=41" in runner_copy.pretty_text and "max_iters=40" in cfg.pretty_text


def test_seg_train_part_flags_must_line_up(cli):
    result = cli("seg-train", str(DEMO_CONFIG), "--work-dir", "w", "--out", "o.csv", "--model", "a", "--model", "b",
                 "--layers", "legacy")
    assert result.returncode == 2 and "--layers given 1 time(s) for 2 model(s)" in result.stderr


@pytest.mark.slow
def test_seg_train_and_baseline_commands_write_csvs(tiny_pipeline_dirs, tmp_path, cli):
    import pandas as pd

    root = tmp_path / "ade-demo"
    assert cli("make-demo-ade", "--out", root, "--train", "2", "--val", "1").returncode == 0
    out = tmp_path / "run.csv"
    result = cli("seg-train", DEMO_CONFIG, "--work-dir", tmp_path / "work", "--out", out, "--model",
                 tiny_pipeline_dirs["sdxl"], "--layers", "legacy", "--data-root", root, "--iters", "2", "--threads",
                 "1", "--label", "model=tiny", "--label", "layer_set=legacy", "--cfg-options",
                 "model.backbone.resblock_init=last_norm", "model.decode_head.channels=16", "train_cfg.val_interval=1")
    assert result.returncode == 0, result.stderr
    row = pd.read_csv(out).iloc[0]
    assert (row["model"], row["layer_set"], row["iters"], row["n_val"]) == ("tiny", "legacy", 2, 1)
    assert 0 <= row["miou"] <= 100 and row["sec_per_iter"] > 0 and row["cpu_sec_per_iter"] > 0
    assert {f"iou.{c}" for c in ("wall", "floor", "animal")} <= set(row.index)
    assert (tmp_path / "work" / "iter_2.pth").is_file()
    assert row["test_from"] == "validation after iteration 2"  # the demo config validates, as the paper's do
    # every validation (here after iterations 1 and 2) is in the history beside the run's CSV
    history = pd.read_csv(tmp_path / "run.history.csv")
    assert list(history["iteration"]) == [1, 2] and {"miou", "aacc", "iou.wall", "acc.wall"} <= set(history.columns)
    assert row["miou_last"] == history["miou"].iloc[-1] == row["miou"]
    assert row["miou_best"] == history["miou"].max()
    assert row["best_iter"] == history["iteration"][history["miou"].idxmax()]
    base = tmp_path / "base.csv"
    assert cli("seg-baseline", "--layout", "ade20k", "--root", root, "--out", base).returncode == 0
    assert pd.read_csv(base).iloc[0]["class_name"] in ("wall", "floor")
    assert cli("seg-check", "--layout", "ade20k", "--root", root).returncode == 0


def test_the_history_summary_is_the_last_and_the_first_best_validation():
    from diffact.tasks.segmentation.run import history_summary, metric_columns

    rows = [{"iteration": 100, "miou": 20.0}, {"iteration": 200, "miou": 31.5}, {"iteration": 300, "miou": 31.5},
            {"iteration": 400, "miou": 28.25}]
    assert history_summary(rows) == {"miou_last": 28.25, "miou_best": 31.5, "best_iter": 200}
    assert history_summary([{"iteration": 1, "miou": float("nan")}, {"iteration": 2, "miou": 3.0}])["best_iter"] == 2
    assert history_summary([]) == {"miou_last": None, "miou_best": None, "best_iter": None}
    columns = metric_columns({"aAcc": 80.0, "mIoU": 29.670000076, "mAcc": 40.0, "IoU.wall": 50.0, "Acc.wall": 60.0})
    assert columns == {"miou": 29.67, "macc": 40.0, "aacc": 80.0, "iou.wall": 50.0, "acc.wall": 60.0}


def test_the_demo_config_validates_during_training_like_the_paper_configs():
    """GDF's configs (configs/ade_sdxl.py and the others) validate every 2000 of 80k iterations, and the run keeps
    every validation; the demo config validates too (every 100 of 300), so its history and best mIoU mean the
    same thing, and its last validation is the test."""
    from mmengine.config import Config

    from diffact.tasks.segmentation.run import test_repeats_validation

    cfg = Config.fromfile(str(DEMO_CONFIG))
    assert cfg.val_cfg == {"type": "ValLoop"} and cfg.val_dataloader and cfg.train_cfg.val_interval == 100
    assert test_repeats_validation(cfg)


def test_the_demo_datasets_skip_mmengines_serialisation_and_its_full_gc():
    from mmengine.config import Config

    cfg = Config.fromfile(str(DEMO_CONFIG))
    for name in ("train_dataloader", "val_dataloader", "test_dataloader"):
        assert cfg[name].num_workers == 0, name  # nothing would share the serialised list
        assert cfg[name].dataset.serialize_data is False, name


def test_workflow_config_declares_exactly_the_unavailable_demo_sets():
    from conftest import assert_declared_unavailable_matches

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    section = config["segmentation"]
    assert_declared_unavailable_matches(config, section, section["models"], section["layer_sets"])


def test_workflow_plan_of_the_demo_profile():
    from diffact.workflow import segmentation as plan

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    runs = plan.runs(config)
    assert ("ade-demo", "sdxl-tiny", "practical") in runs and len(runs) == 6  # the demo SDXL has Ours-XL's blocks
    assert plan.targets(config)[-1] == "results/segmentation/ade-demo/constant_baseline.csv"
    assert "results/segmentation/ade-demo/combined/xl-t.csv" in plan.run_csvs(config)
    assert plan.mmseg_config(config, "ade-demo", "sd15-tiny", "legacy") == "config/mmseg/demo/ade_demo.py"
    args = plan.seg_train_args(config, "ade-demo", "sd15-tiny", "legacy")
    assert ("--model results/models/sd15-tiny --family sd15 --layers legacy --image-size 64" in args
            and "--data-root results/data/ade-demo" in args and "--iters 300" in args)
    combined = plan.seg_train_args(config, "ade-demo", "combined", "xl-t")
    assert combined.count("--model results/models/sdxl-tiny") == 2
    assert "--dtype" not in args  # the mmseg config's dtype unless the profile sets one (the rehearsal: float32)
    config["segmentation"]["dtype"] = "float32"
    assert "--iters 300 --dtype float32" in plan.seg_train_args(config, "ade-demo", "sd15-tiny", "legacy")
    assert plan.model_inputs(config, "combined", "xl-t") == ["results/models/sdxl-tiny/model_index.json"] * 2
    # A combined entry's cfg_options (the rehearsal's SGD for Ours-XL-t) reach its runs, and only its runs.
    config["segmentation"]["combined"]["xl-t"]["cfg_options"] = ["optim_wrapper.optimizer.type=SGD"]
    assert "--cfg-options optim_wrapper.optimizer.type=SGD --label" in plan.seg_train_args(
        config, "ade-demo", "combined", "xl-t")
    assert "--cfg-options" not in plan.seg_train_args(config, "ade-demo", "sd15-tiny", "legacy")
    # segmentation.workers reaches every run as --workers, which overrides all three dataloaders
    config["segmentation"]["workers"] = 0
    assert "--workers 0" in plan.seg_train_args(config, "ade-demo", "sd15-tiny", "legacy")
    from diffact.tasks.segmentation.commands import dataloader_worker_options

    assert dataloader_worker_options(0) == {f"{d}_dataloader.{k}": v for d in ("train", "val", "test")
                                           for k, v in (("num_workers", 0), ("persistent_workers", False))}
    assert dataloader_worker_options(2)["val_dataloader.persistent_workers"] is True
    entries = plan.table_plan(config)
    assert len(entries) == 7 and not any(e["unavailable"] for e in entries)
    assert entries[0]["history"] == entries[0]["csv"].removesuffix(".csv") + ".history.csv"
    assert plan.history_csvs(config) == [p.removesuffix(".csv") + ".history.csv" for p in plan.run_csvs(config)]
    with pytest.raises(ConfigError, match="kind 'ddpmseg'"):
        plan.kind(config, "seg-simple")


def test_workflow_plan_of_the_paper_profile_names_existing_configs():
    from diffact.workflow import segmentation as plan

    config = yaml.safe_load((REPO / "config" / "paper.yaml").read_text())
    if "segmentation" not in config:
        pytest.skip("config/paper.yaml has no segmentation section")
    paths = {plan.mmseg_config(config, d, m, s) for d, m, s in plan.runs(config)}
    paths |= {plan.mmseg_config(config, d, plan.COMBINED, n)
              for d in plan.datasets(config) for n in plan.combined(config)}
    assert "config/mmseg/ade20k/sdxl_practical.py" in paths and "config/mmseg/cityscapes/xl_t.py" in paths
    assert all((REPO / p).is_file() for p in paths), sorted(p for p in paths if not (REPO / p).is_file())


@pytest.mark.slow
def test_the_test_metrics_are_the_final_validation_when_both_are_the_same_evaluation(tiny_pipeline_dirs, tmp_path):
    """The paper configs test on the validation set, which mmengine has just validated after the last iteration:
    its metrics stand for the test (no second pass over the slide windows) and equal what the test loop gives."""
    from mmengine.config import Config

    from diffact.data.demo_ade import DemoAdeConfig, make_demo_ade
    from diffact.tasks.segmentation.run import PartOverride, SegRun, test_repeats_validation, train_and_evaluate

    root = make_demo_ade(tmp_path / "ade-demo", DemoAdeConfig(size=32, n_train=2, n_val=1, seed=0))
    # The demo config with validation on the validation split, as the paper configs have it.
    validating = tmp_path / "ade_demo_validating.py"
    cfg = Config.fromfile(str(DEMO_CONFIG))
    cfg.val_dataloader, cfg.val_evaluator, cfg.val_cfg = cfg.test_dataloader, cfg.test_evaluator, {"type": "ValLoop"}
    cfg.dump(str(validating))
    results = {}
    for reuse in (True, False):
        run = SegRun(config=str(validating), work_dir=str(tmp_path / f"work-{reuse}"), data_root=str(root), iters=2,
                     parts=[PartOverride(source=str(tiny_pipeline_dirs["sd15"]), layers="legacy")],
                     options={"model.decode_head.channels": 16, "model.auxiliary_head.channels": 16})
        results[reuse] = train_and_evaluate(run, reuse_final_validation=reuse)
    assert results[True]["test_from"] == "validation after iteration 2"
    assert results[False]["test_from"] == "test loop"
    reused, tested = results[True]["metrics"], results[False]["metrics"]
    assert reused.keys() == tested.keys() and "mIoU" in reused
    assert all(reused[k] == tested[k] or (math.isnan(reused[k]) and math.isnan(tested[k])) for k in reused)
    cfg = Config.fromfile(str(validating))
    assert test_repeats_validation(cfg)
    cfg.test_dataloader = {**cfg.test_dataloader, "batch_size": 2}
    assert not test_repeats_validation(cfg)  # another evaluation: the test loop runs


def test_the_workflow_declares_each_runs_validation_history():
    import subprocess
    import sys

    target = "results/segmentation/ade-demo/sd15-tiny/legacy.history.csv"
    done = subprocess.run([sys.executable, "-m", "snakemake", "-n", "-p", "--forceall", "--nolock", "--cores", "1",
                           target], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"--out results/segmentation/ade-demo/sd15-tiny/legacy.csv --history {target}" in done.stdout


def _run_notebook(path: Path, **parameters) -> None:
    """Run a py:percent notebook as papermill would (the parameters after the cell tagged `parameters`), in-process."""
    import jupytext

    namespace: dict = {}
    for cell in jupytext.read(path).cells:
        if cell.cell_type == "code":
            exec(compile(cell.source, str(path), "exec"), namespace)
            if "parameters" in cell.metadata.get("tags", []):
                namespace.update(parameters)


def test_table2_left_shows_the_last_and_the_best_validation_and_says_which_compares(tmp_path):
    import pandas as pd

    run = {"channels": 3520, "level_channels": "1280 1280 960", "iters": 300, "sec_per_iter": 0.5,
           "cpu_sec_per_iter": 0.9, "miou": 30.25, "macc": 40.0, "aacc": 70.0}
    pd.DataFrame([{**run, "miou_last": 30.25, "miou_best": 33.5, "best_iter": 200}]).to_csv(tmp_path / "a.csv",
                                                                                        index=False)
    pd.DataFrame({"iteration": [100, 200, 300], "miou": [20.0, 33.5, 30.25]}).to_csv(tmp_path / "a.history.csv",
                                                                                     index=False)
    pd.DataFrame([run]).to_csv(tmp_path / "old.csv", index=False)  # written before runs kept their history
    entry = {"dataset": "ade-demo", "kind": "ade20k", "model": "sd15-tiny", "family": "sd15", "unavailable": ""}
    plan = [{**entry, "layer_set": "legacy", "csv": str(tmp_path / "a.csv"), "history": str(tmp_path / "a.history.csv")},
            {**entry, "layer_set": "practical", "csv": str(tmp_path / "old.csv"),
             "history": str(tmp_path / "old.history.csv")}]
    _run_notebook(REPO / "notebooks" / "table2_left.py", plan=plan, out_stem=str(tmp_path / "table2_left"))
    text = (tmp_path / "table2_left.md").read_text()
    header = text.splitlines()[2]
    assert "ours, last (mIoU %)" in header and "ours, best (mIoU %)" in header
    assert "| 30.2 | 33.5 (iter 200 of 3) | 40.3 |" in text  # last, best, the paper's Legacy-v1.5 on ADE20K
    assert "| 30.2 | – | 41.1 |" in text  # no history: no best
    assert "*last* compares with it if it reports the final model" in text
    table = pd.read_csv(tmp_path / "table2_left.csv")
    assert list(table["miou_best"][:2].fillna(-1)) == [33.5, -1] and table["best_iter"][0] == 200

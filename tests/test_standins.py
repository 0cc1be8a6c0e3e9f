"""Stand-in models (diffact make-standin-models): the real configs as data, the hub cache layout, loading by hub id
through models.loading offline, determinism, and the guard against writing beside real weights.

Full-size stand-ins take minutes and tens of GB, so the layout tests shrink the widths of the real configs (same
classes, same component list, same tokenizer) in a copy of models/hub_configs; the full-size configs are checked
on the meta device."""

import json
import shutil

import pytest

from diffact.models import configs, standins

SHRINK = {
    "unet": {"block_out_channels": None, "attention_head_dim": None, "norm_num_groups": 8, "layers_per_block": 1},
    "vae": {"block_out_channels": [8, 8, 8, 8], "norm_num_groups": 8, "layers_per_block": 1},
    "text": {"hidden_size": 16, "intermediate_size": 32, "num_attention_heads": 2, "num_hidden_layers": 1,
             "projection_dim": 16},
}


def _shrink(key: str, component: str, config: dict) -> dict:
    if component == "unet":
        levels = len(config["block_out_channels"])
        config.update(block_out_channels=[8 * (i + 1) for i in range(levels)], attention_head_dim=2,
                      norm_num_groups=8, layers_per_block=1)
        if key in ("sdxl", "pgv2"):  # cross attention width = both encoders' hidden sizes, pooled = 16 + 6 × 256
            config.update(cross_attention_dim=32, transformer_layers_per_block=[1, 1, 1],
                          projection_class_embeddings_input_dim=16 + 6 * 256)
        else:
            config.update(cross_attention_dim=16)
    elif component == "vae":
        config.update(SHRINK["vae"])
    elif "architectures" in config:
        config.update(SHRINK["text"])
    return config


@pytest.fixture()
def small_configs(tmp_path, monkeypatch):
    """models/hub_configs copied with every width shrunk; configs and standins read the copy."""
    root = tmp_path / "hub_configs"
    for key in ("sd15", "sdxl"):
        (root / key).mkdir(parents=True)
        for file in (configs.HUB_CONFIGS / key).glob("*.json"):
            config = _shrink(key, file.stem, json.loads(file.read_text()))
            (root / key / file.name).write_text(json.dumps(config))
    monkeypatch.setattr(configs, "HUB_CONFIGS", root)
    configs._read_component.cache_clear()
    yield root
    configs._read_component.cache_clear()


def test_full_size_configs_fit_together():
    """Each pipeline has its components and the components agree on the widths they exchange (the U-Net
    configs' candidate counts, §2.3, are tests/test_catalog.py's)."""
    assert configs.pipeline_components("sd15") == ["scheduler", "text_encoder", "tokenizer", "unet", "vae"]
    assert configs.pipeline_components("sdxl") == ["scheduler", "text_encoder", "text_encoder_2", "tokenizer",
                                                   "tokenizer_2", "unet", "vae"]
    # SDXL's U-Net reads both encoders' hidden states (768 + 1280) and bigG's pooled 1280 + 6 time ids × 256
    sdxl = {c: configs.component_config("sdxl", c) for c in ("unet", "text_encoder", "text_encoder_2")}
    assert sdxl["unet"]["cross_attention_dim"] == sdxl["text_encoder"]["hidden_size"] + sdxl["text_encoder_2"]["hidden_size"]
    assert sdxl["unet"]["projection_class_embeddings_input_dim"] == sdxl["text_encoder_2"]["projection_dim"] + 6 * 256
    assert configs.component_config("sd21", "unet")["cross_attention_dim"] == configs.component_config("sd21", "text_encoder")["hidden_size"]
    assert all(configs.component_config(k, "text_encoder")["vocab_size"] == 49408 for k in ("sd15", "sd21", "sdxl", "pgv2"))


def test_standin_resolves_by_hub_id_offline_and_says_it_is_a_standin(small_configs, tmp_path, monkeypatch, caplog):
    from diffact.models.loading import load_pipeline

    cache = tmp_path / "hub"
    snapshot = standins.write_standin(cache, "sdxl", seed=0, variants=("fp16",))
    repo = standins.repo_folder(cache, "stabilityai/stable-diffusion-xl-base-1.0")
    assert (repo / "refs" / "main").read_text() == snapshot.name == standins.standin_commit("sdxl", 0)
    assert (snapshot / "unet" / "diffusion_pytorch_model.fp16.safetensors").is_file()
    assert not (snapshot / "unet" / "diffusion_pytorch_model.safetensors").exists()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    with caplog.at_level("WARNING"):
        pipe = load_pipeline("stabilityai/stable-diffusion-xl-base-1.0", dtype="float32", device="cpu",
                             revision="main", variant="fp16")
    assert type(pipe).__name__ == "StableDiffusionXLPipeline"
    assert "STAND-IN" in caplog.text
    assert pipe.tokenizer("a photo of a cat").input_ids == [49406, 320, 1125, 539, 320, 2368, 49407]
    assert pipe.tokenizer_2.pad_token_id == 0 and pipe.tokenizer.pad_token_id == 49407
    assert type(pipe.scheduler).__name__ == "EulerDiscreteScheduler"


def test_standins_are_byte_identical_for_a_seed_and_kept_when_current(small_configs, tmp_path):
    a = standins.write_standin(tmp_path / "a", "sd15", seed=3, variants=("fp32", "fp16"))
    b = standins.write_standin(tmp_path / "b", "sd15", seed=3, variants=("fp32", "fp16"))
    files = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    stamp = (a / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns
    assert standins.write_standin(tmp_path / "a", "sd15", seed=3, variants=("fp16",)) == a
    assert (a / "unet" / "diffusion_pytorch_model.safetensors").stat().st_mtime_ns == stamp  # not rewritten
    other = standins.write_standin(tmp_path / "a", "sd15", seed=4, variants=("fp16",))
    assert other != a and not a.exists()  # another seed replaces the old stand-in
    unet_a = (b / "unet" / "diffusion_pytorch_model.fp16.safetensors").read_bytes()
    assert (other / "unet" / "diffusion_pytorch_model.fp16.safetensors").read_bytes() != unet_a


def test_never_writes_beside_real_weights(small_configs, tmp_path, capsys):
    from diffact.cli import main

    cache = tmp_path / "hub"
    real = standins.repo_folder(cache, "stable-diffusion-v1-5/stable-diffusion-v1-5") / "snapshots" / "abc123"
    real.mkdir(parents=True)
    (real / "model_index.json").write_text("{}")
    assert main(["make-standin-models", "--cache", str(cache), "--models", "sd15"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("diffact make-standin-models: error:")]
    assert len(errors) == 1 and "without a stand-in marker" in errors[0] and "abc123" in errors[0]
    assert sorted(p.name for p in real.parent.iterdir()) == ["abc123"]
    assert main(["make-standin-models", "--cache", str(cache), "--models", "sd15", "--variants", "int8"]) == 2
    assert main(["make-standin-models", "--cache", str(cache), "--models", "sd99"]) == 2
    shutil.rmtree(real)

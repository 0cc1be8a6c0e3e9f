"""Model references: hub ids (through a real, local Hugging Face cache), local folders, single-file checkpoints,
offline mode; every failure is a ModelError naming the reference."""

import shutil

import pytest

from diffact.models import loading
from diffact.models.loading import load_pipeline, reference_kind, reference_problems
from diffact.utils.errors import ModelError

SHA = "0123456789abcdef0123456789abcdef01234567"
HUB_ID = "diffact-test/tiny-sd15"


@pytest.fixture
def offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")


@pytest.fixture
def hub_cache(tmp_path, monkeypatch, tiny_pipeline_dirs):
    """A Hugging Face cache (HF_HUB_CACHE) holding the tiny SD1.5 pipeline as HUB_ID at commit SHA (= main)."""
    cache = tmp_path / "hf-cache"
    repo = cache / f"models--{HUB_ID.replace('/', '--')}"
    shutil.copytree(tiny_pipeline_dirs["sd15"], repo / "snapshots" / SHA)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(SHA)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    return cache


def test_reference_kinds(tmp_path):
    assert reference_kind("stabilityai/stable-diffusion-xl-base-1.0") == "hub"
    assert reference_kind("results/models/sd15-tiny") == "folder"  # two slashes: a path, not owner/name
    assert reference_kind(str(tmp_path)) == "folder"
    assert reference_kind("./sd15") == "folder"
    assert reference_kind("weights/v1-5-pruned-emaonly.safetensors") == "single_file"
    assert reference_kind("sd_xl_base_1.0.CKPT") == "single_file"


def test_hub_id_loads_from_the_cache_offline(offline, hub_cache):
    assert reference_problems(HUB_ID) == []
    assert reference_problems(HUB_ID, revision=SHA) == []
    pipe = load_pipeline(HUB_ID, device="cpu")
    assert type(loading.denoiser(pipe)).__name__ == "UNet2DConditionModel"
    assert type(load_pipeline(HUB_ID, device="cpu", revision=SHA)).__name__ == "StableDiffusionPipeline"


def test_hub_id_not_cached_offline_is_a_clear_error(offline, hub_cache):
    with pytest.raises(ModelError, match=r"'diffact-test/missing'.*not in the Hugging Face cache.*hf download diffact-test/missing"):
        load_pipeline("diffact-test/missing", device="cpu")
    # cached, but not at the pinned revision
    other = "f" * 40
    problems = reference_problems(HUB_ID, revision=other)
    assert len(problems) == 1 and f"at revision {other}" in problems[0] and "HF_HUB_OFFLINE=1" in problems[0]


def test_cached_hub_model_without_weights_is_named(offline, hub_cache):
    for weights in (hub_cache / f"models--{HUB_ID.replace('/', '--')}" / "snapshots" / SHA / "vae").glob("*.safetensors"):
        weights.unlink()
    problems = reference_problems(HUB_ID)
    assert len(problems) == 1 and problems[0].startswith(f"{HUB_ID} (cached at ") and "/vae: no weights" in problems[0]
    with pytest.raises(ModelError, match="vae: no weights"):
        load_pipeline(HUB_ID, device="cpu")


def test_hub_id_neither_cached_nor_reachable_online(monkeypatch, hub_cache):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def unreachable(*args, **kwargs):
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr("huggingface_hub.model_info", unreachable)
    problems = reference_problems("diffact-test/missing")
    assert problems == ["model 'diffact-test/missing' is neither in the Hugging Face cache nor reachable on the hub "
                        "(ConnectionError: Name or service not known)"]
    import diffusers

    def refuse(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(diffusers.DiffusionPipeline, "from_pretrained", refuse)
    with pytest.raises(ModelError, match=r"cannot load model 'diffact-test/missing': not in the Hugging Face cache "
                                         r"nor reachable on the hub \(OSError"):
        load_pipeline("diffact-test/missing", device="cpu")


def test_local_folder_problems(tiny_pipeline_dirs, tmp_path):
    assert reference_problems(str(tiny_pipeline_dirs["sdxl"])) == []
    broken = tmp_path / "broken"
    shutil.copytree(tiny_pipeline_dirs["sdxl"], broken)
    for part in ("unet", "text_encoder_2"):
        for weights in (broken / part).glob("*.safetensors"):
            weights.unlink()
    problems = reference_problems(str(broken))
    assert problems == [f"{broken}/text_encoder_2: no weights (*.safetensors or *.bin); the model folder is incomplete",
                        f"{broken}/unet: no weights (*.safetensors or *.bin); the model folder is incomplete"]
    with pytest.raises(ModelError, match="text_encoder_2: no weights.*unet: no weights"):
        load_pipeline(str(broken))
    (broken / "model_index.json").unlink()
    with pytest.raises(ModelError, match="no model_index.json"):
        load_pipeline(str(broken))
    with pytest.raises(ModelError, match="does not exist"):
        load_pipeline(str(tmp_path / "missing" / "folder"))


def test_single_file_missing_or_unreadable(tmp_path, offline):
    missing = tmp_path / "v1-5.safetensors"
    assert reference_problems(str(missing)) == [f"checkpoint file {missing} does not exist"]
    with pytest.raises(ModelError, match="checkpoint file .*v1-5.safetensors does not exist"):
        load_pipeline(str(missing))
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"not a safetensors file at all")
    assert reference_problems(str(garbage)) == []  # present; its content is only read when loading
    with pytest.raises(ModelError, match=r"cannot load single-file checkpoint '.*garbage.safetensors'.*give the model entry a `config:`"):
        load_pipeline(str(garbage))
    assert reference_problems("https://huggingface.co/x/y/blob/main/m.safetensors") == [
        "checkpoint URL https://huggingface.co/x/y/blob/main/m.safetensors cannot be fetched with HF_HUB_OFFLINE=1"]


def test_single_file_uses_the_family_class_and_offline_configs(tmp_path, offline, monkeypatch, tiny_pipeline_dirs):
    """The dispatch to diffusers' from_single_file: pipeline class from the family or the checkpoint's keys,
    local_files_only when offline, the component configs passed on. (A real single-file checkpoint in the
    original SD format cannot be made from the tiny models, so from_single_file itself is stood in for.)"""
    import diffusers

    checkpoint = tmp_path / "sd_xl_base.safetensors"
    checkpoint.write_bytes(b"stand-in")
    calls = []

    def fake_from_single_file(cls, ref, **kwargs):
        calls.append((cls.__name__, ref, kwargs))
        return diffusers.DiffusionPipeline.from_pretrained(str(tiny_pipeline_dirs["sdxl"]))

    monkeypatch.setattr(diffusers.StableDiffusionXLPipeline, "from_single_file", classmethod(fake_from_single_file))
    monkeypatch.setattr(diffusers.StableDiffusionPipeline, "from_single_file", classmethod(fake_from_single_file))
    pipe = load_pipeline(str(checkpoint), device="cpu", family="sdxl", config=str(tiny_pipeline_dirs["sdxl"]))
    assert loading.unet_family(loading.denoiser(pipe)) == "sdxl"
    name, ref, kwargs = calls[-1]
    assert (name, ref) == ("StableDiffusionXLPipeline", str(checkpoint))
    assert kwargs["local_files_only"] is True and kwargs["config"] == str(tiny_pipeline_dirs["sdxl"])
    # no family: the class follows the model type diffusers infers from the checkpoint's keys
    import diffusers.loaders.single_file_utils as sfu

    monkeypatch.setattr(sfu, "load_single_file_checkpoint", lambda ref, **kw: {"stand-in": None})
    for model_type, expected in (("xl_base", "StableDiffusionXLPipeline"), ("playground-v2-5", "StableDiffusionXLPipeline"),
                                 ("v1", "StableDiffusionPipeline"), ("v2", "StableDiffusionPipeline")):
        monkeypatch.setattr(sfu, "infer_diffusers_model_type", lambda checkpoint, t=model_type: t)
        load_pipeline(str(checkpoint), device="cpu")
        assert calls[-1][0] == expected and "config" not in calls[-1][2]
    with pytest.raises(ModelError, match="single-file checkpoints load as sd15, sdxl, not 'pixart'"):
        load_pipeline(str(checkpoint), device="cpu", family="pixart")


def test_half_precision_on_a_cpu_without_native_kernels_is_warned(monkeypatch, caplog):
    """bfloat16 / float16 on a CPU without oneDNN's native kernels runs convolutions hundreds of times slower than
    float32 (an AVX2-only AMD EPYC here); loading says so, and never for float32 or a GPU."""
    monkeypatch.setattr(loading, "cpu_supports", lambda dtype: dtype == "float32")
    with caplog.at_level("WARNING", logger="diffact.models.loading"):
        assert loading.warn_if_slow_cpu_dtype("bfloat16", "cpu")
        assert not loading.warn_if_slow_cpu_dtype("float32", "cpu")
        assert not loading.warn_if_slow_cpu_dtype("float16", "cuda:0")
    assert len(caplog.records) == 1 and "use dtype float32" in caplog.records[0].getMessage()
    monkeypatch.setattr(loading, "cpu_supports", lambda dtype: True)
    assert not loading.warn_if_slow_cpu_dtype("bfloat16", "cpu")


def test_auto_dtype_is_the_fastest_native_one_and_is_resolved_before_a_store_key(monkeypatch):
    """``auto`` (the rehearsal's dtype): float16 on CUDA, bfloat16 on a CPU with native bf16 kernels, float32
    on one without; a named dtype passes through, a wrong one fails naming the choices."""
    monkeypatch.setattr(loading, "cpu_supports", lambda dtype: True)
    assert loading.resolve_dtype("auto", "cpu") == "bfloat16"
    assert loading.resolve_dtype("auto", "cuda:0") == "float16"
    monkeypatch.setattr(loading, "cpu_supports", lambda dtype: dtype == "float32")
    assert loading.resolve_dtype("auto", "cpu") == "float32"
    assert loading.resolve_dtype("bfloat16", "cpu") == "bfloat16"
    with pytest.raises(loading.ModelError, match="expected one of"):
        loading.resolve_dtype("half", "cpu")

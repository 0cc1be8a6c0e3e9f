import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # before torch is imported

import pytest  # noqa: E402
import torch  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
torch.set_num_threads(1)  # tiny tensors: threads only contend (2-core machines)

# Tiny U-Nets with the paper models' block layouts, for unit tests of catalog and hooks.
TINY_SD15_UNET = dict(
    block_out_channels=(32, 32, 64, 64),
    down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
    up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
    layers_per_block=2, cross_attention_dim=32, attention_head_dim=8, norm_num_groups=8, sample_size=16,
)
TINY_SDXL_UNET = dict(
    block_out_channels=(32, 64, 64),
    down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
    up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
    layers_per_block=2, transformer_layers_per_block=(1, 2, 3), attention_head_dim=(2, 4, 4),
    use_linear_projection=True, cross_attention_dim=64, addition_embed_type="text_time",
    addition_time_embed_dim=8, projection_class_embeddings_input_dim=32 + 6 * 8, norm_num_groups=8, sample_size=16,
)


def _unet(config, seed=0):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(seed)
    return UNet2DConditionModel.from_config(config).eval()


@pytest.fixture(scope="session")
def tiny_sd15_unet():
    return _unet(TINY_SD15_UNET)


@pytest.fixture(scope="session")
def tiny_sdxl_unet():
    return _unet(TINY_SDXL_UNET)


def sd15_inputs(batch=1, size=16, tokens=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(sample=torch.randn(batch, 4, size, size, generator=g), timestep=torch.tensor(50),
                encoder_hidden_states=torch.randn(batch, tokens, 32, generator=g))


def sdxl_inputs(batch=1, size=16, tokens=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    return dict(sample=torch.randn(batch, 4, size, size, generator=g), timestep=torch.tensor(50),
                encoder_hidden_states=torch.randn(batch, tokens, 64, generator=g),
                added_cond_kwargs={"text_embeds": torch.randn(batch, 32, generator=g),
                                   "time_ids": torch.tensor([[64, 64, 0, 0, 64, 64]] * batch, dtype=torch.float32)})


@pytest.fixture(scope="session")
def tiny_pipeline_dirs(tmp_path_factory):
    """Random-weight demo pipelines saved with save_pretrained: {arch: folder}."""
    from diffact.models.demo import random_init_pipeline, save_pipeline

    root = tmp_path_factory.mktemp("pipelines")
    return {arch: save_pipeline(random_init_pipeline(arch, seed=0), root / arch) for arch in ("sd15", "sdxl")}


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory):
    """Three small JPEGs cut from shipped images."""
    from diffact.data.images import save_jpeg
    from diffact.data.shipped import shipped_image

    root = tmp_path_factory.mktemp("images")
    for i, name in enumerate(("astronaut", "chelsea", "coffee")):
        save_jpeg(shipped_image(name)[:128, :160], root / f"img_{i}.jpg")
    return root


@pytest.fixture
def cli(capsys):
    """Run the ``diffact`` CLI in-process: returns an object with returncode, stdout, stderr."""
    from types import SimpleNamespace

    from diffact.cli import main

    def run(*args):
        capsys.readouterr()
        code = main([str(a) for a in args])
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def assert_declared_unavailable_matches(config, section, models, layer_sets):
    """``section['unavailable']`` must list exactly the (demo model, layer set) pairs whose layers the demo
    U-Net lacks: a declared gap that resolves, or an undeclared one that does not, fails."""
    from diffact.extract.layersets import resolve_set
    from diffact.models.demo import listing_denoiser
    from diffact.utils.errors import LayerError

    declared = {(m, s) for m, sets in section.get("unavailable", {}).items() for s in sets}
    for model in models:
        entry = config["models"][model]
        if not entry.get("build"):
            continue
        unet = listing_denoiser(entry["build"])[0]  # meta device: structure only
        for layer_set in layer_sets:
            try:
                resolve_set(unet, entry["family"], layer_set)
                resolves = True
            except LayerError:
                resolves = False
            assert resolves == ((model, layer_set) not in declared), (model, layer_set)


# Checked-in parts of the workflow a run reads (rule files, layer sets, notebooks and theme as inputs).
WORKFLOW_PARTS = ("Snakefile", "workflow", "config", "notebooks", "src")


def copy_workflow(dest):
    """A copy of the workflow's checked-in parts in ``dest``, to run snakemake there without touching the checkout."""
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    for name in WORKFLOW_PARTS:
        (shutil.copytree if (root / name).is_dir() else shutil.copy)(root / name, Path(dest) / name)


# The streamed-extraction tests (tests/test_pck_stream.py, tests/test_practical_stream.py) compare a store with the
# stream. float16 storage, batches of 2 and aspect-preserving placement: the three ways a store's features could
# differ from a naive in-memory extraction (cast, batch partners, keypoint placement).
STREAM_EXTRACTION = ["--family", "sd15", "--layers", "legacy", "--dataset-kind", "spair", "--split", "test", "--t", 50,
                     "--image-size", 32, "--prompt", "a photo", "--batch-size", 2, "--storage-dtype", "float16",
                     "--resize", "aspect", "--device", "cpu"]


@pytest.fixture(scope="session")
def stream_spair(tmp_path_factory):
    """A demo SPair tree for the streamed-extraction tests: 4 sources × 6 test pairs each, so every source image is
    read by several pairs (a feature cache has something to keep)."""
    from diffact.data.demo_spair import build_demo_spair

    return build_demo_spair(tmp_path_factory.mktemp("stream") / "spair", n_images=4, pairs_per_image=6,
                            image_size=40, max_keypoints=5)


@pytest.fixture(scope="session")
def preload_server(tmp_path_factory):
    """The workflow's preload server with its default (full) module list, as the demo starts it, shared by the
    tests of the server and of the notebook kernel (each start imports torch, diffusers, mmseg, papermill...);
    yields (socket path, process). Tests must not stop it."""
    import subprocess
    import sys
    from pathlib import Path

    from diffact.workflow import preload as wf_preload

    socket_path = str(tmp_path_factory.mktemp("preload") / "s")
    diffact = str(Path(sys.executable).with_name("diffact"))
    process = subprocess.Popen([diffact, "preload-server", "--socket", socket_path], stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert wf_preload.wait_until_listening(process, socket_path, timeout_s=180), "the preload server did not start"
    yield socket_path, process
    process.terminate()
    process.wait(timeout=30)


def wait_for(condition, timeout_s: float = 30.0, poll_s: float = 0.05) -> bool:
    """Poll ``condition()`` until it is true (True) or ``timeout_s`` has passed (False)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(poll_s)
    return False

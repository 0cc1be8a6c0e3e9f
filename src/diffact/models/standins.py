"""Full-size stand-ins for the paper's four models, written where downloaded weights would be.

The paper profile names SD1.5, SD2.1-base, SDXL-base-1.0 and Playground v2 by hub id. Their weights cannot
be downloaded here, but their architectures are public configs (``models/hub_configs/``), and random weights
exercise every shape, memory peak, file size and code path that real weights do. A stand-in is a complete
diffusers pipeline (U-Net, VAE, text encoder(s), CLIP tokenizer(s) with CLIP's real 49,408-token vocabulary,
scheduler) with seeded random weights, saved into a Hugging Face hub cache layout under the model's hub id::

    <cache>/models--stabilityai--stable-diffusion-xl-base-1.0/
        refs/main                      -> the snapshot's commit name
        snapshots/<commit>/model_index.json, unet/, vae/, text_encoder/, ..., DIFFACT_STANDIN.json

so that ``HF_HUB_CACHE=<cache>`` makes the profile's ``source:`` hub ids resolve offline through exactly the
code (``models.loading.load_pipeline``) a user with downloaded weights runs. The weight files are the
variants asked for: ``fp16`` (``diffusion_pytorch_model.fp16.safetensors`` / ``model.fp16.safetensors``, what
the paper profile's ``variant: fp16`` loads) and/or ``fp32`` (the files without a variant).

Never into the user's real cache: the command needs an explicit cache folder, refuses a hub id that is
already there and is not a stand-in, and every stand-in carries ``DIFFACT_STANDIN.json``, which
``load_pipeline`` reports with a warning whenever it loads one. Differences from the real repositories: no
safety checker or feature extractor for SD1.5/SD2.1 (``requires_safety_checker: false``), one snapshot commit
name derived from the seed and the configs rather than the hub's.
"""

from __future__ import annotations

import gc
import hashlib
import json
import logging
import shutil
from pathlib import Path

from diffact.models.configs import FAMILIES, component_config, pipeline_components
from diffact.models.demo import seeded_init
from diffact.utils.errors import ModelError
from diffact.utils.io import atomic_dir, write_text

log = logging.getLogger(__name__)

STANDIN_MARKER = "DIFFACT_STANDIN.json"
# The paper profile's four models (config/paper.yaml `models:`), by our short name.
PAPER_HUB_IDS: dict[str, str] = {
    "sd15": "stable-diffusion-v1-5/stable-diffusion-v1-5",
    "sd21": "stabilityai/stable-diffusion-2-1-base",
    "sdxl": "stabilityai/stable-diffusion-xl-base-1.0",
    "pgv2": "playgroundai/playground-v2-1024px-aesthetic",
}
VARIANTS = ("fp16", "fp32")
TOKENIZER_COMPONENTS = ("tokenizer", "tokenizer_2")


def repo_folder(cache: Path, hub_id: str) -> Path:
    """huggingface_hub's folder of a model repository in a cache (``models--owner--name``)."""
    return Path(cache) / ("models--" + hub_id.replace("/", "--"))


def standin_commit(key: str, seed: int) -> str:
    """A 40-hex snapshot name fixed by the model's configs and the seed (same inputs, same name)."""
    digest = hashlib.sha1(f"diffact-standin:{key}:{seed}".encode())
    for component in ["model_index", *pipeline_components(key)]:
        digest.update(json.dumps(component_config(key, component), sort_keys=True).encode())
    return digest.hexdigest()


def snapshot_marker(snapshot: Path) -> dict | None:
    """The stand-in marker of a pipeline folder or hub snapshot, or None when it holds real weights."""
    marker = Path(snapshot) / STANDIN_MARKER
    try:
        return json.loads(marker.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def build_component(key: str, component: str, seed: int):
    """One component of model ``key`` from its real config; weights drawn from ``seed`` (on CPU, fp32)."""
    import diffusers
    import transformers

    from diffact.models.tokenizer import build_clip_tokenizer

    config = component_config(key, component)
    if component in TOKENIZER_COMPONENTS:
        return build_clip_tokenizer(pad_token=config["pad_token"])
    if component == "scheduler":
        return getattr(diffusers, config["_class_name"]).from_config(config)
    with seeded_init(seed, key, component):
        if "architectures" in config:  # a transformers text encoder
            cls = getattr(transformers, config["architectures"][0])
            return cls(transformers.CLIPTextConfig(**config)).eval()
        return getattr(diffusers, config["_class_name"]).from_config(config).eval()


def _save_weights(model, folder: Path, variants: tuple[str, ...]) -> None:
    """fp32 files first (no variant suffix), then the fp16 variant (the model is cast in place: no copy)."""
    import torch

    if "fp32" in variants:
        model.save_pretrained(folder, safe_serialization=True)
    if "fp16" in variants:
        model.to(torch.float16).save_pretrained(folder, safe_serialization=True, variant="fp16")


def _existing_state(cache: Path, hub_id: str, commit: str) -> str:
    """``absent`` | ``current`` (this stand-in is complete) | ``other-standin`` | raises for real weights."""
    repo = repo_folder(cache, hub_id)
    if not repo.exists():
        return "absent"
    snapshots = sorted((repo / "snapshots").glob("*")) if (repo / "snapshots").is_dir() else []
    real = [s for s in snapshots if snapshot_marker(s) is None]
    if real:
        raise ModelError(f"{repo}: holds {hub_id} snapshot(s) without a stand-in marker ({real[0].name}): real "
                         f"weights? refusing to write random weights beside them; use another --cache")
    ref = repo / "refs" / "main"
    if ref.is_file() and ref.read_text().strip() == commit and (repo / "snapshots" / commit).is_dir():
        return "current"
    return "other-standin"


def write_standin(cache: str | Path, key: str, seed: int = 0, variants: tuple[str, ...] = ("fp16",)) -> Path:
    """Write the stand-in of model ``key`` (sd15 | sd21 | sdxl | pgv2) into ``cache``; return its snapshot.

    Components are built, saved and freed one at a time, so peak memory is the largest component in fp32
    (the SDXL U-Net: 2.6 B parameters, about 10 GB). An existing complete stand-in with the same seed and
    configs is kept; one with another seed is replaced (its snapshot removed after the new one is in place).
    """
    import diffusers

    if key not in PAPER_HUB_IDS:
        raise ModelError(f"unknown model {key!r}; stand-ins exist for {', '.join(PAPER_HUB_IDS)}")
    bad = [v for v in variants if v not in VARIANTS]
    if bad or not variants:
        raise ModelError(f"unknown weight variant(s) {bad or variants}; expected some of {', '.join(VARIANTS)}")
    cache, hub_id = Path(cache), PAPER_HUB_IDS[key]
    commit = standin_commit(key, seed)
    repo = repo_folder(cache, hub_id)
    snapshot = repo / "snapshots" / commit
    state = _existing_state(cache, hub_id, commit)
    if state == "current" and all(_has_variant(snapshot, v) for v in variants):
        log.info("%s: stand-in already at %s", hub_id, snapshot)
        return snapshot
    old = [s for s in (repo / "snapshots").glob("*") if s.name != commit] if state == "other-standin" else []
    with atomic_dir(snapshot) as tmp:
        for component in pipeline_components(key):
            log.info("%s: building %s", hub_id, component)
            part = build_component(key, component, seed)
            if component in TOKENIZER_COMPONENTS or component == "scheduler":
                part.save_pretrained(tmp / component)
            else:
                _save_weights(part, tmp / component, variants)
            del part
            gc.collect()
        index = {**component_config(key, "model_index"), "_diffusers_version": diffusers.__version__}
        write_text(tmp / "model_index.json", json.dumps(index, indent=2, sort_keys=True) + "\n")
        marker = {"hub_id": hub_id, "model": key, "family": FAMILIES[key], "seed": seed, "variants": list(variants),
                  "weights": "random (seeded): a stand-in for a paper-scale rehearsal; its features mean nothing",
                  "made_by": "diffact make-standin-models"}
        write_text(tmp / STANDIN_MARKER, json.dumps(marker, indent=2) + "\n")
    write_text(repo / "refs" / "main", commit)
    for stale in old:
        shutil.rmtree(stale, ignore_errors=True)
    log.info("%s: stand-in written to %s", hub_id, snapshot)
    return snapshot


def _has_variant(snapshot: Path, variant: str) -> bool:
    unet = Path(snapshot) / "unet"
    name = "diffusion_pytorch_model.fp16.safetensors" if variant == "fp16" else "diffusion_pytorch_model.safetensors"
    return (unet / name).is_file()

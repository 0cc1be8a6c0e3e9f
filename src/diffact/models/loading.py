"""Load a diffusion pipeline the same way for every user, whatever the model reference is.

A reference (``models.<name>.source`` in the config, ``--model`` on the CLI) is one of

* a **hub id** (``stable-diffusion-v1-5/stable-diffusion-v1-5``): ``from_pretrained`` with the config's
  ``revision`` and ``variant``; under ``HF_HUB_OFFLINE=1`` (the Makefile sets it) only the local Hugging Face
  cache is used, and a model that is not there is a :class:`ModelError` that says how to fetch it;
* a **local pipeline folder** written by ``save_pretrained`` (the demo's tiny models go through exactly this
  code): it must hold ``model_index.json`` and weights for every model component; components it was saved
  without (``[null, null]``, e.g. SD3 without T5, the demo's ``sd3``) are loaded as None (:func:`saved_without`);
* a **single-file checkpoint** (``.safetensors`` / ``.ckpt``, the original Stable Diffusion format):
  ``from_single_file`` of the matching pipeline class; the component configs come from ``config`` (a local
  pipeline folder or hub id) or, when not given, from the hub model diffusers infers from the checkpoint.

:func:`reference_problems` checks a reference without loading any weights (``diffact check-data`` uses it).
Supported denoisers: those of the model families (:mod:`diffact.families`: U-Nets in ``pipe.unet``, DiTs in
``pipe.transformer``: PixArt-α/Σ, SD3/SD3.5, Flux); :func:`denoiser` returns it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import torch

from diffact.utils.errors import ModelError

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
SINGLE_FILE_SUFFIXES = (".safetensors", ".ckpt")
WEIGHT_PATTERNS = ("*.safetensors", "*.bin")


def pick_device(device: str = "auto") -> torch.device:
    """``auto`` → cuda if available, else mps, else cpu."""
    if device != "auto":
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def torch_dtype(name: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ModelError(f"unsupported dtype {name!r}; expected one of {sorted(DTYPES)}") from None


def resolve_dtype(name: str, device="auto") -> str:
    """The model dtype to load: ``name`` itself, or for ``auto`` the fastest one this device runs natively —
    float16 on CUDA (the paper's), bfloat16 on a CPU with native bf16 kernels (AVX512-BF16 or AMX), else float32.

    For the CPU rehearsal, whose machines differ: on a 2-core Zen 4 EPYC with AVX512-BF16 (torch 2.13) a 320-channel
    3×3 conv at 64² ran 2.4× faster and a 1280→5120 linear 3.7× faster in bfloat16 than in float32; on an AVX2-only
    EPYC bfloat16 was ~500× slower. Callers record the resolved name (it is part of a store's key), so a store
    begun on one kind of machine is not silently continued in another dtype on the next."""
    if name != "auto":
        torch_dtype(name)  # validates
        return name
    target = pick_device(device) if isinstance(device, str) else torch.device(device)
    if target.type == "cuda":
        return "float16"
    if target.type == "cpu" and cpu_supports("bfloat16"):
        return "bfloat16"
    return "float32"


def hub_offline() -> bool:
    """True when the Hugging Face hub must not be contacted (``HF_HUB_OFFLINE=1``, as the Makefile sets)."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def reference_kind(ref: str) -> str:
    """``single_file``, ``folder`` or ``hub`` (an ``owner/name`` id that is not a local path)."""
    path = Path(ref)
    if ref.lower().endswith(SINGLE_FILE_SUFFIXES):
        return "single_file"
    if path.is_absolute() or ref.startswith(".") or path.exists() or ref.count("/") != 1:
        return "folder"
    return "hub"


def _component_folders(folder: Path) -> list[Path]:
    """Sub-folders of a pipeline that hold a model (a config.json), i.e. that need weights."""
    try:
        index = json.loads((folder / "model_index.json").read_text())
    except (OSError, json.JSONDecodeError):
        index = {}
    names = [k for k, v in index.items() if not k.startswith("_") and isinstance(v, list) and v[0] is not None]
    return [folder / name for name in sorted(names) if (folder / name / "config.json").is_file()]


def folder_problems(folder: str | os.PathLike, ref: str | None = None) -> list[str]:
    """Why a local folder is not a loadable diffusers pipeline (empty list: it is)."""
    folder = Path(folder)
    where = ref or str(folder)
    if not folder.is_dir():
        return [f"model folder {where} does not exist (expected a diffusers pipeline folder or a hub id)"]
    if not (folder / "model_index.json").is_file():
        return [f"{where}: no model_index.json; not a diffusers pipeline folder (save it with save_pretrained, "
                "or give a single-file .safetensors/.ckpt checkpoint)"]
    problems = []
    for part in _component_folders(folder):
        if not any(f for pattern in WEIGHT_PATTERNS for f in part.glob(pattern)):
            problems.append(f"{where}/{part.name}: no weights (*.safetensors or *.bin); the model folder is incomplete")
    if not any((folder / name).is_dir() for name in ("unet", "transformer")):
        problems.append(f"{where}: no unet/ or transformer/ folder; not a diffusion pipeline this project can read")
    return problems


def hub_cache_dir() -> str | None:
    """The Hugging Face hub cache, read from the environment now (huggingface_hub reads it once at import):
    HF_HUB_CACHE, else HF_HOME/hub, else None (the library default, ~/.cache/huggingface/hub)."""
    if os.environ.get("HF_HUB_CACHE"):
        return os.environ["HF_HUB_CACHE"]
    if os.environ.get("HF_HOME"):
        return os.path.join(os.environ["HF_HOME"], "hub")
    return None


def cached_snapshot(ref: str, revision: str | None = None) -> Path | None:
    """The Hugging Face cache folder of a hub model at ``revision`` (default main), or None when not cached."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(ref, revision=revision, local_files_only=True, cache_dir=hub_cache_dir()))
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        return None


def _download_hint(ref: str, revision: str | None) -> str:
    rev = f" --revision {revision}" if revision else ""
    return f"download it once with `hf download {ref}{rev}` (or `huggingface-cli download`)"


def hub_problems(ref: str, revision: str | None = None, offline: bool | None = None) -> list[str]:
    """Why a hub model cannot be loaded here: not cached (offline) or neither cached nor reachable (online)."""
    offline = hub_offline() if offline is None else offline
    snapshot = cached_snapshot(ref, revision)
    if snapshot is not None:
        return folder_problems(snapshot, ref=f"{ref} (cached at {snapshot})")
    at = f" at revision {revision}" if revision else ""
    if offline:
        return [f"model {ref!r}{at} is not in the Hugging Face cache and HF_HUB_OFFLINE=1 forbids downloading it "
                f"(nor is there a local folder {ref}); {_download_hint(ref, revision)}, or unset HF_HUB_OFFLINE"]
    try:
        from huggingface_hub import model_info

        model_info(ref, revision=revision)
    except Exception as err:  # noqa: BLE001 - any failure means: not reachable from here
        return [f"model {ref!r}{at} is neither in the Hugging Face cache nor reachable on the hub "
                f"({type(err).__name__}: {str(err).splitlines()[0] if str(err) else 'no detail'})"]
    return []


def single_file_problems(ref: str, config: str | None = None, offline: bool | None = None) -> list[str]:
    """Why a single-file checkpoint cannot be loaded: the file or its component configs are missing."""
    offline = hub_offline() if offline is None else offline
    if ref.startswith(("http://", "https://")):
        return [f"checkpoint URL {ref} cannot be fetched with HF_HUB_OFFLINE=1"] if offline else []
    problems = [] if Path(ref).is_file() else [f"checkpoint file {ref} does not exist"]
    if config and reference_kind(config) == "folder" and not (Path(config) / "model_index.json").is_file():
        problems.append(f"config folder {config} of checkpoint {ref} has no model_index.json")
    return problems


def reference_problems(ref: str, revision: str | None = None, config: str | None = None,
                       offline: bool | None = None) -> list[str]:
    """Every reason ``ref`` cannot be loaded, without loading weights (empty list: it looks loadable)."""
    kind = reference_kind(ref)
    if kind == "single_file":
        return single_file_problems(ref, config, offline)
    if kind == "folder":
        return folder_problems(ref)
    return hub_problems(ref, revision, offline)


def _single_file_class(ref: str, family: str | None, offline: bool):
    """The pipeline class for a single-file checkpoint: from the family, else from the model type diffusers
    infers from the checkpoint's keys (the family that claims it, :meth:`Family.claims_single_file`)."""
    import diffusers

    from diffact.families.registry import FAMILIES, get_family, single_file_family

    if family is None:
        from diffusers.loaders.single_file_utils import infer_diffusers_model_type, load_single_file_checkpoint

        model_type = infer_diffusers_model_type(load_single_file_checkpoint(ref, local_files_only=offline))
        chosen = single_file_family(model_type)
        if chosen is None:
            raise ModelError(f"{ref}: a single-file checkpoint of type {model_type!r}, which no family loads; "
                             "save the pipeline with save_pretrained and give the folder instead")
    else:
        chosen = get_family(family)
    if chosen.single_file_pipeline is None:
        able = [f.name for f in FAMILIES.values() if f.single_file_pipeline]
        raise ModelError(f"{ref}: single-file checkpoints load as {', '.join(able)}, not {family!r}")
    return getattr(diffusers, chosen.single_file_pipeline)


def _load_single_file(ref: str, kwargs: dict, family: str | None, config: str | None, offline: bool):
    problems = single_file_problems(ref, config, offline)
    if problems:
        raise ModelError("; ".join(problems))
    try:
        cls = _single_file_class(ref, family, offline)
        extra = {"config": config} if config else {}
        return cls.from_single_file(ref, **kwargs, **extra)
    except ModelError:
        raise
    except Exception as err:  # noqa: BLE001 - diffusers raises many types for unreadable or unknown files
        hint = (" With HF_HUB_OFFLINE=1 the component configs must be local: give the model entry a `config:` "
                "(a pipeline folder or a cached hub id)." if offline and not config else "")
        raise ModelError(f"cannot load single-file checkpoint {ref!r} ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'no detail'}).{hint}") from err


def saved_without(folder: Path | None) -> dict:
    """``{name: None}`` for the components a pipeline folder was saved without (``[null, null]`` in its
    model_index.json) that its pipeline class does not list as optional: diffusers' ``from_pretrained`` refuses
    to load such a folder unless they are passed as None, e.g. SD3 saved without T5 (``text_encoder_3`` and
    ``tokenizer_3``, the demo's ``sd3``; diffusers' SD3 docs load it the same way, "Dropping the T5 Text
    Encoder during Inference")."""
    import diffusers

    try:
        index = json.loads((Path(folder) / "model_index.json").read_text())
    except (TypeError, OSError, json.JSONDecodeError):
        return {}
    pipeline = getattr(diffusers, str(index.get("_class_name")), None)
    optional = set(getattr(pipeline, "_optional_components", None) or ())
    return {name: None for name, value in index.items()
            if not name.startswith("_") and value in ([None, None], [None], None) and name not in optional}


def _load_pretrained(ref: str, kwargs: dict, revision: str | None, variant: str | None, offline: bool):
    from diffusers import DiffusionPipeline

    kind = reference_kind(ref)
    if kind == "folder":
        problems = folder_problems(ref)
        if problems:
            raise ModelError("; ".join(problems))
    elif offline:  # only the cache counts: say what is missing there before diffusers does, less clearly
        problems = hub_problems(ref, revision, offline=True)
        if problems:
            raise ModelError("; ".join(problems))
    if revision:
        kwargs["revision"] = revision
    if variant:
        kwargs["variant"] = variant
    kwargs = {**saved_without(Path(ref) if kind == "folder" else cached_snapshot(ref, revision)), **kwargs}
    try:
        return DiffusionPipeline.from_pretrained(ref, **kwargs)
    except (OSError, ValueError) as err:
        what = ("a complete local folder" if kind == "folder"
                else "in the Hugging Face cache" + ("" if offline else " nor reachable on the hub"))
        raise ModelError(f"cannot load model {ref!r}: not {what} ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else 'no detail'})") from err


def load_pipeline(ref: str, dtype: str = "float32", device: str = "auto", revision: str | None = None,
                  variant: str | None = None, family: str | None = None, config: str | None = None):
    """Load a diffusers pipeline from a hub id, a local folder or a single-file checkpoint (see the module
    docstring), with a :class:`ModelError` naming the reference for every usual failure.

    ``family`` (sd15 | sdxl) and ``config`` only matter for single-file checkpoints.
    """
    offline = hub_offline()
    dtype = resolve_dtype(dtype, device)
    kwargs = {"dtype": torch_dtype(dtype), "cache_dir": hub_cache_dir()}
    if offline:
        kwargs["local_files_only"] = True
    if reference_kind(ref) == "single_file":
        pipe = _load_single_file(ref, kwargs, family, config, offline)
    else:
        pipe = _load_pretrained(ref, kwargs, revision, variant, offline)
    denoiser(pipe, where=ref)  # raises ModelError for unsupported pipelines
    warn_if_standin(ref, revision)
    pipe.set_progress_bar_config(disable=True)
    target = pick_device(device)
    pipe.to(target)
    log.info("loaded %s (%s) on %s as %s", ref, type(pipe).__name__, target, dtype)
    warn_if_slow_cpu_dtype(dtype, str(target))
    return pipe


TEXT_ENCODERS = ("text_encoder", "text_encoder_2", "text_encoder_3")


def scaled_latents(vae, z):
    """Posterior latents ``z`` as the denoiser sees them: (z − shift_factor)·scaling_factor, the shift only where
    the VAE has one (SD3, Flux), as StableDiffusion3Pipeline / FluxPipeline do. The extractor and the demo
    models' training both use this, so what a model is trained on and what it is probed with cannot drift."""
    shift = vae.config.get("shift_factor")
    if shift is not None:
        z = z - shift
    return z * vae.config.scaling_factor


def release_text_encoders(pipe) -> int:
    """Drop a pipeline's text encoders once every prompt it will need is encoded (an extractor encodes its fixed
    prompt once, when built): SDXL's two are 0.8 B parameters, 3.3 GB in float32, held for nothing otherwise
    (the rehearsal's SDXL-architecture `pool` extraction in float32 was OOM-killed at 23.2 GB with them).
    Returns the parameters released."""
    import gc

    released = 0
    for name in TEXT_ENCODERS:
        encoder = getattr(pipe, name, None)
        if isinstance(encoder, torch.nn.Module):
            released += sum(p.numel() for p in encoder.parameters())
            setattr(pipe, name, None)
    gc.collect()
    return released


def cpu_supports(dtype: str) -> bool:
    """Whether this CPU runs ``dtype`` convolutions and matmuls natively (oneDNN: AVX512-BF16 / AMX for bfloat16,
    AVX512-FP16 / AMX-FP16 for float16); float32 always."""
    if dtype == "bfloat16":
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    if dtype == "float16":
        return bool(torch.ops.mkldnn._is_mkldnn_fp16_supported())
    return True


def warn_if_slow_cpu_dtype(dtype: str, device: str) -> bool:
    """Warn when a half-precision model runs on a CPU without native support for it: torch then falls back to
    reference kernels (measured on a 2-core AMD EPYC with AVX2 only, torch 2.13: a 320-channel 3×3 conv at 64²
    took 45 s in bfloat16 against 0.09 s in float32), so use float32 there."""
    if not device.startswith("cpu") or cpu_supports(dtype):
        return False
    log.warning("dtype %s on a CPU without native %s kernels (no AVX512-BF16/AMX): convolutions run hundreds of "
                "times slower than float32; use dtype float32 on this machine", dtype, dtype)
    return True


def warn_if_standin(ref: str, revision: str | None = None) -> dict | None:
    """Say loudly when ``ref`` resolved to a random-weight stand-in (``diffact make-standin-models``): a
    rehearsal's features mean nothing, and a real run must never pick one up by accident."""
    from diffact.models.standins import snapshot_marker

    kind = reference_kind(ref)
    folder = Path(ref) if kind == "folder" else cached_snapshot(ref, revision) if kind == "hub" else None
    marker = snapshot_marker(folder) if folder is not None else None
    if marker:
        log.warning("%s is a STAND-IN with random weights (seed %s, made by %s at %s): numbers from it mean nothing",
                    ref, marker.get("seed"), marker.get("made_by"), folder)
    return marker


def denoiser(pipe, where: str | None = None):
    """The network whose activations are extracted (its family says where: ``pipe.unet`` or
    ``pipe.transformer``); ModelError naming the supported classes otherwise."""
    from diffact.families.registry import denoiser_of

    return denoiser_of(pipe, where)


def unet_family(unet) -> str:
    """Layer-set family of a denoiser (``sdxl`` for SDXL / Playground v2, ``sd15`` for SD1.5 / SD2.1, ``pixart`` /
    ``sd3`` / ``flux`` for DiTs): the name of the family that recognises it."""
    from diffact.families.registry import family_of

    return family_of(unet).name

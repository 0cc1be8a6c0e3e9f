"""Extraction into a feature store: stream a dataset's images through the extractor, one shard per image.

Peak memory is one batch of features, whatever the dataset size. Shards already present are skipped, so
rerunning after an interruption redoes only what is missing (and, because noise is seeded per image id
and a partly written batch is recomputed with the same batch partners, gives byte-identical shards).

Sharded extraction (issue #10): ``shard=(I, N)`` extracts only shard I (1-based) of the dataset list into
the same store folder, and does not finalise; separate jobs can run the N shards, then
:func:`merge_shards` checks that every image has its file and writes ``complete.json``. The split deals
whole *batches* round robin (:func:`shard_images`), so every shard runs exactly the batches an unsharded
run would: the noise is seeded per image id and the batch composition is the same, hence the merged
store is byte-identical to an unsharded run for any batch size (batched kernels may round a sample
differently when its batch partners change).

Shards record the code that wrote them (issue #16, point 9): the settings name the store, but the bytes also
depend on the extraction code and the torch/diffusers/transformers versions. Each shard carries the
:func:`extraction_code` digest of the run that wrote it (and ``meta.json`` the latest run's, with the
versions); a rerun reuses only shards of its own code, so an interrupted run resumes while a run after a fix to
the extraction code (``snakemake --forcerun extract``) re-extracts every shard, saying so at WARNING.
"""

from __future__ import annotations

import ast
import hashlib
import json
import logging
from pathlib import Path
from typing import Sequence

import torch
from tqdm import tqdm

from diffact.extract.pipeline import DiffusionFeatureExtractor, ExtractionSettings
# What names a store lives in a module without torch (the workflow plans with it); imported here too, where the
# commands and tests have always found it.
from diffact.extract.settings import layer_spec_digest, store_key, store_settings  # noqa: F401
from diffact.extract.store import FeatureStore
from diffact.utils.errors import ConfigError, DataError

log = logging.getLogger(__name__)


# The code that decides a shard's bytes besides the settings, relative to the diffact package: the extraction
# (the recipe, hooks, store format), the model families (catalog, conditioning, forward call), the model loading (dtype, scheduler, text encoders), the image
# loading and resizing (diffact.data.images) and the noise seeds (diffact.utils.seeding).
EXTRACTION_SOURCES = ("extract/*.py", "families/*.py", "models/loading.py", "data/images.py", "utils/seeding.py")
# Libraries whose kernels or model code compute the features (transformers: the text encoders' conditioning).
EXTRACTION_LIBRARIES = ("torch", "diffusers", "transformers")


def _code_of(source: str) -> str:
    """The code of a Python source without its comments, layout and docstrings (the parsed tree, dumped), so
    that editing a comment or a docstring does not make every store's shards stale."""
    tree = ast.parse(source)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and body
                and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)
                and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return ast.dump(tree)


def source_digest(paths: Sequence[Path], root: Path) -> str:
    """SHA-256 over the code (:func:`_code_of`) of ``paths``, each preceded by its name relative to ``root``,
    in sorted order."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: str(p.relative_to(root))):
        digest.update(f"{path.relative_to(root).as_posix()}\n".encode())
        digest.update(_code_of(path.read_text()).encode())
    return digest.hexdigest()


def extraction_sources(root: Path) -> list[Path]:
    """The :data:`EXTRACTION_SOURCES` files under the package folder ``root``."""
    return sorted({path for pattern in EXTRACTION_SOURCES for path in root.glob(pattern)})


def extraction_code() -> dict:
    """What decides a shard's bytes besides the settings: the library versions and ``digest``, the first 12 hex
    digits of the SHA-256 of the :data:`EXTRACTION_SOURCES` code and those versions (written into every shard and
    into ``meta.json``; see the module docstring)."""
    from importlib.metadata import version

    import diffact

    root = Path(diffact.__file__).parent
    versions = {name: version(name) for name in EXTRACTION_LIBRARIES}
    text = json.dumps({"sources": source_digest(extraction_sources(root), root), **versions}, sort_keys=True)
    return {"digest": hashlib.sha256(text.encode()).hexdigest()[:12], **versions}


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` → (I, N) with 1 ≤ I ≤ N."""
    index, sep, count = str(text).partition("/")
    try:
        shard = (int(index), int(count))
    except ValueError:
        shard = None
    if not sep or shard is None or not 1 <= shard[0] <= shard[1]:
        raise ConfigError(f"--shard {text!r}: expected I/N with 1 ≤ I ≤ N, e.g. 1/4")
    return shard


def shard_of_batch(batch: int, count: int) -> int:
    """The (1-based) shard of the batch with 0-based index ``batch``: batches are dealt round robin."""
    return batch % count + 1


def shard_images(images: Sequence[tuple[str, Path]], shard: tuple[int, int],
                 batch_size: int = 1) -> list[tuple[str, Path]]:
    """Shard I of N: batches I−1, I−1+N, I−1+2N, … of the dataset list cut into ``batch_size`` images
    (round robin keeps shards within one batch of each other in size, whatever the list's order)."""
    index, count = shard
    batches = [images[start:start + batch_size] for start in range(0, len(images), batch_size)]
    return [item for b, batch in enumerate(batches) if shard_of_batch(b, count) == index for item in batch]


def extract_to_store(pipe, layers: Sequence[str], images: Sequence[tuple[str, Path]], out: str | Path,
                     settings: dict, extraction: ExtractionSettings, batch_size: int = 1,
                     storage_dtype: str = "float32", early_exit: bool = True,
                     shard: tuple[int, int] | None = None, release_text_encoders: bool = False,
                     code: dict | None = None, extractor: DiffusionFeatureExtractor | None = None) -> FeatureStore:
    """Extract ``layers`` for every (id, path) in ``images`` into the store at ``out``; returns the store.

    With ``shard=(I, N)``, N > 1, only that shard's images are extracted and the store is not finalised
    (see the module docstring). Shards already written by this ``code`` (default :func:`extraction_code`) are
    kept; shards written by other code are extracted again. ``extractor``: one already built for ``pipe``,
    ``layers`` and ``extraction`` (``diffact extract`` builds it with the Python API), instead of a new one."""
    from diffact.data.images import load_image_tensor

    if batch_size < 1:
        raise ConfigError(f"batch size must be ≥ 1, got {batch_size}")
    sharded = shard is not None and shard[1] > 1
    mine = shard_images(images, shard, batch_size) if sharded else list(images)
    if extractor is None:
        extractor = DiffusionFeatureExtractor(pipe, layers, extraction, early_exit=early_exit,
                                              release_text_encoders=release_text_encoders)
    elif list(extractor.layer_names) != list(layers) or extractor.settings != extraction:
        raise ConfigError("extract_to_store: the extractor given was built for other layers or settings")
    code = extraction_code() if code is None else code
    store = FeatureStore.create(out, {**settings, "grid_timestep": extractor.timestep}, storage_dtype=storage_dtype,
                                recipe=extractor.recipe(), code=code)
    # Resume keeps the batches of an uninterrupted run: a batch with any image missing (or stale) is recomputed
    # whole (batched kernels may round a sample differently when its batch partners change) and only its missing
    # shards are written, so the resumed store is byte-identical for any batch size.
    current = {i for i, _ in mine if store.is_current(i)}
    stale = sum(store.has(i) for i, _ in mine if i not in current)
    where = f"{out}{f' shard {shard[0]}/{shard[1]}' if sharded else ''}"
    if stale:
        log.warning("%s: %d of %d shards were written by other extraction code or library versions than this "
                    "run's (code %s); extracting them again", where, stale, len(mine), code["digest"])
    batches = [mine[start:start + batch_size] for start in range(0, len(mine), batch_size)]
    todo = [batch for batch in batches if not all(i in current for i, _ in batch)]
    log.info("%s: %d images, %d already extracted, %d to do", where, len(mine), len(current), len(mine) - len(current))
    with tqdm(total=len(mine) - len(current), desc=f"extract {Path(out).name}", unit="img") as bar:
        for chunk in todo:
            batch = torch.stack([load_image_tensor(p, extraction.image_size, extraction.resize)[0] for _, p in chunk])
            feats = extractor(batch, [i for i, _ in chunk])
            for b, (image_id, _) in enumerate(chunk):
                if image_id not in current:
                    store.write(image_id, {name: value[b] for name, value in feats.items()})
                    bar.update(1)
    if not sharded:
        store.finalize([i for i, _ in images])
    return store


def store_is_current(out: str | Path, settings: dict, image_ids: Sequence[str], code: dict) -> bool:
    """Whether the store at ``out`` was made with ``settings`` and every image has a shard written by ``code``:
    :func:`extract_to_store` would then extract nothing, and finalising it needs no model."""
    if not (Path(out) / "meta.json").is_file():
        return False
    store = FeatureStore.open(out)
    return (made_with(store, settings) and store.code_digest == code["digest"]
            and all(store.is_current(i) for i in image_ids))


def made_with(store: FeatureStore, settings: dict) -> bool:
    """Whether ``store`` records ``settings`` (:func:`store_settings`; the grid timestep is added at creation)."""
    recorded = {k: v for k, v in store.settings.items() if k != "grid_timestep"}
    return recorded == json.loads(json.dumps(settings, default=str))


def merge_shards(out: str | Path, images: Sequence[tuple[str, Path]], settings: dict, shards: int | None = None,
                 batch_size: int = 1, code: dict | None = None) -> FeatureStore:
    """Finalise a store filled by shard jobs: its settings must be ``settings`` and every image must have its
    file, written by this ``code`` (default :func:`extraction_code`); then ``complete.json`` is written. Missing
    images are named, with their shard when ``shards`` (and the shard jobs' ``batch_size``) are given."""
    meta = Path(out) / "meta.json"
    ids = [i for i, _ in images]
    if not meta.is_file():
        raise DataError(f"{out}: no shard job has written this store yet (no meta.json); "
                        f"all {len(ids)} images are missing, e.g. {', '.join(ids[:5])}")
    store = FeatureStore.open(out)
    if not made_with(store, settings):
        raise DataError(f"{meta}: the store was extracted with other settings than these merge arguments")
    missing = [i for i in ids if not store.has(i)]
    if missing and shards and shards > 1:
        where = {image_id: shard_of_batch(n // batch_size, shards) for n, image_id in enumerate(ids)}
        by_shard: dict[int, list[str]] = {}
        for image_id in missing:
            by_shard.setdefault(where[image_id], []).append(image_id)
        detail = "; ".join(f"shard {s}/{shards}: {', '.join(m[:10])}{' …' if len(m) > 10 else ''}"
                           for s, m in sorted(by_shard.items()))
        raise DataError(f"{out}: {len(missing)} of {len(ids)} images have no shard file ({detail})")
    digest = (extraction_code() if code is None else code)["digest"]
    stale = [i for i in ids if store.has(i) and store.shard_code(i) != digest]
    if stale:
        raise DataError(f"{out}: {len(stale)} of {len(ids)} shards were written by other extraction code or library "
                        f"versions than this merge's (code {digest}), e.g. {', '.join(stale[:5])}; rerun the shard "
                        "jobs (snakemake --forcerun extract_shard)")
    store.finalize(ids)
    return store

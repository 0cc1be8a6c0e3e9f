"""The feature cache: one store per (dataset, model, extraction settings, layer set).

Format: a folder with
  ``meta.json``                 the settings that define the store (and their hash, the store's key),
                                the layer names in forward order and each layer's (C, H, W), the
                                full extraction ``recipe`` (every option, defaults included; not hashed)
                                and the ``code`` of the latest extraction into it (digest and library
                                versions, :func:`diffact.extract.run.extraction_code`; not hashed);
  ``shards/<image_id>.safetensors``  one shard per image holding every layer as a C×H×W tensor; its
                                safetensors metadata (entry ``shard``) names the image and the digest of
                                the code that wrote it;
  ``complete.json``             written last by :func:`finalize`, listing the image ids, so downstream
                                rules can depend on a single file that exists only for a finished store.

Why safetensors shards rather than zarr: safetensors is already a dependency (diffusers), a shard is
written in one call and renamed into place (atomic, so an interrupted extraction leaves either a whole
shard or none and resume = "skip ids whose shard exists and was written by this code"), and ``safe_open``
memory-maps the file so a single layer of a single image is read without loading the rest (per-layer lazy
reads). Peak memory is one image's features, whatever the dataset size. zarr would add a dependency and
chunk-level bookkeeping for no gain at this access pattern (whole image × one layer). Per-image files also
let separate jobs fill one store (sharded extraction, ``diffact extract --shard I/N``): each writes only
its own images' shards, and ``meta.json`` is created exclusively (the first job wins; the others read
it), so no job can overwrite another's metadata (a job of other code only replaces its ``code`` entry).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Iterable, Mapping

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from diffact.extract.settings import settings_key
from diffact.utils.errors import DataError
from diffact.utils.io import atomic_path_in_private_dir, write_json

STORAGE_DTYPES = {"float32": torch.float32, "float16": torch.float16}
SHARD_RECORD_KEY = "shard"  # the shard's metadata entry: its image id and the digest of the code that wrote it
_ID_PATTERN = re.compile(r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*$")


def _write_json_if_absent(path: Path, obj: dict) -> None:
    """Write ``path`` unless it exists: the JSON goes to a temporary file that is hard-linked to ``path``;
    a link fails on an existing name, so of several jobs creating one store exactly one writes the
    metadata, and a reader never sees a half-written file. The temporary name carries host and pid
    (``temp_prefix``), so a later run removes it if this job is killed, and never while it lives."""
    import tempfile

    from diffact.utils.io import publish_mode, temp_prefix

    fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path.stem), suffix=".part.json", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(json.dumps(obj, indent=2) + "\n")  # = write_json(..., sort_keys=False)
        publish_mode(Path(tmp))
        os.link(tmp, path)
    except FileExistsError:
        pass  # another job created the store first; the caller reads and checks its key
    except OSError:  # a file system without hard links: plain atomic rename (last writer wins)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def _check_image_id(image_id: str) -> None:
    # Ids become file paths: keep them inside the store (no '..', no absolute paths).
    if not _ID_PATTERN.match(image_id) or any(part in ("", ".", "..") for part in image_id.split("/")):
        raise DataError(f"invalid image id {image_id!r}: expected path-safe names like 'train/img_000'")


class FeatureStore:
    """A folder of per-image feature shards plus metadata. See the module docstring for the layout."""

    def __init__(self, root: str | Path, meta: dict):
        self.root = Path(root)
        self.meta = meta

    # ---- creation and opening -------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | Path, settings: Mapping, layers: Mapping[str, tuple[int, int, int]] | None = None,
               storage_dtype: str = "float32", recipe: Mapping | None = None,
               code: Mapping | None = None) -> "FeatureStore":
        """Create (or reopen for resume) the store for ``settings``.

        ``layers`` maps name → (C, H, W) in forward order; if omitted, it is taken from the first shard.
        ``recipe``: the extraction as run, stated in the metadata but not hashed (``settings`` is).
        ``code``: the extraction code as run (``digest`` and versions); the shards this store writes carry its
        digest, and reopening with other code records the new one (the caller re-extracts the old shards).
        Reopening a folder made with different settings is an error: the folder would mix features.
        """
        if storage_dtype not in STORAGE_DTYPES:
            raise DataError(f"storage dtype {storage_dtype!r} not supported; expected one of {sorted(STORAGE_DTYPES)}")
        root = Path(root)
        meta = {
            "key": settings_key(settings),
            "settings": json.loads(json.dumps(settings, default=str)),
            "storage_dtype": storage_dtype,
            "layers": {name: list(shape) for name, shape in (layers or {}).items()},
        }
        if recipe is not None:
            meta["recipe"] = json.loads(json.dumps(recipe, default=str))
        if code is not None:
            meta["code"] = dict(code)
        meta_path = root / "meta.json"
        (root / "shards").mkdir(parents=True, exist_ok=True)
        if not meta_path.exists():
            _write_json_if_absent(meta_path, meta)  # layer order = forward order
        existing = json.loads(meta_path.read_text())
        if existing.get("key") != meta["key"]:
            raise DataError(
                f"{meta_path}: store was made with other settings (key {existing.get('key')} != {meta['key']}); "
                "remove the folder or choose another output path")
        ran, before = (recipe or {}).get("model_dtype"), existing.get("recipe", {}).get("model_dtype")
        if ran and before and ran != before:
            # `dtype: auto` resolves per machine: a store begun in bfloat16 must not be finished in float32.
            raise DataError(f"{meta_path}: store was begun with the model in {before}, this run has it in {ran} "
                            "(dtype auto resolves per machine); remove the folder or set the dtype explicitly")
        if code is not None and existing.get("code") != meta["code"]:
            existing["code"] = meta["code"]  # this run's shards will carry it; older ones are re-extracted
            write_json(meta_path, existing, sort_keys=False)
        return cls(root, existing)

    @classmethod
    def open(cls, root: str | Path) -> "FeatureStore":
        root = Path(root)
        meta_path = root / "meta.json"
        if not meta_path.is_file():
            raise DataError(f"{root}: not a feature store (no meta.json)")
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError as err:
            raise DataError(f"{meta_path}: unreadable store metadata ({err})") from err
        return cls(root, meta)

    # ---- metadata -------------------------------------------------------------------------------
    @property
    def key(self) -> str:
        return self.meta["key"]

    @property
    def settings(self) -> dict:
        return self.meta["settings"]

    @property
    def layers(self) -> list[str]:
        return list(self.meta["layers"])

    def shape(self, name: str) -> tuple[int, int, int]:
        try:
            return tuple(self.meta["layers"][name])
        except KeyError:
            from diffact.families.catalog import unknown_layer_error

            raise unknown_layer_error(name, self.layers, where=f"feature store {self.root}") from None

    def channels(self, names: Iterable[str]) -> int:
        return sum(self.shape(n)[0] for n in names)

    @property
    def code_digest(self) -> str | None:
        """The digest of the extraction code this store writes shards with (None for a store without ``code``)."""
        return (self.meta.get("code") or {}).get("digest")

    @property
    def resize(self):
        """The :class:`~diffact.data.images.ResizePolicy` the images were resized with, or None for the
        paper's square stretch (also for stores without extraction settings)."""
        from diffact.data.images import ResizePolicy

        extraction = self.settings.get("extraction") or {}
        mode = extraction.get("resize", "square")
        return None if mode == "square" else ResizePolicy(mode, int(extraction["image_size"]))

    # ---- shards ---------------------------------------------------------------------------------
    def shard_path(self, image_id: str) -> Path:
        _check_image_id(image_id)
        return self.root / "shards" / f"{image_id}.safetensors"

    def has(self, image_id: str) -> bool:
        return self.shard_path(image_id).is_file()

    def shard_code(self, image_id: str) -> str | None:
        """The code digest recorded in an image's shard; None for a shard without one (written before shards
        recorded it, or by a store without ``code``), an unreadable shard, or no shard."""
        try:
            with safe_open(str(self.shard_path(image_id)), framework="pt") as shard:
                record = json.loads((shard.metadata() or {}).get(SHARD_RECORD_KEY, "{}"))
        except Exception:  # missing or damaged: safetensors raises its own error types
            return None
        return record.get("code_digest")

    def is_current(self, image_id: str) -> bool:
        """Whether the image has a shard written by this store's code (any shard, for a store without ``code``)."""
        return self.has(image_id) and (self.code_digest is None or self.shard_code(image_id) == self.code_digest)

    def image_ids(self) -> list[str]:
        shards = self.root / "shards"
        ids = (p.relative_to(shards) for p in shards.rglob("*.safetensors"))
        # Hidden names are temporary files of interrupted writes, not shards.
        return sorted(str(p.with_suffix("")) for p in ids if not any(part.startswith(".") for part in p.parts))

    def write(self, image_id: str, features: Mapping[str, torch.Tensor]) -> None:
        """Write one image's features (each C×H×W) as one shard, atomically."""
        dtype = STORAGE_DTYPES[self.meta["storage_dtype"]]
        if not self.meta["layers"]:
            self.meta["layers"] = {n: list(t.shape) for n, t in features.items()}
            write_json(self.root / "meta.json", self.meta, sort_keys=False)
        missing = [n for n in self.meta["layers"] if n not in features]
        if missing:
            raise DataError(f"features for {image_id!r} lack layers {missing[:5]}")
        tensors = {}
        for name, expected in self.meta["layers"].items():
            tensor = features[name]
            if list(tensor.shape) != list(expected):
                raise DataError(f"{image_id}: layer {name} has shape {tuple(tensor.shape)}, store expects {tuple(expected)}")
            tensors[name] = tensor.detach().to("cpu", dtype).contiguous()
        # safetensors writes its own .tmpXXXXXX beside the path it is given: a private folder keeps a killed
        # writer's 1.4 GB leftover (an SDXL pool image) recognisable and removable by the next run.
        with atomic_path_in_private_dir(self.shard_path(image_id)) as tmp:
            save_file(tensors, str(tmp), metadata=self._shard_metadata(image_id))

    def _shard_metadata(self, image_id: str) -> dict[str, str]:
        """One entry, ``shard``: the image id and code digest as canonical JSON. (safetensors writes its
        metadata map in no fixed order, so two entries would make identical shards differ in their header.)"""
        record = {"image_id": image_id, **({"code_digest": self.code_digest} if self.code_digest else {})}
        return {SHARD_RECORD_KEY: json.dumps(record, sort_keys=True, separators=(",", ":"))}

    def read(self, image_id: str, layers: Iterable[str] | None = None) -> dict[str, torch.Tensor]:
        """Read some (default: all) layers of one image as float32 C×H×W tensors; only those are loaded."""
        names = self.layers if layers is None else list(layers)
        for name in names:
            self.shape(name)  # clear error for unknown names
        path = self.shard_path(image_id)
        if not path.is_file():
            raise DataError(f"{self.root}: no features for image {image_id!r} (missing {path.name})")
        try:
            with safe_open(str(path), framework="pt") as shard:
                return {name: shard.get_tensor(name).float() for name in names}
        except Exception as err:  # safetensors raises its own error types for damaged files
            raise DataError(f"{path}: corrupted feature shard ({err}); delete it and rerun the extraction") from err

    def read_layer(self, image_id: str, name: str) -> torch.Tensor:
        return self.read(image_id, [name])[name]

    # ---- completion -----------------------------------------------------------------------------
    def finalize(self, expected_ids: Iterable[str]) -> Path:
        """Check every expected image has a shard and write ``complete.json`` (the rule's output)."""
        expected = sorted(expected_ids)
        missing = [i for i in expected if not self.has(i)]
        if missing:
            raise DataError(f"{self.root}: {len(missing)} of {len(expected)} images have no shard: "
                            f"{', '.join(missing[:20])}{' …' if len(missing) > 20 else ''}")
        if not self.meta["layers"]:
            raise DataError(f"{self.root}/meta.json lists no layers; the store was never written")
        path = self.root / "complete.json"
        write_json(path, {"key": self.key, "image_ids": expected, "layers": self.meta["layers"]}, sort_keys=False)
        return path

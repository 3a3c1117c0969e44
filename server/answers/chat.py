"""The generator's chat template and tokenizer, on the gateway side.

The gateway formats the prompt itself (Triton's generator takes ``text_input`` like TensorRT-LLM's models)
so that it can count the prompt's tokens exactly, with the served checkpoint's own ``tokenizer.json`` and
chat template (``chat_template.jinja``, or the ``chat_template`` of ``tokenizer_config.json``), rendered
in a sandboxed Jinja environment as Hugging Face does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from jinja2 import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment
from tokenizers import Tokenizer

__all__ = ["ChatFormat"]


def _raise(message: str) -> None:
    raise TemplateError(message)


class ChatFormat:
    def __init__(self, tokenizer_dir: Path) -> None:
        tokenizer_file = tokenizer_dir / "tokenizer.json"
        if not tokenizer_file.exists():
            raise FileNotFoundError(f"no tokenizer.json in {tokenizer_dir}: is the generator built?")
        self.tokenizer = Tokenizer.from_file(str(tokenizer_file))
        template = tokenizer_dir / "chat_template.jinja"
        if template.exists():
            source = template.read_text()
        else:
            config = json.loads((tokenizer_dir / "tokenizer_config.json").read_text())
            source = config.get("chat_template") or ""
        if not source:
            raise FileNotFoundError(f"no chat template in {tokenizer_dir}")
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise
        env.filters["tojson"] = lambda value, indent=None: json.dumps(value, ensure_ascii=False, indent=indent)
        self._template = env.from_string(source)

    def format(self, messages: Sequence[dict[str, str]]) -> str:
        return self._template.render(messages=list(messages), add_generation_prompt=True, tools=None)

    def count(self, text: str) -> int:
        return len(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def count_messages(self, messages: Sequence[dict[str, str]]) -> int:
        return self.count(self.format(messages))

"""Run-time text generation with onnxruntime-genai, shared by the Triton generator model and the tests.

``stream`` is a generator of text pieces. Generation stops at the end-of-sequence token, a stop word,
``max_tokens``, when ``should_stop()`` turns true (checked before every token: Triton's cancellation) or
when the consumer leaves the loop. The prefill of the prompt cannot be interrupted (onnxruntime-genai has
no cancel call); decoding stops at the next token.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import onnxruntime_genai as og

__all__ = ["Finished", "LocalGenerator"]


@dataclass(slots=True)
class Finished:
    """Filled in when a stream ends: why, and how many tokens it used."""

    reason: str = ""  # "stop" (end of sequence or a stop word), "length" or "cancelled"
    prompt_tokens: int = 0
    completion_tokens: int = 0


class LocalGenerator:
    def __init__(self, model_dir: Path) -> None:
        self.model = og.Model(str(model_dir))
        self.tokenizer = og.Tokenizer(self.model)

    def chat_prompt(self, messages: Sequence[dict[str, str]]) -> str:
        """The model's chat template applied to ``messages``, ready for generation."""
        text: str = self.tokenizer.apply_chat_template(
            json.dumps(list(messages), ensure_ascii=False), add_generation_prompt=True
        )
        return text

    def encode(self, prompt: str) -> list[int]:
        return [int(t) for t in self.tokenizer.encode(prompt)]

    def stream(
        self,
        prompt: str | Sequence[int],
        *,
        max_tokens: int,
        temperature: float = 0.0,
        top_p: float = 1.0,
        stop: Sequence[str] = (),
        finished: Finished | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> Iterator[str]:
        """``prompt``: the formatted prompt text (see ``chat_prompt``) or its token ids."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be at least 1")
        ids = self.encode(prompt) if isinstance(prompt, str) else list(prompt)
        if not ids:
            raise ValueError("the prompt is empty")
        params = og.GeneratorParams(self.model)
        options: dict[str, float | int | bool] = {"max_length": len(ids) + max_tokens}
        if temperature > 0:
            options.update(do_sample=True, temperature=temperature, top_p=top_p)
        else:
            options["do_sample"] = False
        params.set_search_options(**options)
        done = finished if finished is not None else Finished()
        done.prompt_tokens = len(ids)
        if should_stop is not None and should_stop():
            done.reason = "cancelled"
            return
        generator = og.Generator(self.model, params)
        generator.append_tokens(ids)
        decoder = self.tokenizer.create_stream()
        stops = [s for s in stop if s]
        # A stop word may arrive split over several tokens: the last len(longest stop) - 1 characters are
        # held back until it is clear they do not start one.
        hold = max((len(s) for s in stops), default=1) - 1
        text, sent = "", 0
        while not generator.is_done():
            if should_stop is not None and should_stop():
                done.reason = "cancelled"
                return
            generator.generate_next_token()
            done.completion_tokens += 1
            text += decoder.decode(int(generator.get_next_tokens()[0]))
            hits = [i for i in (text.find(s, max(0, sent - hold)) for s in stops) if i >= 0]
            if hits:
                if min(hits) > sent:
                    yield text[sent : min(hits)]
                done.reason = "stop"
                return
            if len(text) - hold > sent:
                yield text[sent : len(text) - hold]
                sent = len(text) - hold
        if len(text) > sent:
            yield text[sent:]
        done.reason = "length" if done.completion_tokens >= max_tokens else "stop"

"""A stand-in generator with another profile's tensor layout, for testing the gateway's generator client
against the real tritonserver (tests/integration/test_generator_profiles.py). Decoupled; writes the words
of a fixed French text, one response per word, in the layout its config parameters say:

- ``text_mode``: ``delta`` (each response holds the new word) or ``cumulative`` (the whole text so far);
  cumulative responses also split "é" over two responses (first byte, then both), as a detokenizer
  that has seen half of a character does;
- ``finish``: ``none`` (no finish_reason output, like TensorRT-LLM's ensemble) or ``llmapi`` ("None"
  until the final response, then "length" or "stop", only when return_finish_reason is true);
- the input names and the flags that must be sent, from the parameters too.
"""

import json

import numpy as np
import triton_python_backend_utils as pb_utils

TEXT = ["Le", "café", "du", "coin", "ouvre", "à", "huit", "heures", "et", "ferme", "à", "midi", "le", "samedi"]
FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.batched = config.get("max_batch_size", 0) > 0
        self.params = {k: v["string_value"] for k, v in config.get("parameters", {}).items()}

    def _scalar(self, request, name, default):
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        return default if tensor is None else tensor.as_numpy().reshape(-1)[0]

    def _send(self, sender, text, reason, flags=0):
        shape = (1, 1) if self.batched else (1,)
        tensors = [pb_utils.Tensor("text_output", np.array([text], dtype=np.object_).reshape(shape))]
        if reason is not None:
            tensors.append(pb_utils.Tensor("finish_reason", np.array([reason], dtype=np.object_).reshape(shape)))
        sender.send(pb_utils.InferenceResponse(tensors), flags=flags)

    def execute(self, requests):
        p = self.params
        for request in requests:
            sender = request.get_response_sender()
            missing = [f for f in p["flags"].split(",") if f and not self._scalar(request, f, False)]
            if missing:
                error = pb_utils.TritonError(f"flag {missing[0]} was not sent")
                sender.send(pb_utils.InferenceResponse(error=error), flags=FINAL)
                continue
            max_tokens = int(self._scalar(request, p["max_tokens_name"], 16))
            words = TEXT[:max_tokens]
            reason = "length" if len(words) < len(TEXT) else "stop"
            llmapi = p["finish"] == "llmapi"
            done = ""
            for i, word in enumerate(words):
                piece = (" " if i else "") + word
                if p["text_mode"] == "delta":
                    outputs = [piece.encode()]
                else:
                    whole = (done + piece).encode()
                    half = whole[: whole.index("é".encode()) + 1] if "é" in piece else None
                    outputs = ([half] if half else []) + [whole]
                done += piece
                for output in outputs:
                    self._send(sender, output, b"None" if llmapi else None)
            if llmapi:
                self._send(sender, done.encode() if p["text_mode"] == "cumulative" else b"", reason.encode(), FINAL)
            else:
                sender.send(flags=FINAL)

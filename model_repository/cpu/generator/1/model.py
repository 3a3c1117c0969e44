"""Triton python-backend glue for the generator: tensors in and out; inference.generation does the work.

Decoupled: ``execute`` hands each request to the worker pool and returns at once; workers send the
responses. Cancellation (the gRPC client went away, or its deadline passed) is read from
``request.is_cancelled()`` before every token. Counters are exported on Triton's metrics endpoint.
"""

import json
from pathlib import Path

import numpy as np
import triton_python_backend_utils as pb_utils

from inference.generation import GenerationPool, Limits, Reply, parse_request
from inference.generator import LocalGenerator
from inference.triton_args import model_parameters

FINAL = pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL


def _response(text, reason="", prompt_tokens=0, completion_tokens=0):
    return pb_utils.InferenceResponse(
        [
            pb_utils.Tensor("text_output", np.array([text.encode("utf-8")], dtype=np.object_)),
            pb_utils.Tensor("finish_reason", np.array([reason.encode()], dtype=np.object_)),
            pb_utils.Tensor("prompt_tokens", np.array([prompt_tokens], dtype=np.int32)),
            pb_utils.Tensor("completion_tokens", np.array([completion_tokens], dtype=np.int32)),
        ]
    )


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        params = model_parameters(args)
        self.generator = LocalGenerator(Path(params["model_dir"]))
        labels = {"model": config["name"]}
        # The families must outlive their metrics: keep them on the model.
        self.request_family = requests = pb_utils.MetricFamily(
            name="albert_generator_requests_total",
            description="Generation requests by outcome (completed, cancelled, failed, rejected)",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.token_family = tokens = pb_utils.MetricFamily(
            name="albert_generator_tokens_total",
            description="Tokens processed by the generator, by kind (prompt, completion)",
            kind=pb_utils.MetricFamily.COUNTER,
        )
        self.outcomes = {
            outcome: requests.Metric(labels={**labels, "outcome": outcome})
            for outcome in ("completed", "cancelled", "failed", "rejected")
        }
        self.prompt_tokens = tokens.Metric(labels={**labels, "kind": "prompt"})
        self.completion_tokens = tokens.Metric(labels={**labels, "kind": "completion"})
        self.pool = GenerationPool(
            self.generator.stream,
            self.generator.encode,
            workers=int(params.get("workers") or 1),
            max_queue=int(params.get("max_queue") or 16),
            limits=Limits(
                max_input_tokens=int(params.get("max_input_tokens") or 4096),
                max_output_tokens=int(params.get("max_output_tokens") or 2048),
            ),
            on_done=self._done,
        )

    def _done(self, _outcome, finished):
        self.prompt_tokens.increment(finished.prompt_tokens)
        self.completion_tokens.increment(finished.completion_tokens)

    def _reply(self, request):
        sender = request.get_response_sender()

        def piece(text):
            sender.send(_response(text))

        def final(text, finished):
            self.outcomes["completed"].increment(1)
            sender.send(
                _response(text, finished.reason, finished.prompt_tokens, finished.completion_tokens), flags=FINAL
            )

        def error(message, cancelled):
            code = pb_utils.TritonError.CANCELLED if cancelled else pb_utils.TritonError.INVALID_ARG
            if not cancelled and message.startswith("generator overloaded"):
                code = pb_utils.TritonError.UNAVAILABLE
            outcome = "cancelled" if cancelled else "rejected" if code == pb_utils.TritonError.UNAVAILABLE else "failed"
            self.outcomes[outcome].increment(1)
            sender.send(pb_utils.InferenceResponse(error=pb_utils.TritonError(message, code)), flags=FINAL)

        return Reply(piece=piece, final=final, error=error, cancelled=request.is_cancelled)

    def execute(self, requests):
        for request in requests:
            reply = self._reply(request)

            def get(name, request=request):
                tensor = pb_utils.get_input_tensor_by_name(request, name)
                return None if tensor is None else tensor.as_numpy()

            try:
                parsed = parse_request(get, self.pool.limits)
            except ValueError as exc:
                reply.error(str(exc), False)
                continue
            self.pool.submit(parsed, reply)

    def finalize(self):
        self.pool.close()

"""Triton python-backend glue for the GPU profile's embedder tokenizer: text and kind in, padded ids and mask out
(the encoder runs on Triton's onnxruntime backend, on the GPU). Same prefixes and truncation as the CPU
model: both use inference.embedding.EncoderTokenizer."""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from inference.embedding import EncoderTokenizer, bucket_width
from inference.requests import parse_item
from inference.triton_args import model_parameters


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        self.tokenizer = EncoderTokenizer(Path(params["model_dir"]), max_length=int(params["max_length"]))

    def execute(self, requests):
        responses = []
        for request in requests:
            try:
                text = pb_utils.get_input_tensor_by_name(request, "text").as_numpy()
                kind = pb_utils.get_input_tensor_by_name(request, "kind")
                item = parse_item(text, kind.as_numpy() if kind is not None else None)
                rows = self.tokenizer.ids(item.texts, item.kind)
                width = bucket_width(max(len(row) for row in rows), self.tokenizer.max_length)
                ids, mask = self.tokenizer.pad(rows, width)
                responses.append(
                    pb_utils.InferenceResponse(
                        [pb_utils.Tensor("input_ids", ids), pb_utils.Tensor("attention_mask", mask)]
                    )
                )
            except Exception as exc:
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(exc))))
        return responses

    def finalize(self):
        self.tokenizer = None

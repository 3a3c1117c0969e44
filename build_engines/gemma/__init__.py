"""EmbeddingGemma-300m: the embedded default's embedder (``build_engines.gemma.build``; ``export`` and ``model``
run in the build environment)."""

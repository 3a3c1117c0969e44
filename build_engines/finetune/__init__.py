"""The embedder's fine-tuning: ``pairs`` (mined or given), ``train`` (runs in the build environment, torch) and
``tune`` (the orchestration behind ``python -m build_engines finetune-embedder``)."""

"""The build ↔ serve contract: ``albert_interface.json``, written by ``build_engines`` when it renders a model
repository and read by the gateway (which models to call, with which tensors and limits)."""

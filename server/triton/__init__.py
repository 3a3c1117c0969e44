"""The Triton side of the gateway: the embedding and generator clients, the embedding micro-batcher, and the
tritonserver process (started and supervised by ``python -m server serve``)."""

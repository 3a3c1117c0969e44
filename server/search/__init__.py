"""Search: the service that validates, embeds, retrieves and shapes (``service.py``) over hybrid retrieval."""

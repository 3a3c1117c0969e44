"""The HTTP front end: the Litestar app (``create_app``), its routes by domain, its protocol and access log."""

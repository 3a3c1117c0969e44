"""What the tests share: the mini corpus and its fakes (``fixtures``), the real processes (``servers``),
certificates (``tls``), the deployment cases of the rendered repositories (``profiles``) and the observations
of a running stack (``stack``)."""

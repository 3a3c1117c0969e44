"""Processes the tests and benchmarks start (the gateway alone, tritonserver with the gateway, the
supervised ``serve``); not part of the product."""

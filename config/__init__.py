"""The settings tree, shared by every package (the gateway, ingestion, the builds, the benchmarks): it
imports nothing of the project's, so that none of them has to import another to be configured."""

"""The benchmark scripts in their smoke mode (seconds, real stack), so that they do not rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("script", "header", "timeout"),
    [
        ("search_overhead.py", "vs in-process", 300),
        ("answer_latency.py", "TTFT p50", 300),
        ("grpc_vs_http.py", "gRPC / HTTP", 300),
        ("embedder_tokenize_hop.py", "python hop adds", 300),
        ("profile_gateway.py", "inclusive", 300),
        ("loadtest.py", "loadtest customer:", 300),
        ("capacity.py", "GPUs", 300),
        # The first run builds the previous pipeline (e5 model and index: about 5 minutes on two cores).
        ("search_latency.py", "current / previous p50", 1200),
    ],
)
@pytest.mark.timeout(1500)
def test_benchmark_smoke(script: str, header: str, timeout: int) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert header in result.stdout

"""The benchmark scripts in their smoke mode (seconds, real stack), so that they do not rot."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("script", "header"),
    [
        ("search_overhead.py", "vs in-process"),
        ("answer_latency.py", "TTFT p50"),
        ("grpc_vs_http.py", "gRPC / HTTP"),
        ("embedder_tokenize_hop.py", "python hop adds"),
        ("profile_gateway.py", "inclusive"),
        ("loadtest.py", "loadtest customer:"),
        ("capacity.py", "GPUs"),
        ("search_latency.py", "current / previous p50"),
    ],
)
def test_benchmark_smoke(script: str, header: str) -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), "--smoke"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert header in result.stdout

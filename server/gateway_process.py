"""The gateway as a child process (``python -m server gateway``), for tests and benchmarks; ``local_stack``
runs tritonserver and the gateway together on free loopback ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from server.settings import Settings
from server.tritonserver import TritonPorts, TritonProcess, free_port

__all__ = ["GatewayProcess", "local_stack"]

_ROOT = Path(__file__).resolve().parent.parent


class GatewayProcess:
    """Started on a free loopback port, configured through ALBERT_* variables (extra ones via ``env``)."""

    def __init__(self, settings: Settings, triton_grpc_url: str, log: Path, **env: str) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.grpc_port = free_port()
        self.grpc_target = f"127.0.0.1:{self.grpc_port}"
        variables = {
            "ALBERT_CACHE_DIR": str(settings.cache_dir),
            "ALBERT_HTTP_PORT": str(self.port),
            "ALBERT_GRPC_PORT": str(self.grpc_port),
            "ALBERT_TRITON_GRPC_URL": triton_grpc_url,
            **env,
        }
        if settings.index_dir is not None:
            variables.setdefault("ALBERT_INDEX_DIR", str(settings.index_dir))
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "server", "gateway"],
            cwd=_ROOT,
            env={**os.environ, **variables},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_live(self, timeout: float = 60.0) -> GatewayProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.process.returncode} (see {self._log.name})")
            try:
                if httpx.get(f"{self.url}/health/live", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise TimeoutError("gateway did not come up")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._log.close()


@contextmanager
def local_stack(
    settings: Settings, work: Path, repository: Path | None = None, **env: str
) -> Iterator[tuple[TritonProcess, GatewayProcess]]:
    """tritonserver (the rendered repository, or ``repository``) and a gateway in front of it, logs in
    ``work``."""
    if repository is not None:
        env.setdefault("ALBERT_MODEL_INTERFACE", str(repository / "albert_interface.json"))
    served = repository or settings.repository_dir
    with TritonProcess(served, work / "triton", TritonPorts.free(), log=work / "triton.log") as triton:
        gateway = GatewayProcess(settings, triton.grpc_url, work / "gateway.log", **env)
        try:
            yield triton, gateway.wait_live()
        finally:
            gateway.stop()

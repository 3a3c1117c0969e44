"""Real processes for integration tests: tritonserver (the wheel's binary) and the gateway (uvicorn)."""

from __future__ import annotations

from pathlib import Path

from config.settings import Settings
from harness.gateway import GatewayProcess
from server.triton.process import TritonPorts, TritonProcess

__all__ = ["Gateway", "start_triton"]


def start_triton(settings: Settings, work: Path, ports: TritonPorts | None = None) -> TritonProcess:
    repository = settings.repository_dir
    if not settings.resolved_model_interface.exists():
        raise RuntimeError(f"no rendered model repository at {repository}: run scripts/test (it runs set-up)")
    # The context-manager entry starts it, waits for readiness and stops it again if that fails.
    return TritonProcess(repository, work, ports or TritonPorts.free(), log=work / "tritonserver.log").__enter__()


class Gateway(GatewayProcess):
    """The gateway with a short Triton timeout, so that failure tests run fast."""

    def __init__(self, settings: Settings, triton_grpc_url: str, log: Path, **env: str) -> None:
        super().__init__(settings, triton_grpc_url, log, **{"ALBERT_TRITON_TIMEOUT_S": "5", **env})

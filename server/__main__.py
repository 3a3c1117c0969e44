"""``python -m server serve``: tritonserver (supervised: restarted when it dies, server/triton/supervisor.py) and the
gateway, stopped together on Ctrl-C or SIGTERM after the requests in progress finish (``drain_s``).
``python -m server gateway``: the gateway alone, against a Triton already running (production layout).
"""

from __future__ import annotations

import os

# Retrieval runs in worker threads, and OpenBLAS's own thread pool then fights them for the cores: the
# 3,600 x 384 dense product took 1.9 ms instead of 0.1 ms with six searches at once (benchmarks/README.md,
# profile). One BLAS thread per search; set before numpy is imported.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import logging
import math
import signal
import sys
from functools import partial
from types import FrameType

import uvicorn

from config.settings import Settings, SettingsError, check_set_up
from contract.model_interface import InterfaceError, load_interface
from server.http.access_log import AccessLog
from server.http.app import create_app
from server.http.protocol import with_head_timeout
from server.runtime import serving
from server.triton.process import TritonPorts, TritonProcess
from server.triton.supervisor import PortTaken, Supervisor, check_ports_free


def _grpc_port(url: str) -> int:
    host, _, port = url.rpartition(":")
    if not host or not port.isdigit():
        raise SettingsError(f"ALBERT_TRITON_GRPC_URL must be host:port, got {url!r}")
    return int(port)


def _gateway_server(settings: Settings) -> uvicorn.Server:
    app = create_app(partial(serving, settings))  # the services, and the gRPC API over them
    config = uvicorn.Config(
        AccessLog(app) if settings.access_log else app,
        host=settings.http_host,
        port=settings.http_port,
        log_level="info",
        access_log=False,  # uvicorn's would write the query strings: server/http/access_log.py writes the line
        timeout_graceful_shutdown=math.ceil(settings.drain_s),
        http=with_head_timeout(settings.http_head_timeout_s),
    )
    return uvicorn.Server(config)


def _stop_on_sigterm(_signum: int, _frame: FrameType | None) -> None:
    # uvicorn shuts the gateway down on SIGTERM (requests in progress get ``drain_s`` to finish), then raises
    # the signal again: this handler turns it into the same exit as Ctrl-C, so that tritonserver is stopped
    # too (the default action would orphan it).
    raise KeyboardInterrupt


def _serve(settings: Settings, ports: TritonPorts) -> int:
    """tritonserver under a supervisor, and the gateway; both stop together."""
    check_ports_free(
        {
            "Triton HTTP": ports.http,
            "Triton gRPC": ports.grpc,
            "Triton metrics": ports.metrics,
            "the gateway's HTTP API": settings.http_port,
            **({"the gateway's gRPC API": settings.grpc_port} if settings.grpc_port else {}),
        },
    )
    log_path = settings.cache_dir / "logs" / "tritonserver.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    triton = TritonProcess(settings.repository_dir, settings.cache_dir / "triton", ports, log=log_path)
    gateway = _gateway_server(settings)

    def give_up() -> None:
        gateway.should_exit = True  # uvicorn drains and stops; main() then reports the failure

    supervisor = Supervisor(triton, restarts=settings.triton_restarts, on_give_up=give_up)
    print(f"Starting tritonserver (gRPC {ports.grpc}, HTTP {ports.http}); log: {log_path}", file=sys.stderr)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)
    try:
        supervisor.start()
        print(f"Gateway on http://{settings.http_host}:{settings.http_port} (Ctrl-C stops both)", file=sys.stderr)
        gateway.run()
    except (RuntimeError, TimeoutError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        pass
    finally:
        supervisor.stop()
        print("tritonserver stopped", file=sys.stderr)
    if supervisor.gave_up:
        print(
            f"error: tritonserver died and could not be restarted ({settings.triton_restarts} tries); "
            f"its log: {log_path}",
            file=sys.stderr,
        )
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument("command", choices=["serve", "gateway"])
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        settings = Settings.from_env()
        load_interface(settings.resolved_model_interface)  # says what to do when the repository is not rendered
        check_set_up(settings)  # a build or ingest setting changed since set-up would not take effect
        if args.command == "gateway":
            # A taken port is said plainly (exit 2), not as a failed start-up with a traceback (exit 3).
            check_ports_free({"the gateway's HTTP API": settings.http_port}, settings.http_host)
            if settings.grpc_port:
                check_ports_free({"the gateway's gRPC API": settings.grpc_port}, settings.grpc_host)
            _gateway_server(settings).run()
            return 0
        ports = TritonPorts(
            settings.triton_http_port, _grpc_port(settings.triton_grpc_url), settings.triton_metrics_port
        )
        return _serve(settings, ports)
    except (SettingsError, InterfaceError, PortTaken) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())

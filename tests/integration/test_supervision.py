"""The embedded default as a service manager runs it (``python -m server serve``, real tritonserver and
gateway): a start with Triton's ports taken, or with a build setting set-up did not build with, fails with a
clear message, and tritonserver killed under load comes back on its own while every request in the meantime
gets a clear 503 (none hangs, none is a 500) and a streamed answer being drafted ends with an error event."""

from __future__ import annotations

import json
import os
import signal
import socket
import threading
import time
from pathlib import Path

import httpx

from config.settings import Settings
from harness.gateway import ServeProcess, pids_with
from server.triton.process import free_port

QUESTIONS = [
    "Ma carte d'identité a été volée, que faire ?",
    "Je veux inscrire mon enfant à la cantine",
    "Mon propriétaire ne rend pas le dépôt de garantie",
    "Comment déclarer la naissance de mon fils ?",
]


def test_a_start_with_tritons_port_taken_fails_with_a_clear_message(tmp_path: Path) -> None:
    port = free_port()
    with socket.socket() as holder:  # what an orphaned tritonserver of an earlier start would be
        holder.bind(("127.0.0.1", port))
        holder.listen()
        serve = ServeProcess(tmp_path / "serve.log", ALBERT_TRITON_GRPC_URL=f"127.0.0.1:{port}")
        try:
            returncode = serve.process.wait(timeout=60)
        finally:
            serve.stop()
        assert pids_with(f"--grpc-port={port}") == [], "no tritonserver may be started beside the port's owner"
    assert returncode == 2
    output = serve.output()
    assert f"port {port} (Triton gRPC) on 127.0.0.1 is already in use" in output
    assert "ALBERT_TRITON_GRPC_URL" in output and "Gateway on" not in output


def test_a_start_with_a_build_setting_changed_since_set_up_is_refused(tmp_path: Path) -> None:
    recorded = json.loads(Settings.from_env().set_up_record.read_text())  # written by the set-up CI ran
    threads = 1 if recorded["generator_threads"] != 1 else 2
    serve = ServeProcess(tmp_path / "serve.log", ALBERT_GENERATOR_THREADS=str(threads))
    try:
        returncode = serve.process.wait(timeout=60)
    finally:
        serve.stop()
    assert returncode == 2
    output = serve.output()
    assert f"ALBERT_GENERATOR_THREADS={threads} (set-up built with {recorded['generator_threads']})" in output
    assert "python -m build_engines setup" in output and "Starting tritonserver" not in output


def test_tritonserver_killed_under_load_is_restarted_and_the_gateway_is_ready_again(tmp_path: Path) -> None:
    serve = ServeProcess(tmp_path / "serve.log", ALBERT_ANSWER_MODE="drafted")
    outcomes: list[tuple[float, int | str, str | None]] = []  # (time, status or exception, Retry-After)
    streams: list[tuple[float, float, str, str]] = []  # (start, end, last event's name, last event)
    stop, streaming = threading.Event(), threading.Event()

    def load(worker: int) -> None:
        n = 0
        with httpx.Client(base_url=serve.url, timeout=30) as client:
            while not stop.is_set():
                n += 1  # a new question each time: the retrieval cache would answer without Triton
                question = f"{QUESTIONS[worker % len(QUESTIONS)]} (demande {worker}-{n})"
                started = time.monotonic()
                try:
                    if worker == 0:  # a drafted answer, streamed: Triton dies while one is being written
                        body = {"question": question, "stream": True, "max_tokens": 64}
                        with client.stream("POST", "/v1/answers", json=body) as response:
                            events = []
                            for line in response.iter_lines():
                                if line.startswith("event: "):
                                    events.append(line.removeprefix("event: "))
                                    if events == ["sources"]:  # the sources are out: the draft is being written
                                        streaming.set()
                                elif line.startswith("data: ") and events:
                                    events[-1] += " " + line
                        if events:
                            streams.append((started, time.monotonic(), events[-1].split()[0], events[-1]))
                    else:
                        response = client.get("/v1/search", params={"q": question})
                    outcomes.append((time.monotonic(), response.status_code, response.headers.get("retry-after")))
                except httpx.HTTPError as exc:
                    outcomes.append((time.monotonic(), type(exc).__name__, None))
                time.sleep(0.05)

    try:
        serve.wait_ready()
        workers = [threading.Thread(target=load, args=(w,)) for w in range(4)]
        for worker in workers:
            worker.start()
        time.sleep(2)
        streaming.clear()
        assert streaming.wait(120), "no streamed answer started"
        (triton,) = serve.triton_pids()
        killed = time.monotonic()
        os.kill(triton, signal.SIGKILL)
        while serve.is_ready():  # the gateway notices at its next call to Triton
            assert time.monotonic() - killed < 30, "the gateway still says ready with Triton dead"
            time.sleep(0.1)
        back_after = time.monotonic() - killed + serve.wait_ready(timeout=240)
        time.sleep(2)
        stop.set()
        for worker in workers:
            worker.join(timeout=60)
        assert not any(w.is_alive() for w in workers), "a request hung"
        restarted = serve.triton_pids()
        assert serve.process.poll() is None
    finally:
        stop.set()
        serve.stop()
    assert len(restarted) == 1 and restarted[0] != triton
    after_kill = [o for o in outcomes if o[0] >= killed]
    statuses = {status for _, status, _ in after_kill}
    assert statuses <= {200, 503}, f"only answers or clear 503s while Triton is down: {statuses}"
    unavailable = [o for o in after_kill if o[1] == 503]
    assert unavailable, "the kill was not felt: no 503"
    assert all(retry == "5" for _, _, retry in unavailable), "503 says when to retry"
    assert any(status == 200 for t, status, _ in after_kill if t > killed + back_after), "served again"
    assert all(name in ("answer", "error") for _, _, name, _ in streams), "every stream ends with its last event"
    cut = [event for start, end, _, event in streams if start < killed < end]
    assert cut and all(e.startswith("error") and "backend_unavailable" in e for e in cut), cut
    assert "tritonserver exited with status -9" in serve.output()
    assert "tritonserver is ready again (restart 1)" in serve.output()

"""Resilience of the embedded default under bad input, overload, faults and slow clients; prints figures.

    .venv/bin/python -m benchmarks.resilience                      # every part (~8 min on 2 cores)
    .venv/bin/python -m benchmarks.resilience --parts overload --burst-s 10
    .venv/bin/python -m benchmarks.resilience --fuzz 2000          # a shorter fuzzing run
    .venv/bin/python -m benchmarks.resilience --smoke              # every part briefly (tests use it)

It starts ``python -m server serve`` (the supervised tritonserver and the gateway, as a service manager
would) on free loopback ports, over the set-up's repository and index, then:

- fuzz: ``--fuzz`` generated requests over every HTTP route (search GET/POST, answers plain and streamed,
  fiches, health, metrics, unknown routes and methods, malformed and nested bodies) and every gRPC method
  (valid messages with hostile fields, random bytes), 8 at a time: counts by status, 5xx, and crashes (the
  gateway gone, or tritonserver restarted);
- overload: the unloaded answer latency (one at a time), then an open-loop burst of answers arriving at
  ``--overload`` times the rate the machine sustains, for ``--burst-s`` seconds: share admitted and
  answered 429, the 429s' latency, p50/p99 of the admitted answers against the unloaded ones, any other
  error;
- fault: a mixed load (3 search clients, 1 answer client), tritonserver killed with SIGKILL: requests
  failed, the longest failing request, seconds until /health/ready is 200 again, requests hung or lost;
  then the whole service restarted (SIGTERM, start again) while a client of the client package searches
  with its default retry policy;
- slow clients: 50 connections that send their request one byte a second or not at all, and 10 streamed
  answers whose reader never reads, while the search latency is measured against the same without them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypedDict
from urllib.parse import quote

import grpc
import httpx
from albert_client import AnswerClient
from albert_proto.v1 import answers_pb2 as pb

from benchmarks._common import corpus_questions, percentile
from config.settings import Settings
from harness.gateway import ServeProcess

PARTS = ("fuzz", "overload", "fault", "slow")
_ACRONYMS = ["CAF", "APL", "RSA", "CPAM", "URSSAF", "1234567890", "n°", "12,5 %", "€", "-", "/", "AAH", "MDPH"]
_ODD = "\x00\x01\x07\x1b\u200b\u200f\u202e\ufeff\u0301\u0345🙂👨‍👩‍👧ﷺ𝕏ÿ\t\n\r"


def hostile_text(rng: random.Random, questions: list[str]) -> str:
    """A question as a fuzzer writes it: real, mangled, Unicode-heavy, dense in tokens, at or past the limit."""
    kind = rng.random()
    if kind < 0.35:
        return rng.choice(questions)
    if kind < 0.55:
        text = list(rng.choice(questions))
        for _ in range(rng.randint(1, 8)):
            text.insert(rng.randrange(len(text) + 1), rng.choice(_ODD))
        return "".join(text)
    if kind < 0.7:
        return "".join(chr(rng.randint(1, 0x2FFFF)) for _ in range(rng.randint(1, 60)))
    if kind < 0.85:
        n = rng.choice([1990, 2000, 2001, 2010, 5000])
        words: list[str] = []
        while sum(len(w) + 1 for w in words) < n:
            words.append(rng.choice(_ACRONYMS))
        return " ".join(words)[:n]
    return rng.choice(["", " ", "\n\t", "a", "?" * 2000, "é" * 1999])


def _safe(text: str) -> str:
    return "".join(c for c in text if not 0xD800 <= ord(c) <= 0xDFFF)


class Fuzzer:
    def __init__(self, serve: ServeProcess, questions: list[str], seed: int) -> None:
        self.serve = serve
        self.questions = questions
        self.seed = seed
        self.statuses: Counter[str] = Counter()
        self.server_errors: list[str] = []
        self.lock = threading.Lock()

    def _record(self, route: str, status: str) -> None:
        with self.lock:
            self.statuses[f"{route} {status}"] += 1
            if status.startswith("5") or status in ("INTERNAL", "UNKNOWN", "exception"):
                self.server_errors.append(f"{route} {status}")

    def _http(self, client: httpx.Client, rng: random.Random) -> None:
        question = _safe(hostile_text(rng, self.questions))
        audience = rng.choice([None, "particuliers", "professionnels", "associations", "x" * 50, "", "PARTICULIERS"])
        k = rng.choice([None, 1, 5, 50, 0, -1, 51, 2**40, "5", [5]])
        choice = rng.randrange(11)
        body: Any
        if choice == 0:
            route, response = "GET /v1/search", client.get("/v1/search", params={"q": question, "k": str(k)})
        elif choice in (1, 2):
            body = {"q": question, "audience": audience, "k": k}
            route, response = "POST /v1/search", client.post("/v1/search", json=body)
        elif choice in (3, 4):
            body = {
                "question": question,
                "audience": audience,
                "stream": choice == 4,
                "max_tokens": rng.choice([None, 0, 5000]),
            }
            route, response = "POST /v1/answers", client.post("/v1/answers", json=body)
        elif choice == 5:
            raw = rng.choice([b"[" * 60_000, b'{"question": ' * 4000, b"\xff\xfe", b'{"question": "a\x00"', b"{}"])
            path = rng.choice(["/v1/answers", "/v1/search"])
            route, response = (
                f"POST {path} (raw)",
                client.post(path, content=raw, headers={"content-type": "application/json"}),
            )
        elif choice == 6:
            fiche = rng.choice(["F1342", "N358", "F0", question[:100], "../../etc/passwd", "%00"])
            route, response = "GET /v1/fiches/{id}", client.get(f"/v1/fiches/{quote(fiche, safe='')}")
        elif choice == 7:
            path = rng.choice(["/health/live", "/health/ready", "/metrics", "/", "/schema/openapi.json"])
            route, response = f"GET {path}", client.get(path)
        elif choice == 8:
            method = rng.choice(["PUT", "DELETE", "PATCH", "OPTIONS"])
            route, response = f"{method} /v1/search", client.request(method, "/v1/search")
        elif choice == 9:
            route, response = "GET (unknown)", client.get(f"/v2/{rng.randrange(10**6)}")
        else:
            route, response = "POST /v1/answers (70 KB)", client.post("/v1/answers", content=b"x" * 70_000)
        self._record(route, str(response.status_code))

    def _grpc(self, channel: grpc.Channel, rng: random.Random) -> None:
        question = _safe(hostile_text(rng, self.questions))
        audience = rng.choice([None, "particuliers", "", "x" * 30])
        method = rng.choice(["Search", "Answer", "StreamAnswer", "GetFiche", "Search-bytes"])
        if method == "Search-bytes":
            payload = bytes(rng.randrange(256) for _ in range(rng.randint(1, 200)))
            method = rng.choice(["Search", "Answer", "GetFiche"])
        elif method == "Search":
            payload = pb.SearchRequest(
                query=question, audience=audience, k=rng.choice([None, 0, 5, 2**31])
            ).SerializeToString()
        elif method == "GetFiche":
            payload = pb.GetFicheRequest(id=question[:100]).SerializeToString()
        else:
            payload = pb.AnswerRequest(
                question=question, audience=audience, max_tokens=rng.choice([None, 0, 100])
            ).SerializeToString()
        path = f"/albert.v1.AnswerService/{method}"
        try:
            if method == "StreamAnswer":
                for _ in channel.unary_stream(path)(payload, timeout=120):
                    pass
            else:
                channel.unary_unary(path)(payload, timeout=120)
            code = "OK"
        except grpc.RpcError as exc:
            code = exc.code().name
        self._record(f"gRPC {method}", code)

    def run(self, n: int, concurrency: int = 8) -> dict[str, Any]:
        restarts_before = self.serve.output().count("ready again")
        counter = iter(range(n))
        started = time.perf_counter()

        def worker(w: int) -> None:
            rng = random.Random(self.seed * 1000 + w)
            with (
                httpx.Client(base_url=self.serve.url, timeout=120) as client,
                grpc.insecure_channel(self.serve.grpc_target) as channel,
            ):
                for _ in counter:
                    try:
                        if rng.random() < 0.75:
                            self._http(client, rng)
                        else:
                            self._grpc(channel, rng)
                    except httpx.HTTPError as exc:
                        self._record("http", f"exception {type(exc).__name__}")
                        with self.lock:
                            self.server_errors.append(repr(exc))

        threads = [threading.Thread(target=worker, args=(w,)) for w in range(concurrency)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        crashed = self.serve.process.poll() is not None
        restarts = self.serve.output().count("ready again") - restarts_before
        total = sum(self.statuses.values())
        return {
            "requests": total,
            "http": sum(v for k, v in self.statuses.items() if not k.startswith("gRPC")),
            "grpc": sum(v for k, v in self.statuses.items() if k.startswith("gRPC")),
            "5xx_or_internal": len(self.server_errors),
            "examples": self.server_errors[:10],
            "crashes": int(crashed) + restarts,
            "seconds": round(time.perf_counter() - started, 1),
            "by_route": dict(sorted(self.statuses.items())),
        }


async def _answer(client: httpx.AsyncClient, question: str) -> tuple[int, float, str | None]:
    started = time.perf_counter()
    try:
        response = await client.post("/v1/answers", json={"question": question})
        return response.status_code, time.perf_counter() - started, response.headers.get("retry-after")
    except httpx.HTTPError as exc:
        return -1, time.perf_counter() - started, type(exc).__name__


def overload(serve: ServeProcess, questions: list[str], factor: float, burst_s: float) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=1000)
        async with httpx.AsyncClient(base_url=serve.url, timeout=300, limits=limits) as client:
            unloaded = []
            for question in questions[:6]:
                status, seconds, _ = await _answer(client, question)
                if status == 200:
                    unloaded.append(seconds)
            # One at a time is what two cores sustain: a second answer at once shares the same cores (and the
            # one embedding instance), so it adds no throughput.
            sustained = 1 / statistics.median(unloaded)
            rate = factor * sustained
            tasks = []
            started = time.perf_counter()
            n = 0
            while time.perf_counter() - started < burst_s:
                tasks.append(asyncio.ensure_future(_answer(client, questions[(6 + n) % len(questions)] + f" ({n})")))
                n += 1
                await asyncio.sleep(max(0.0, started + n / rate - time.perf_counter()))
            results = await asyncio.gather(*tasks)
            elapsed = time.perf_counter() - started
        admitted = [s for status, s, _ in results if status == 200]
        refused = [s for status, s, _ in results if status == 429]
        other = Counter(str(status) for status, _, _ in results if status not in (200, 429))
        return {
            "unloaded_p50_s": round(percentile(unloaded, 50), 2),
            "unloaded_p99_s": round(percentile(unloaded, 99), 2),
            "sustained_per_s": round(sustained, 2),
            "admitted_at_once": _admitted_answers(),
            "offered_per_s": round(rate, 2),
            "requests": len(results),
            "admitted_share": round(len(admitted) / len(results), 3),
            "refused_share": round(len(refused) / len(results), 3),
            "refused_p50_ms": round(percentile(refused, 50) * 1000, 1),
            "refused_p99_ms": round(percentile(refused, 99) * 1000, 1),
            "refused_max_ms": round(max(refused, default=float("nan")) * 1000, 1),
            "retry_after_s": sorted({r for status, _, r in results if status == 429 and r}),
            "admitted_p50_s": round(percentile(admitted, 50), 2),
            "admitted_p99_s": round(percentile(admitted, 99), 2),
            "answered_per_s": round(len(admitted) / elapsed, 2),
            "other_errors": dict(other),
        }

    return asyncio.run(run())


def _admitted_answers() -> str:
    """What the gateway admits: the settings' bounds (the active one's default comes from the deployment)."""
    settings = Settings.from_env()
    active = settings.answers_max_active or "deployment default"
    return f"{active} active, {settings.answers_max_waiting} waiting"


class MixedLoad:
    """3 search clients and 1 answer client, new questions each time; every outcome with its time."""

    def __init__(self, url: str, questions: list[str]) -> None:
        self.url = url
        self.questions = questions
        self.outcomes: list[tuple[float, float, str]] = []  # (start, seconds, status)
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self._worker, args=(w,)) for w in range(4)]

    def _worker(self, w: int) -> None:
        n = 0
        with httpx.Client(base_url=self.url, timeout=60) as client:
            while not self.stop.is_set():
                n += 1
                question = f"{self.questions[(w * 97 + n) % len(self.questions)]} ({w}-{n})"
                started = time.monotonic()
                try:
                    if w == 0:
                        status = str(client.post("/v1/answers", json={"question": question}).status_code)
                    else:
                        status = str(client.get("/v1/search", params={"q": question}).status_code)
                except httpx.TimeoutException:
                    status = "hung"
                except httpx.HTTPError as exc:
                    status = f"lost ({type(exc).__name__})"
                self.outcomes.append((started, time.monotonic() - started, status))
                time.sleep(0.05)

    def __enter__(self) -> MixedLoad:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(timeout=120)


class _RetryPolicy(TypedDict, total=False):
    retries: int
    backoff_s: float


def fault(serve: ServeProcess, questions: list[str], log: Path) -> tuple[dict[str, Any], ServeProcess]:
    with MixedLoad(serve.url, questions) as load:
        time.sleep(3)
        (triton,) = serve.triton_pids()
        killed = time.monotonic()
        os.kill(triton, signal.SIGKILL)
        while serve.is_ready() and time.monotonic() - killed < 30:
            time.sleep(0.05)
        serve.wait_ready(timeout=300)
        ready_again = time.monotonic() - killed
        time.sleep(3)
    after = [o for o in load.outcomes if o[0] + o[1] >= killed]
    failed = [o for o in after if o[2] != "200"]
    kill = {
        "requests_after_kill": len(after),
        "failed": len(failed),
        "failed_by_status": dict(Counter(o[2] for o in failed)),
        "longest_failing_ms": round(max((o[1] for o in failed), default=0.0) * 1000, 1),
        "ready_again_s": round(ready_again, 1),
        "hung": sum(o[2] == "hung" for o in after),
        "lost": sum(o[2].startswith("lost") for o in after),
    }
    # The whole service restarted while clients of the client package keep searching: one with the default
    # retry policy, one patient enough for a restart.
    policies: dict[str, _RetryPolicy] = {
        "default": {},
        "patient (retries=6, backoff_s=0.5)": {"retries": 6, "backoff_s": 0.5},
    }
    results: dict[str, list[tuple[float, str]]] = {name: [] for name in policies}
    stop = threading.Event()

    def searching(name: str) -> None:
        with AnswerClient(serve.url, timeout_s=30, **policies[name]) as client:
            n = 0
            while not stop.is_set():
                n += 1
                started = time.monotonic()
                try:
                    client.search(f"{questions[n % len(questions)]} ({name} {n})")
                    results[name].append((started, "ok"))
                except Exception as exc:
                    results[name].append((started, type(exc).__name__))
                time.sleep(0.1)

    threads = [threading.Thread(target=searching, args=(name,)) for name in policies]
    for thread in threads:
        thread.start()
    time.sleep(2)
    stopped = time.monotonic()
    serve.stop()
    restarted = ServeProcess(log, same_ports_as=serve)
    restarted.wait_ready(timeout=300)
    back = time.monotonic() - stopped
    time.sleep(2)
    stop.set()
    for thread in threads:
        thread.join(timeout=180)
    restart: dict[str, Any] = {"down_s": round(back, 1)}
    for name, calls in results.items():
        during = [r for r in calls if r[0] >= stopped]
        failures = Counter(r[1] for r in during if r[1] != "ok")
        restart[f"client {name}"] = f"{len(during)} calls, failures {dict(failures) or 0}"
    return {"triton_killed": kill, "service_restarted": restart}, restarted


def _search_latencies(url: str, questions: list[str], n: int, tag: str) -> list[float]:
    latencies = []
    with httpx.Client(base_url=url, timeout=60) as client:
        for i in range(n):
            started = time.perf_counter()
            client.get("/v1/search", params={"q": f"{questions[i % len(questions)]} ({tag} {i})"}).raise_for_status()
            latencies.append(time.perf_counter() - started)
    return latencies


def _closed_by_server(sock: socket.socket) -> bool:
    """Whether the server has closed ``sock``: reading what it sent (a response the client never read may
    still wait in the kernel's buffers) ends with end-of-file within a second."""
    sock.settimeout(1.0)
    try:
        while sock.recv(65536):
            pass
    except TimeoutError:
        return False
    except OSError:
        return True
    return True


def slow_clients(serve: ServeProcess, questions: list[str]) -> dict[str, Any]:
    baseline = _search_latencies(serve.url, questions, 20, "base")
    sockets: list[socket.socket] = []
    stop = threading.Event()
    request = b"GET /v1/search?q=carte HTTP/1.1\r\nHost: x\r\n\r\n"

    def trickle(sock: socket.socket) -> None:
        for byte in request:
            if stop.wait(1.0):
                return
            try:
                sock.send(bytes([byte]))
            except OSError:
                return

    opened = time.perf_counter()
    for i in range(50):
        sock = socket.create_connection(("127.0.0.1", serve.http_port))
        sockets.append(sock)
        if i % 2 == 0:
            threading.Thread(target=trickle, args=(sock,), daemon=True).start()
    body = json.dumps({"question": questions[0], "stream": True}).encode()
    for _ in range(10):  # streamed answers nobody reads
        sock = socket.create_connection(("127.0.0.1", serve.http_port))
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(
            b"POST /v1/answers HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            + f"Content-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        sockets.append(sock)
    time.sleep(1)
    loaded = _search_latencies(serve.url, questions, 20, "slow")
    answer_started = time.perf_counter()
    with httpx.Client(base_url=serve.url, timeout=120) as client:
        answer_status = client.post("/v1/answers", json={"question": questions[-1]}).status_code
    answer_s = time.perf_counter() - answer_started
    head_timeout_s = Settings.from_env().http_head_timeout_s
    # The unread streams' answers finish, then uvicorn's 5 s keep-alive timeout closes their connections.
    wait_s = head_timeout_s + 10
    time.sleep(max(0.0, wait_s - (time.perf_counter() - opened)))
    closed = sum(_closed_by_server(sock) for sock in sockets)
    stop.set()
    for sock in sockets:
        sock.close()
    return {
        "search_p50_ms": round(percentile(baseline, 50) * 1000, 1),
        "search_p50_ms_with_slow_clients": round(percentile(loaded, 50) * 1000, 1),
        "ratio": round(percentile(loaded, 50) / percentile(baseline, 50), 2),
        "answer_status_with_slow_clients": answer_status,
        "answer_s_with_slow_clients": round(answer_s, 2),
        "connections": len(sockets),
        f"closed_by_the_server_within_{wait_s:g}_s": closed,
    }


def _print(name: str, figures: dict[str, Any]) -> None:
    print(f"\n## {name}")
    for key, value in figures.items():
        if key != "by_route":
            print(f"  {key}: {value}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.resilience", description=__doc__)
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated, among " + ", ".join(PARTS))
    parser.add_argument("--fuzz", type=int, default=10_000, help="generated requests (HTTP and gRPC together)")
    parser.add_argument("--overload", type=float, default=5.0, help="burst rate, times the sustained rate")
    parser.add_argument("--burst-s", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--smoke", action="store_true", help="every part, briefly (200 requests, a 3 s burst)")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/resilience.json"))
    args = parser.parse_args(argv)
    if args.smoke:
        args.fuzz, args.burst_s = 200, 3.0
    parts = [p for p in args.parts.split(",") if p]
    unknown = set(parts) - set(PARTS)
    if unknown:
        parser.error(f"unknown parts {sorted(unknown)}: choose among {', '.join(PARTS)}")
    settings = Settings.from_env()
    questions = corpus_questions(settings, 400, seed=args.seed)
    report: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "cores": os.cpu_count()}
    with tempfile.TemporaryDirectory() as work:
        log = Path(work) / "serve.log"
        serve = ServeProcess(log)
        try:
            report["start_s"] = round(serve.wait_ready(timeout=300), 1)
            print(f"serve ready in {report['start_s']} s ({serve.url}, gRPC {serve.grpc_target})")
            steps: dict[str, Callable[[], Any]] = {
                "fuzz": lambda: Fuzzer(serve, questions, args.seed).run(args.fuzz),
                "overload": lambda: overload(serve, questions, args.overload, args.burst_s),
                "slow": lambda: slow_clients(serve, questions),
            }
            for part in parts:
                if part == "fault":
                    report["fault"], serve = fault(serve, questions, log)
                else:
                    report[part] = steps[part]()
                _print(part, report[part] if part != "fault" else {**report["fault"]})
        finally:
            report["stopped_cleanly"] = serve.stop() == 0
            report["log_tail"] = log.read_text(errors="replace")[-3000:]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, ensure_ascii=False, indent=1))
    print(f"\nstopped cleanly: {report['stopped_cleanly']}; report: {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

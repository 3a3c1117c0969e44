"""Open-loop load tests of any deployment: arrivals on a Poisson schedule, so a slow server does not slow
the offered load down (a closed loop would hide saturation by waiting for answers before asking again).

    .venv/bin/python benchmarks/loadtest.py --scenario customer            # own local stack (CPU profile)
    .venv/bin/python benchmarks/loadtest.py --scenario ramp --mix search=1 --rate 5 --step 5
    .venv/bin/python benchmarks/loadtest.py --scenario constant --rate 2 --duration 60 \\
        --http https://albert.example.gouv.fr --grpc albert.example.gouv.fr:443 --mix search=0.5,grpc-search=0.5
    .venv/bin/python benchmarks/loadtest.py --smoke                        # a few seconds

Scenarios (``--duration`` is the whole run):
- ``constant``: ``--rate`` requests/s;
- ``ramp``: steps of ``--step-seconds`` from ``--rate`` up by ``--step``, until the server saturates (at a
  step's end: errors above 5 %, more than 10 % of its requests unanswered, or p95 above 4x the first
  step's) or ``--max-steps``;
- ``customer``: the 800,000-requests-a-month profile — 1.1 requests/s office-hours average, 5.6 at peak —
  multiplied by ``--scale`` (what the machine can hold): a quarter of the run at the average, half at
  the peak, a quarter at the average again.

The mix (``--mix``) draws each request's kind: ``search`` (HTTP GET /v1/search), ``answer`` (POST
/v1/answers), ``answer-stream`` (the same, streamed: time to first token and inter-token latency),
``grpc-search`` and ``grpc-answer-stream`` (the gRPC API, through the albert-client package). Questions are
titles of the corpus's question fiches, never the retrieval evaluation set (corpus/questions.py).

Report, in the manner of genai-perf: per phase, offered and achieved rate, latency p50/p95/p99, time to
first token and inter-token latency for streams, errors by type, and goodput — the rate of requests that
met the SLO (search ≤ ``--slo-search-ms``; answers: first token ≤ ``--slo-ttft-s`` and whole answer ≤
``--slo-answer-s``). JSON and PNG plots (latency vs offered load, throughput vs concurrency, stage
breakdown) go to ``--out``; one summary line is printed last.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import json
import os
import platform
import random
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from _common import corpus_questions
from albert_client import AsyncAnswerClient
from albert_client.errors import AlbertError
from albert_client.types import Answer, Delta

from config.settings import Settings
from harness.gateway import local_stack

KINDS = ("search", "answer", "answer-stream", "grpc-search", "grpc-answer-stream")
MONTHLY_AVERAGE, MONTHLY_PEAK = 1.1, 5.6  # requests/s: 800,000 a month over office hours, and its peak


@dataclass
class Phase:
    label: str
    rate: float  # offered requests/s
    seconds: float


@dataclass
class Outcome:
    phase: int
    kind: str
    scheduled: float  # seconds from the run's start
    latency_s: float = 0.0
    error: str | None = None
    ttft_s: float | None = None
    itl_s: list[float] = field(default_factory=list)
    stages_ms: dict[str, float] = field(default_factory=dict)
    in_flight: int = 0  # requests outstanding when this one was sent
    done: bool = False
    met_slo: bool = False


@dataclass(frozen=True)
class Slo:
    search_s: float
    ttft_s: float
    answer_s: float

    def met(self, outcome: Outcome) -> bool:
        if outcome.error:
            return False
        if "search" in outcome.kind:
            return outcome.latency_s <= self.search_s
        first = outcome.ttft_s if outcome.ttft_s is not None else outcome.latency_s
        return first <= self.ttft_s and outcome.latency_s <= self.answer_s


class Driver:
    """Sends one request of a kind and measures it on the client side."""

    def __init__(self, http: AsyncAnswerClient, grpc: AsyncAnswerClient | None, max_tokens: int | None) -> None:
        self.http, self.grpc, self.max_tokens = http, grpc, max_tokens

    async def send(self, outcome: Outcome, question: str) -> None:
        started = time.perf_counter()
        client = self.grpc if outcome.kind.startswith("grpc") else self.http
        try:
            if client is None:
                raise ValueError(f"{outcome.kind} needs --grpc")
            if outcome.kind.endswith("search"):
                result = await client.search(question, k=5)
                outcome.stages_ms = {"embed": result.timings_ms.embed, "retrieve": result.timings_ms.retrieve}
            elif outcome.kind == "answer":
                final = await client.answer(question, max_tokens=self.max_tokens)
                outcome.stages_ms = _stages(final)
            else:
                last = None
                async for event in client.stream_answer(question, max_tokens=self.max_tokens):
                    now = time.perf_counter() - started
                    if isinstance(event, Delta) and event.text:
                        if outcome.ttft_s is None:
                            outcome.ttft_s = now
                        elif last is not None:
                            outcome.itl_s.append(now - last)
                        last = now
                    elif isinstance(event, Answer):
                        outcome.stages_ms = _stages(event)
        except AlbertError as exc:
            outcome.error = f"{exc.status}:{exc.code}"
        except Exception as exc:  # connection refused, reset…: counted, the run goes on
            outcome.error = type(exc).__name__
        outcome.latency_s = time.perf_counter() - started
        outcome.done = True


def _stages(answer: Answer) -> dict[str, float]:
    t = answer.timings_ms
    return {"embed": t.embed, "retrieve": t.retrieve, "generate": t.generate}


async def run_phases(
    driver: Driver,
    phases: list[Phase],
    mix: dict[str, float],
    questions: list[str],
    *,
    seed: int,
    max_in_flight: int,
    stop_when: Any = None,
) -> tuple[list[Outcome], list[Phase]]:
    """Send requests at Poisson arrival times, phase after phase; ``stop_when(outcomes of a phase)`` ends a
    ramp early. A request that would exceed ``max_in_flight`` is not sent and counts as a client error."""
    rng = random.Random(seed)
    kinds, weights = list(mix), list(mix.values())
    outcomes: list[Outcome] = []
    tasks: set[asyncio.Task[None]] = set()
    in_flight = 0
    origin = time.perf_counter()
    ran: list[Phase] = []

    async def one(outcome: Outcome, question: str) -> None:
        nonlocal in_flight
        in_flight += 1
        try:
            await driver.send(outcome, question)
        finally:
            in_flight -= 1

    for index, phase in enumerate(phases):
        ran.append(phase)
        start = time.perf_counter() - origin
        at = start + rng.expovariate(phase.rate)
        first = len(outcomes)
        while at < start + phase.seconds:
            delay = at - (time.perf_counter() - origin)
            if delay > 0:
                await asyncio.sleep(delay)
            outcome = Outcome(phase=index, kind=rng.choices(kinds, weights)[0], scheduled=at, in_flight=in_flight)
            outcomes.append(outcome)
            if in_flight >= max_in_flight:
                outcome.error, outcome.done = "client:too_many_in_flight", True
            else:
                task = asyncio.create_task(one(outcome, rng.choice(questions)))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            at += rng.expovariate(phase.rate)
        rest = start + phase.seconds - (time.perf_counter() - origin)
        if rest > 0:
            await asyncio.sleep(rest)
        if stop_when is not None and stop_when(outcomes[first:], phase, ran):
            break
    if tasks:
        await asyncio.gather(*tasks)
    return outcomes, ran


def _pct(values: list[float], q: float) -> float | None:
    return None if not values else round(float(np.percentile(values, q)), 4)


def summarise(outcomes: list[Outcome], phases: list[Phase], slo: Slo) -> list[dict[str, Any]]:
    rows = []
    for index, phase in enumerate(phases):
        mine = [o for o in outcomes if o.phase == index]
        for o in mine:
            o.met_slo = slo.met(o)
        ok = [o for o in mine if not o.error]
        latencies = [o.latency_s for o in ok]
        ttft = [o.ttft_s for o in ok if o.ttft_s is not None]
        itl = [gap for o in ok for gap in o.itl_s]
        stages = {
            name: round(float(np.mean([o.stages_ms[name] for o in ok if name in o.stages_ms])), 2)
            for name in ("embed", "retrieve", "generate")
            if any(name in o.stages_ms for o in ok)
        }
        rows.append(
            {
                "phase": phase.label,
                "offered_rps": round(len(mine) / phase.seconds, 3),
                "achieved_rps": round(len(ok) / phase.seconds, 3),
                "goodput_rps": round(sum(o.met_slo for o in mine) / phase.seconds, 3),
                "goodput_share": round(sum(o.met_slo for o in mine) / len(mine), 3) if mine else None,
                "requests": len(mine),
                "by_kind": dict(collections.Counter(o.kind for o in mine)),
                "latency_s": {"p50": _pct(latencies, 50), "p95": _pct(latencies, 95), "p99": _pct(latencies, 99)},
                "ttft_s": {"p50": _pct(ttft, 50), "p95": _pct(ttft, 95)},
                "itl_s": {"p50": _pct(itl, 50), "p95": _pct(itl, 95)},
                "mean_in_flight": round(float(np.mean([o.in_flight for o in mine])), 2) if mine else 0.0,
                "errors": dict(collections.Counter(o.error for o in mine if o.error)),
                "stages_ms": stages,
            }
        )
    return rows


def plot(rows: list[dict[str, Any]], out: Path, stem: str) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = []
    by_load = sorted(rows, key=lambda r: r["offered_rps"])  # the customer profile goes up and down again
    offered = [r["offered_rps"] for r in by_load]
    fig, ax = plt.subplots(figsize=(6, 4))
    for q in ("p50", "p95", "p99"):
        ax.plot(offered, [r["latency_s"][q] for r in by_load], marker="o", label=f"latency {q}")
    if any(r["ttft_s"]["p95"] for r in rows):
        ax.plot(offered, [r["ttft_s"]["p95"] for r in by_load], marker="s", linestyle="--", label="first token p95")
    ax.set(xlabel="offered load (requests/s)", ylabel="seconds", title="Latency vs offered load")
    ax.legend()
    paths.append(out / f"{stem}-latency.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    fig, ax = plt.subplots(figsize=(6, 4))
    by_flight = sorted(rows, key=lambda r: r["mean_in_flight"])
    flight = [r["mean_in_flight"] for r in by_flight]
    ax.plot(flight, [r["achieved_rps"] for r in by_flight], marker="o", label="achieved")
    ax.plot(flight, [r["goodput_rps"] for r in by_flight], marker="x", label="goodput")
    ax.set(xlabel="requests in flight (mean)", ylabel="requests/s", title="Throughput vs concurrency")
    ax.legend()
    paths.append(out / f"{stem}-throughput.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    fig, ax = plt.subplots(figsize=(6, 4))
    bottom = np.zeros(len(rows))
    for stage in ("embed", "retrieve", "generate"):
        values = np.array([r["stages_ms"].get(stage, 0.0) for r in rows])
        ax.bar([r["phase"] for r in rows], values, bottom=bottom, label=stage)
        bottom += values
    ax.set(ylabel="ms per request (server side, mean)", title="Stage breakdown")
    ax.tick_params(axis="x", rotation=30)
    ax.legend()
    paths.append(out / f"{stem}-stages.png")
    fig.savefig(paths[-1], dpi=100, bbox_inches="tight")
    plt.close("all")
    return paths


def _phases(args: argparse.Namespace) -> list[Phase]:
    if args.scenario == "constant":
        return [Phase(f"{args.rate:g}/s", args.rate, args.duration)]
    if args.scenario == "customer":
        average, peak = MONTHLY_AVERAGE * args.scale, MONTHLY_PEAK * args.scale
        quarter = args.duration / 4
        return [
            Phase(f"average {average:.2f}/s", average, quarter),
            Phase(f"peak {peak:.2f}/s", peak, 2 * quarter),
            Phase(f"average {average:.2f}/s", average, quarter),
        ]
    return [
        Phase(f"{args.rate + i * args.step:g}/s", args.rate + i * args.step, args.step_seconds)
        for i in range(args.max_steps)
    ]


def _saturated(phase_outcomes: list[Outcome], ran: list[Phase], first_p95: list[float]) -> bool:
    """At the end of a ramp step: more than 5 % errors, more than 10 % of its requests still unanswered
    (the server no longer keeps up with the offered rate), or a p95 four times the first step's."""
    arrived = max(1, len(phase_outcomes))
    finished = [o for o in phase_outcomes if o.done]
    ok = [o.latency_s for o in finished if not o.error]
    p95 = float(np.percentile(ok, 95)) if ok else float("inf")
    if len(ran) == 1:
        first_p95.append(p95)
    errors = len(finished) - len(ok)
    return errors > 0.05 * arrived or len(finished) < 0.9 * arrived or p95 > 4 * first_p95[0]


def _mix(text: str) -> dict[str, float]:
    mix = {}
    for part in text.split(","):
        kind, _, weight = part.partition("=")
        if kind not in KINDS:
            raise SystemExit(f"--mix: unknown kind {kind!r} (one of {', '.join(KINDS)})")
        mix[kind] = float(weight or 1)
    return mix


def cache_counts(http_url: str) -> dict[str, float]:
    """The gateway's retrieval-cache lookups so far, from its /metrics (empty if it has none)."""
    from prometheus_client.parser import text_string_to_metric_families

    try:
        text = httpx.get(f"{http_url}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    return {
        sample.labels["result"]: sample.value
        for family in text_string_to_metric_families(text)
        if family.name == "albert_cache_requests"
        for sample in family.samples
        if sample.labels.get("cache") == "retrieval"
    }


async def _run(args: argparse.Namespace, http_url: str, grpc_target: str | None, questions: list[str]) -> Any:
    phases = _phases(args)
    http = AsyncAnswerClient(http_url, timeout_s=args.timeout, retries=0)
    grpc = AsyncAnswerClient(grpc_target, timeout_s=args.timeout, retries=0) if grpc_target else None
    first_p95: list[float] = []
    stop = (lambda done, _phase, ran: _saturated(done, ran, first_p95)) if args.scenario == "ramp" else None
    try:
        return await run_phases(
            Driver(http, grpc, args.max_tokens),
            phases,
            _mix(args.mix),
            questions,
            seed=args.seed,
            max_in_flight=args.max_in_flight,
            stop_when=stop,
        )
    finally:
        await http.close()
        if grpc is not None:
            await grpc.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenario", choices=["constant", "ramp", "customer"], default="customer")
    parser.add_argument("--mix", default="search=0.5,answer-stream=0.5", help="kind=weight,… (kinds: see above)")
    parser.add_argument("--rate", type=float, default=2.0, help="constant: rate; ramp: first step (requests/s)")
    parser.add_argument("--step", type=float, default=2.0, help="ramp: added per step (requests/s)")
    parser.add_argument("--step-seconds", type=float, default=20.0)
    parser.add_argument("--max-steps", type=int, default=8)
    parser.add_argument("--scale", type=float, default=0.1, help="customer: share of the real load to offer")
    parser.add_argument("--duration", type=float, default=120.0, help="constant and customer: seconds")
    parser.add_argument("--http", help="the gateway's HTTP URL (default: start a local stack)")
    parser.add_argument("--grpc", help="the gateway's gRPC target host:port (local stack: its own)")
    parser.add_argument("--max-tokens", type=int, default=None, help="answers: max_tokens (default: the server's)")
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--max-in-flight", type=int, default=512)
    parser.add_argument("--slo-search-ms", type=float, default=500.0)
    parser.add_argument("--slo-ttft-s", type=float, default=5.0)
    parser.add_argument("--slo-answer-s", type=float, default=15.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    parser.add_argument(
        "--no-cache", action="store_true", help="local stack: gateway caches off (every request does all its work)"
    )
    parser.add_argument("--smoke", action="store_true", help="a few seconds on a local stack, short answers")
    args = parser.parse_args()
    if args.smoke:
        args.scenario, args.mix, args.duration, args.scale, args.max_tokens = (
            "customer", "search=0.6,answer-stream=0.2,grpc-search=0.2", 6.0, 0.5, 8,
        )  # fmt: skip
    settings = Settings.from_env()
    questions = corpus_questions(settings, 1000, seed=args.seed)
    slo = Slo(args.slo_search_ms / 1000, args.slo_ttft_s, args.slo_answer_s)
    started = time.strftime("%Y%m%d-%H%M%S")
    # Answers are drafted by the generator here: the load test measures generation, not quoting.
    env = {"ALBERT_ANSWER_MODE": "drafted", **({"ALBERT_CACHE_ENTRIES": "0"} if args.no_cache else {})}
    with tempfile.TemporaryDirectory() as tmp, contextlib.ExitStack() as stack:
        if args.http:
            http_url, grpc_target = args.http, args.grpc
        else:
            _, gateway = stack.enter_context(local_stack(settings, Path(tmp), None, **env))
            http_url, grpc_target = gateway.url, args.grpc or gateway.grpc_target
        before = cache_counts(http_url)
        outcomes, ran = asyncio.run(_run(args, http_url, grpc_target, questions))
        after = cache_counts(http_url)
    lookups = {k: after.get(k, 0.0) - before.get(k, 0.0) for k in ("hit", "miss")}
    hit_rate = lookups["hit"] / sum(lookups.values()) if sum(lookups.values()) else None
    rows = summarise(outcomes, ran, slo)
    print(f"\n{'phase':<18}{'offered':>8}{'achieved':>9}{'goodput':>8}{'p50 s':>8}{'p95 s':>8}{'p99 s':>8}"
          f"{'TTFT p95':>9}{'ITL p50':>8}  errors")  # fmt: skip
    for r in rows:
        lat, ttft, itl = r["latency_s"], r["ttft_s"], r["itl_s"]
        cells = [lat["p50"], lat["p95"], lat["p99"], ttft["p95"], itl["p50"]]
        shown = "".join(f"{'-' if v is None else f'{v:.3f}':>{w}}" for v, w in zip(cells, (8, 8, 8, 9, 8), strict=True))
        print(f"{r['phase']:<18}{r['offered_rps']:>8.2f}{r['achieved_rps']:>9.2f}{r['goodput_rps']:>8.2f}{shown}  "
              f"{r['errors'] or ''}")  # fmt: skip
    if not args.smoke:
        args.out.mkdir(parents=True, exist_ok=True)
        stem = f"loadtest-{args.scenario}-{started}"
        report = {
            "meta": {"date": started, "machine": f"{platform.machine()} {platform.processor()}", "cpus": os.cpu_count(),
                     "args": {k: str(v) for k, v in vars(args).items()}, "slo": asdict(slo)},
            "phases": rows,
            "retrieval_cache": {**lookups, "hit_rate": hit_rate},
            "requests": [asdict(o) for o in outcomes],
        }  # fmt: skip
        (args.out / f"{stem}.json").write_text(json.dumps(report, indent=2))
        plots = plot(rows, args.out, stem)
        print(f"report: {args.out / f'{stem}.json'}; plots: {', '.join(p.name for p in plots)}")
    total = sum(r["requests"] for r in rows)
    seconds = sum(p.seconds for p in ran)
    good = sum(o.met_slo for o in outcomes)
    errors = sum(1 for o in outcomes if o.error)
    p95 = _pct([o.latency_s for o in outcomes if not o.error], 95)
    print(
        f"loadtest {args.scenario}: offered {total / seconds:.2f}/s, achieved {(total - errors) / seconds:.2f}/s, "
        f"goodput {good / seconds:.2f}/s ({good / max(1, total):.0%} within SLO), p95 {p95} s, errors {errors}, "
        f"retrieval cache hits {'-' if hit_rate is None else f'{hit_rate:.0%}'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

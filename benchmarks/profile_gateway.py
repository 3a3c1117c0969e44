"""Where the gateway spends its time under load: py-spy samples the real gateway process while searches run.

    .venv/bin/python benchmarks/profile_gateway.py                 # 20 s at concurrency 64
    .venv/bin/python benchmarks/profile_gateway.py --seconds 5 --smoke

Starts tritonserver and a gateway (caches off, so every search does all its work), sends real questions at
the given concurrency, and records the gateway with ``py-spy record`` (all threads, native frames off).
Writes the flame graph (SVG) and the collapsed stacks to ``benchmarks/results/``, and prints the share of
samples per function (inclusive and self) — the summary kept in benchmarks/README.md.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from _common import corpus_questions

from config.settings import Settings
from harness.gateway import local_stack


async def _load(url: str, queries: list[str], concurrency: int, seconds: float) -> int:
    done = 0
    stop = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def worker(offset: int) -> None:
            nonlocal done
            i = offset
            while time.monotonic() < stop:
                response = await client.get("/v1/search", params={"q": queries[i % len(queries)], "k": 5})
                response.raise_for_status()
                done += 1
                i += concurrency

        await asyncio.gather(*(worker(i) for i in range(concurrency)))
    return done


def summarise(collapsed: Path, top: int) -> list[tuple[str, float, float]]:
    """(function, inclusive share, self share) from py-spy's collapsed stacks, heaviest first."""
    inclusive: collections.Counter[str] = collections.Counter()
    own: collections.Counter[str] = collections.Counter()
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = stack.split(";")
        total += n
        for frame in set(frames):
            inclusive[frame] += n
        own[frames[-1]] += n
    return [(frame, n / total, own[frame] / total) for frame, n in inclusive.most_common(top)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--smoke", action="store_true", help="3 s at concurrency 8, only the summary")
    args = parser.parse_args()
    if args.smoke:
        args.seconds, args.concurrency = 3.0, 8
    py_spy = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    settings = Settings.from_env()
    queries = corpus_questions(settings, 400, seed=11)
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(parents=True, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    with tempfile.TemporaryDirectory() as tmp, local_stack(settings, Path(tmp), ALBERT_CACHE_ENTRIES="0") as (_, gw):
        assert gw.process is not None
        collapsed = Path(tmp) / "profile.txt"
        recorders = [
            subprocess.Popen(
                [
                    py_spy,
                    "record",
                    "--pid",
                    str(gw.process.pid),
                    "--duration",
                    str(int(args.seconds)),
                    "--rate",
                    "200",
                    "--threads",
                    "--format",
                    fmt,
                    "--output",
                    str(path),
                    "--nonblocking",
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            for fmt, path in (("raw", collapsed), ("flamegraph", out / f"gateway-profile-{stamp}.svg"))
            if fmt == "raw" or not args.smoke
        ]
        time.sleep(1.0)  # py-spy attached
        searches = asyncio.run(_load(gw.url, queries, args.concurrency, args.seconds))
        for recorder in recorders:
            _, err = recorder.communicate(timeout=60)
            if recorder.returncode != 0:
                print(err.decode(), file=sys.stderr)
                return 1
        rows = summarise(collapsed, args.top)
        if not args.smoke:
            shutil.copyfile(collapsed, out / f"gateway-profile-{stamp}.txt")
    rate = searches / args.seconds
    print(f"{searches} searches in {args.seconds:.0f} s at concurrency {args.concurrency} ({rate:.1f}/s)")
    print(f"{'inclusive':>10}{'self':>8}  function (file:line)")
    for frame, inclusive, own in rows:
        print(f"{inclusive:>9.1%}{own:>8.1%}  {frame}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

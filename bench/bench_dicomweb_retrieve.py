#!/usr/bin/env python3
"""Benchmark: retrieving a 300-slice 512x512 CT series over DICOMweb, concurrently vs one at a time.

Starts a fresh embedded Orthanc (via `agent.testbed.stack`) on a free loopback port, stores a generated
CT series (int16 with rescale, 512 KiB per slice) through STOW-RS, then retrieves every
instance with WADO-RS:
- baseline: one `GET .../instances/{sop}` after another (what a per-file loop does);
- ours: `retrieve_series(strategy="per-instance")` with `--concurrency` retrievals in flight;
- and the client's default, the whole series as one streamed multipart body (own line).
Each run checks that every SOP Instance came back. `--latency-ms` adds a fixed delay to every
request (a PACS on another host); the default 0 is plain loopback. Repeats alternate the modes
and report the median.

    .venv/bin/python bench/bench_dicomweb_retrieve.py [-n 300] [--concurrency 8] [--latency-ms 0]

Last line: `bench dicomweb-retrieve: <ratio>x (<ours> vs <baseline>)`, ratio = baseline / ours.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agent.testbed.cohort.imaging.plain_ct import plain_ct_series
from agent.testbed.stack import OrthancServer, OrthancSpec
from agent.testbed.stack.ports import free_port
from tools.imaging import DicomWebClient


class LatencyTransport(httpx.AsyncBaseTransport):
    """Adds a fixed latency to every request, then forwards it to the real server."""

    def __init__(self, latency_s: float, connections: int) -> None:
        self.latency_s = latency_s
        self.inner = httpx.AsyncHTTPTransport(limits=httpx.Limits(max_connections=connections))

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self.latency_s:
            await asyncio.sleep(self.latency_s)
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


@contextmanager
def fresh_orthanc() -> Iterator[OrthancServer]:
    with tempfile.TemporaryDirectory(prefix="bench-orthanc-") as tmp:
        server = OrthancServer(OrthancSpec(port=free_port(), state_dir=Path(tmp)))
        server.start()
        try:
            yield server
        finally:
            server.stop()


async def one_at_a_time(c: DicomWebClient, study: str, series: str, sops: list[str]) -> int:
    total = 0
    for sop in sops:
        total += len(await c.retrieve_instance(study, series, sop))
    return total


async def drain(items: AsyncIterator[bytes]) -> int:
    return sum([len(d) async for d in items])


async def timed(run: Callable[[], Awaitable[int]], expected_bytes: int) -> float:
    start = time.perf_counter()
    got = await run()
    elapsed = time.perf_counter() - start
    if got != expected_bytes:
        raise SystemExit(f"retrieved {got} bytes, expected {expected_bytes}")
    return elapsed


async def bench(url: str, args: argparse.Namespace) -> None:
    files_bytes = 0
    started = time.perf_counter()
    async with DicomWebClient(url) as c:
        stored = await c.store(plain_ct_series(args.n, patient_id="bench", spacing_mm=1.0))
        if not stored.ok or len(stored.stored) != args.n:
            raise SystemExit(f"STOW stored {len(stored.stored)} of {args.n} ({len(stored.failed)} failed)")
        print(f"stored {args.n} slices in {time.perf_counter() - started:.1f} s (STOW-RS)")
        study = (await c.search_studies({"PatientID": "bench"}))[0].study_instance_uid
        series = (await c.search_series(study))[0].series_instance_uid
        sops = [i.sop_instance_uid for i in await c.search_instances(study, series)]
        for sop in sops:
            files_bytes += len(await c.retrieve_instance(study, series, sop))  # warms the page cache
    print(f"series: {len(sops)} instances, {files_bytes / 2**20:.0f} MiB; {os.cpu_count()} CPUs; "
          f"latency {args.latency_ms:.0f} ms per request")  # fmt: skip

    def client(concurrency: int) -> DicomWebClient:
        transport = LatencyTransport(args.latency_ms / 1000, connections=concurrency)
        return DicomWebClient(url, transport=transport, max_concurrency=concurrency)

    times: dict[str, list[float]] = {"baseline": [], "ours": [], "multipart": []}
    for _ in range(args.repeats):
        async with client(1) as c:
            times["baseline"].append(await timed(lambda: one_at_a_time(c, study, series, sops), files_bytes))
        async with client(args.concurrency) as c:
            each = lambda: drain(c.retrieve_series(study, series, strategy="per-instance"))  # noqa: E731
            times["ours"].append(await timed(each, files_bytes))
        async with client(1) as c:
            stream = lambda: drain(c.retrieve_series(study, series, strategy="multipart"))  # noqa: E731
            times["multipart"].append(await timed(stream, files_bytes))
    base, ours, multi = (statistics.median(times[k]) for k in ("baseline", "ours", "multipart"))
    mib = files_bytes / 2**20
    print(f"one at a time:            {base:.3f} s ({mib / base:.0f} MiB/s)")
    print(f"{args.concurrency} in flight (per instance): {ours:.3f} s ({mib / ours:.0f} MiB/s)")
    print(f"one multipart stream:     {multi:.3f} s ({mib / multi:.0f} MiB/s)")
    print(f"bench dicomweb-retrieve-multipart: {base / multi:.1f}x ({multi:.3f} s vs {base:.3f} s)")
    print(f"bench dicomweb-retrieve: {base / ours:.1f}x ({ours:.3f} s vs {base:.3f} s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("-n", type=int, default=300, help="slices in the series")
    parser.add_argument("--concurrency", type=int, default=8, help="retrievals in flight (ours)")
    parser.add_argument("--latency-ms", type=float, default=0.0, help="added to every request")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with fresh_orthanc() as server:
        asyncio.run(bench(server.dicomweb_url, args))


if __name__ == "__main__":
    main()

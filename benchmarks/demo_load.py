"""Load test of the Gradio demo over loopback: a class of clients asks for samples at the same moment.

    python benchmarks/demo_load.py                       # 32 clients, 2 rounds, the demo's default limits
    python benchmarks/demo_load.py --clients 32 --concurrency 2 --max_queue 16 --output_json demo_load.json

It starts `sd-course demo` on 127.0.0.1 (a free port), then CLIENTS threads each send ROUNDS requests through
gradio_client (16 images of the shipped DDPM model, DPM-Solver++ 10 steps) all at once, plus one request with an
out-of-range step count. Every request must be answered with images or refused cleanly (the queue is full: "busy,
try again"; a cap: one line), the server must stay up, and its memory is sampled throughout. It prints one JSON
summary: answered / refused / failed, latency percentiles of the answered ones, the server's peak RSS, and the
number of tracebacks in the server's log (0 expected). Everything is bounded: CLIENTS x ROUNDS requests, each with a
timeout, and the server is stopped at the end. Only loopback is used.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from gradio_client import Client

from sd_course.core.provenance import write_result

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2, help="the demo's --concurrency")
    parser.add_argument("--max_queue", type=int, default=16, help="the demo's --max_queue")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--num_images", type=int, default=16)
    parser.add_argument("--timeout", type=float, default=300, help="seconds a request may take at most")
    parser.add_argument("--output_json", default=None)
    args = parser.parse_args()

    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    log = Path(tempfile.mkdtemp(prefix="demo_load_")) / "server.log"
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "NO_PROXY": "127.0.0.1",
           "no_proxy": "127.0.0.1"}
    with open(log, "w") as out:
        server = subprocess.Popen([sys.executable, "-m", "sd_course", "demo", "--host", "127.0.0.1", "--port",
                                   str(port), "--concurrency", str(args.concurrency), "--max_queue",
                                   str(args.max_queue)], stdout=out, stderr=subprocess.STDOUT, env=env, cwd=str(REPO))
    peak = [0.0]
    stop = threading.Event()

    def sample_memory():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_mib(server.pid))
            time.sleep(0.2)

    try:
        started = time.monotonic()
        while True:
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if server.poll() is not None or time.monotonic() - started > 180:
                    raise SystemExit(f"the demo did not start:\n{log.read_text()[-3000:]}")
                time.sleep(0.5)
        threading.Thread(target=sample_memory, daemon=True).start()
        results, lock = [], threading.Lock()
        barrier = threading.Barrier(args.clients)

        def client_thread(k: int):
            client = Client(url, verbose=False)
            barrier.wait()  # everyone asks at the same moment
            for r in range(args.rounds):
                t0 = time.monotonic()
                try:
                    client.predict("ddpm-mnist", "dpm++", args.steps, 1000 * k + r, args.num_images, "", 4.0,
                                   api_name="/on_sample")
                    outcome = "answered"
                except Exception as e:  # gradio_client raises for a refusal (queue full) and for an app error
                    text = str(e).lower()
                    outcome = "refused" if ("queue" in text and "full" in text) or "busy" in text else "failed"
                    if outcome == "failed":
                        outcome += f": {type(e).__name__}: {str(e)[:200]}"
                with lock:
                    results.append((outcome, time.monotonic() - t0))

        threads = [threading.Thread(target=client_thread, args=(k,)) for k in range(args.clients)]
        t_start = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=args.timeout * args.rounds + 60)
        wall = time.monotonic() - t_start
        # one request beyond the per-request cap: refused in one line, the server keeps going
        capped = "answered"
        try:
            Client(url, verbose=False).predict("ddpm-mnist", "dpm++", 100000, 0, 1, "", 4.0, api_name="/on_sample")
        except Exception as e:
            capped = f"refused: {str(e)[:160]}"
        alive = server.poll() is None
    finally:
        stop.set()
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
    answered = sorted(s for o, s in results if o == "answered")
    summary = dict(
        machine=f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        clients=args.clients, rounds=args.rounds, concurrency=args.concurrency, max_queue=args.max_queue,
        request=f"{args.num_images} images, dpm++ {args.steps} steps, pipelines/ddpm-mnist",
        requests=len(results), answered=len(answered),
        refused_busy=sum(o == "refused" for o, _ in results),
        failed=[o for o, _ in results if o.startswith("failed")],
        unfinished=args.clients * args.rounds - len(results),
        latency_s=dict(p50=round(statistics.median(answered), 2) if answered else None,
                       p90=round(answered[int(0.9 * (len(answered) - 1))], 2) if answered else None,
                       max=round(answered[-1], 2) if answered else None),
        wall_s=round(wall, 1), server_alive_after=alive, server_peak_rss_mib=round(peak[0], 1),
        over_the_cap=capped, tracebacks_in_server_log=log.read_text().count("Traceback"),
    )
    print(json.dumps(summary, indent=2))
    if args.output_json:
        write_result(args.output_json, summary, inputs=["pipelines/ddpm-mnist"],
                     tolerance=0.25)


if __name__ == "__main__":
    main()

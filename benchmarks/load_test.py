"""Bounded load test of the demo on loopback: concurrent retrieval, a burst of generation, memory.

    python benchmarks/load_test.py                    # tiny profile, 3 rounds, stops by itself
    python benchmarks/load_test.py --queue-size 256   # the same with a longer Gradio queue
    python benchmarks/load_test.py --json out.json    # also write the figures as JSON

The demo (``demo.app.build_demo``, tiny profile: untrained random stand-ins, no downloads) is started
in a child process bound to 127.0.0.1 only. Each round sends ``--retrieval`` concurrent requests
(caption -> images, image -> captions, sound -> images, mixed) through ``gradio_client``, spread over
``--clients`` sessions (separate users), then a burst
of ``--generation`` concurrent audio -> image requests, and samples the server's resident memory
(RSS) after each. Reported per round and overall: requests, successes, failures by message,
p50/p95 latency (submit -> result, queue wait included), server RSS.

Goals (issue 7): 0 failed retrieval requests; generation requests complete or are refused with a
clear queue-full message; RSS flat across rounds. The script never talks to anything but
127.0.0.1, kills the server when done, and exits on its own after ``--deadline`` seconds at most.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import goal_line  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run from a plain checkout: fusemix and demo live at the repo root
    sys.path.insert(0, str(ROOT))
GALLERY = "Default photos (scikit-image)"
CAPTIONS = ["a cat with green eyes", "a rocket on a launch pad", "coins on a table", "a cup of coffee",
            "galaxies in deep space", "a horse in a field", "the moon at night", "a man on a motorcycle"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# --------------------------------------------------------------------------- the server (child)


def atomic_gradio_image_cache() -> None:
    """Experiment only (--atomic-gradio-cache): Gradio's ``save_pil_to_cache`` rewrites a content-hashed
    file in place, so a request returning the same image as another one being downloaded can truncate
    that download. Write under a temporary name and rename instead (and skip a file already there)."""
    from gradio import processing_utils as pu

    def save_pil_to_cache(img, cache_dir, name="image", format="webp"):
        data = pu.encode_pil_to_bytes(img, format)
        d = Path(cache_dir) / pu.hash_bytes(data)
        d.mkdir(exist_ok=True, parents=True)
        target = (d / f"{name}.{format}").resolve()
        if not target.exists():
            fd, tmp = tempfile.mkstemp(dir=d, prefix=f".{name}.")
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, target)
        return str(target)

    pu.save_pil_to_cache = save_pil_to_cache


def serve(port: int, tiny_root: str, atomic_cache: bool = False) -> None:
    """Child process: build the tiny demo, launch it on 127.0.0.1:port, block until killed."""
    if atomic_cache:
        atomic_gradio_image_cache()
    from demo.app import build_demo, launch_kwargs
    from demo.models import Settings

    settings = Settings.from_env(profile="tiny", tiny_root=tiny_root, host="127.0.0.1", port=port)
    demo = build_demo(settings=settings)
    kw = launch_kwargs(settings)
    kw.update(server_name="127.0.0.1", server_port=port)
    demo.launch(prevent_thread_lock=True, quiet=True, **kw)
    print(f"READY http://127.0.0.1:{port}/ queue_size={settings.limits.queue_size}", flush=True)
    threading.Event().wait()


# --------------------------------------------------------------------------- the client (parent)


def rss_mb(pid: int) -> float:
    import psutil

    return psutil.Process(pid).memory_info().rss / 2**20


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(q / 100 * (len(v) - 1)))))
    return v[k]


def run_burst(clients: list, calls: list[tuple[tuple, str]], timeout: float) -> dict:
    """Submit every call at once (round-robin over the clients: one session each, like separate
    users); wait for all; latency and failures per call."""
    start = time.perf_counter()
    jobs = []
    for i, (args, api) in enumerate(calls):
        t = time.perf_counter()
        jobs.append((clients[i % len(clients)].submit(*args, api_name=api), t))
    lat, fails = [], Counter()
    deadline = start + timeout
    for (job, t), (_, api) in zip(jobs, calls):
        try:
            job.result(timeout=max(0.1, deadline - time.perf_counter()))
            lat.append(time.perf_counter() - t)
        except Exception as e:  # noqa: BLE001 - counted and reported
            msg = str(e).strip().splitlines()[0][:120] if str(e).strip() else type(e).__name__
            msg = re.sub(r"expected \d+\)", "expected N)", msg)
            fails[f"{api}: {type(e).__name__}: {msg}"] += 1
    return {"requests": len(calls), "ok": len(lat), "failed": sum(fails.values()), "failures": dict(fails),
            "p50_s": round(pct(lat, 50), 3), "p95_s": round(pct(lat, 95), 3), "max_s": round(max(lat, default=0), 3),
            "wall_s": round(time.perf_counter() - start, 2)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--retrieval", type=int, default=200, help="concurrent retrieval requests per round")
    p.add_argument("--generation", type=int, default=24, help="concurrent audio->image requests per round")
    p.add_argument("--rounds", type=int, default=3, help="rounds (memory must stay flat across them)")
    p.add_argument("--clients", type=int, default=20, help="gradio_client sessions the requests are spread over")
    p.add_argument("--queue-size", type=int, default=None, help="FUSEMIX_QUEUE_SIZE for the server (default: the demo's)")
    p.add_argument("--deadline", type=float, default=900.0, help="hard stop for the whole run, seconds")
    p.add_argument("--tiny-root", default=None, help="where the tiny stand-ins are built (reused between runs)")
    p.add_argument("--json", default=None, help="write the figures here too")
    p.add_argument("--atomic-gradio-cache", action="store_true",
                   help="experiment: patch Gradio's image cache writes to be atomic in the server")
    p.add_argument("--serve", type=int, default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve is not None:
        serve(args.serve, args.tiny_root, args.atomic_gradio_cache)
        return {}

    t_start = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="fusemix-load-"))
    tiny_root = args.tiny_root or str(Path(tempfile.gettempdir()) / "fusemix-load-tiny")
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False", "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1",
           "FUSEMIX_CACHE": str(Path(tiny_root) / "cache"), "NO_PROXY": "127.0.0.1,localhost",
           "no_proxy": "127.0.0.1,localhost", "GRADIO_TEMP_DIR": str(work / "gradio")}
    env.setdefault("OMP_NUM_THREADS", "1")
    if args.queue_size:
        env["FUSEMIX_QUEUE_SIZE"] = str(args.queue_size)
    port = free_port()
    log = open(work / "server.log", "wb")
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port), "--tiny-root", tiny_root]
                              + (["--atomic-gradio-cache"] if args.atomic_gradio_cache else []),
                              env=env, stdout=subprocess.PIPE, stderr=log, cwd=ROOT, start_new_session=True)

    def stop_server(*_):
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()

    timer = threading.Timer(args.deadline, lambda: (stop_server(), os._exit(3)))  # stops by itself, whatever happens
    timer.daemon = True
    timer.start()
    result: dict = {"settings": vars(args) | {"port": port}}
    try:
        line = server.stdout.readline().decode()
        if not line.startswith("READY"):
            raise SystemExit(f"server did not start: {line!r}\n{(work / 'server.log').read_text()[-3000:]}")
        url = line.split()[1]
        assert url.startswith("http://127.0.0.1:"), url  # loopback only
        result["server"] = line.strip()
        result["startup_s"] = round(time.monotonic() - t_start, 1)
        from gradio_client import Client, handle_file

        per = max(args.retrieval, args.generation) // max(1, args.clients) + 8
        clients = [Client(url, verbose=False, max_workers=per, download_files=str(work / "downloads"))
                   for _ in range(max(1, args.clients))]
        client = clients[0]
        from fusemix.default_gallery import default_gallery_dir

        wav = ROOT / "demo" / "examples" / "bell.wav"
        img = default_gallery_dir() / "chelsea.png"
        # Warm-up: every endpoint once, so models are loaded before the memory baseline.
        t = time.perf_counter()
        client.predict(CAPTIONS[0], GALLERY, "reference", 4, api_name="/caption_to_images")
        client.predict(handle_file(str(img)), "reference", 4, api_name="/image_to_captions")
        client.predict(handle_file(str(wav)), "baseline", GALLERY, 4, api_name="/sound_to_images")
        client.predict(handle_file(str(wav)), "captions", "", 0.3, 0, 2, 1.0, 64, api_name="/audio_to_image")
        result["warmup_s"] = round(time.perf_counter() - t, 1)
        result["rss_mb_after_warmup"] = round(rss_mb(server.pid), 1)

        def retrieval_calls(n: int, salt: int) -> list:
            calls = []
            for i in range(n):
                kind = i % 4
                if kind in (0, 1):
                    calls.append(((CAPTIONS[(i + salt) % len(CAPTIONS)] + f" #{i}", GALLERY,
                                   "reference" if kind == 0 else "fusemix", 4), "/caption_to_images"))
                elif kind == 2:
                    calls.append(((handle_file(str(img)), "reference", 5), "/image_to_captions"))
                else:
                    calls.append(((handle_file(str(wav)), "fusemix", GALLERY, 4), "/sound_to_images"))
            return calls

        def generation_calls(n: int, salt: int) -> list:
            return [((handle_file(str(wav)), "bridge" if i % 2 else "captions", "", 0.3, salt * 1000 + i, 2, 1.0, 64),
                     "/audio_to_image") for i in range(n)]

        rounds = []
        for r in range(args.rounds):
            left = args.deadline - (time.monotonic() - t_start) - 30
            if left < 30:
                result["stopped_early"] = f"deadline: {r} of {args.rounds} rounds done"
                break
            ret = run_burst(clients, retrieval_calls(args.retrieval, r), timeout=left / 2)
            rss_ret = rss_mb(server.pid)
            gen = run_burst(clients, generation_calls(args.generation, r), timeout=left / 2)
            rss_gen = rss_mb(server.pid)
            rounds.append({"round": r, "retrieval": ret, "generation": gen,
                           "rss_mb_after_retrieval": round(rss_ret, 1), "rss_mb_after_generation": round(rss_gen, 1)})
            print(f"round {r}: retrieval {ret['ok']}/{ret['requests']} ok, p50 {ret['p50_s']} s, p95 {ret['p95_s']} s "
                  f"(wall {ret['wall_s']} s); generation {gen['ok']}/{gen['requests']} ok, p50 {gen['p50_s']} s, "
                  f"p95 {gen['p95_s']} s; failures {ret['failures'] | gen['failures']}; "
                  f"server RSS {rss_ret:.0f} -> {rss_gen:.0f} MB", flush=True)
        result["rounds"] = rounds
        if rounds:
            rss = [result["rss_mb_after_warmup"]] + [x["rss_mb_after_generation"] for x in rounds]
            result["summary"] = {
                "retrieval_requests": sum(x["retrieval"]["requests"] for x in rounds),
                "retrieval_failed": sum(x["retrieval"]["failed"] for x in rounds),
                "generation_requests": sum(x["generation"]["requests"] for x in rounds),
                "generation_ok": sum(x["generation"]["ok"] for x in rounds),
                "generation_failed": sum(x["generation"]["failed"] for x in rounds),
                "generation_failures": dict(sum((Counter(x["generation"]["failures"]) for x in rounds), Counter())),
                "retrieval_failures": dict(sum((Counter(x["retrieval"]["failures"]) for x in rounds), Counter())),
                "rss_mb_warmup_then_each_round": rss,
                "rss_growth_mb_first_to_last_round": round(rss[-1] - rss[1], 1),
            }
        # The server must still answer after all that.
        client.predict(CAPTIONS[1], GALLERY, "reference", 2, api_name="/caption_to_images")
        result["still_serving"] = True
        for c in clients:
            c.close() if hasattr(c, "close") else None
    finally:
        stop_server()
        timer.cancel()
        log.close()
        if "still_serving" in result:  # keep the server log of a failed run for a look
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"server log kept in {work / 'server.log'}", file=sys.stderr)
    result["total_s"] = round(time.monotonic() - t_start, 1)
    print(json.dumps(result.get("summary", result), indent=1))
    summary = result.get("summary", {})
    failed = summary.get("retrieval_failed", 0) + summary.get("generation_failed", 0)
    print("(failed requests over every round; the server still answered after them)" if result.get("still_serving")
          else "(the server stopped answering)")
    print(goal_line("load_test_failed_requests", failed if result.get("still_serving") else 10**9, "<=", 0))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1) + "\n")
    return result


if __name__ == "__main__":
    main()

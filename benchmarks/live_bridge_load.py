"""Does a request keep its speed while the app trains its bridge? (issue 17: "any request is answered within
the usual time while it trains").

The real architectures with random weights (``live_bridge_time.build_real_arch``: CLAP htsat-unfused, the
sd-turbo text encoder). A "request" is what every Audio -> Image request does on the CPU besides the UNet:
one prompt through the SD text encoder and one caption through CLAP's text tower, timed ``--rounds`` times
on an idle machine, then again while the app's own ``LiveBridge`` trains in its child process (niceness 19)
on the same models. Prints both medians, their ratio and a GOAL line.

    python benchmarks/live_bridge_load.py      # ~3 minutes on 2 cores
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402


def timed_requests(encoders, rounds: int) -> list[float]:
    out = []
    for i in range(rounds):
        t = time.perf_counter()
        for enc in encoders:
            enc.encode([f"a dog barking in the rain, take {i}"], progress=False)
        out.append(time.perf_counter() - t)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv=None) -> None:
    import train_bridge
    from common import goal_line, machine_line
    from live_bridge_time import build_real_arch

    from fusemix.encoders import load_encoder

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--rounds", type=int, default=15)
    p.add_argument("--captions", type=int, default=200, help="captions the background training uses")
    args = p.parse_args(argv)
    print(machine_line(), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        os.environ["FUSEMIX_CACHE"] = str(tmp / "cache")
        clap, sd = build_real_arch(tmp)
        encoders = [load_encoder("sd-text", sd), load_encoder("clap-text", clap)]
        timed_requests(encoders, 2)  # warm-up
        idle = timed_requests(encoders, args.rounds)
        live = train_bridge.LiveBridge(clap, sd, max_captions=args.captions).start()
        while live.proc is None and live.status()["state"] == "training":
            time.sleep(0.2)
        time.sleep(5)  # the child has loaded its models and is encoding
        c0, t0 = cpu_seconds(live.proc.pid), time.perf_counter()
        busy = timed_requests(encoders, args.rounds)
        child = (cpu_seconds(live.proc.pid) - c0) / (time.perf_counter() - t0)
        c1, t1 = cpu_seconds(live.proc.pid), time.perf_counter()
        time.sleep(3)  # no request: the child takes the cores
        alone = (cpu_seconds(live.proc.pid) - c1) / (time.perf_counter() - t1)
        state = live.status()
        if live.proc is not None and live.proc.poll() is None:
            live.proc.kill()
    print(f"the training child (niceness 19) used {child:.2f} CPU cores during the requests and {alone:.2f} "
          f"in the 3 s after them; it was at '{state['stage']}' "
          f"{state['done']}/{state['total']} when the busy rounds ended")
    a, b = statistics.median(idle), statistics.median(busy)
    print(f"request (SD text encoder + CLAP text tower, one prompt): idle median {a * 1000:.0f} ms, "
          f"while the bridge trains {b * 1000:.0f} ms (x{b / a:.2f}); torch threads {torch.get_num_threads()}")
    print(goal_line("live_bridge_request_slowdown", b / a, "<=", 1.5))


if __name__ == "__main__":
    main()

"""
CPU per relayed call of this checkout's ocppproxy against another build of it, and both
against the Node tool, in the same interleaved rounds: what a change to the per-frame
path gains in the whole daemon, measured on a shared machine where runs apart from each
other differ by more than the change.

    .venv/bin/python bench/versus_venv.py --reference DIR [--rounds R] [--seconds T]

C{DIR} is a copy of the venv with the other build installed, for instance main's::

    cp -a .venv /tmp/ref && git archive main | (mkdir /tmp/main-src && tar -x -C /tmp/main-src)
    /tmp/ref/bin/python -m pip install --no-deps --force-reinstall --no-cache-dir /tmp/main-src

Each round runs bench/run.py's closed loop (K stations, Heartbeats, a primary and a
secondary, each station from a loopback address of its own) through the reference, this
build and the Node tool (skipped, saying why, if it cannot run), in alternating order.
Prints each round's CPU per call (user and system), the ratios, and their medians.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile

import run


def _twistd(name: str, python: str, twistd: str, config: str, workdir: str) -> run.Process:
    return run.Process(
        name, [python, twistd, "-n", "--pidfile=", "ocppproxy", "-c", config], workdir, "StationFactory starting on"
    )


async def main(args) -> None:
    workdir = tempfile.mkdtemp(prefix="ocppproxy-versus-")
    primary_port, secondary_port, reference_port, this_port, node_port = (run.free_port() for _ in range(5))
    primary = run.central("primary", primary_port, workdir)
    secondary = run.central("secondary", secondary_port, workdir)
    reference_bin = os.path.join(os.path.abspath(args.reference), "bin")
    reference = _twistd(
        "reference",
        os.path.join(reference_bin, "python"),
        os.path.join(reference_bin, "twistd"),
        run.proxy_config(workdir, reference_port, primary_port, secondary_port, name="reference"),
        workdir,
    )
    this = _twistd(
        "this",
        sys.executable,
        os.path.join(run.BIN, "twistd"),
        run.proxy_config(workdir, this_port, primary_port, secondary_port, name="this"),
        workdir,
    )
    node = run.node_process(args, workdir, node_port, primary_port, secondary_port)
    processes = [process for process in (primary, secondary, reference, this, node) if process is not None]
    targets = [
        run.LoopTarget("reference", f"ws://127.0.0.1:{reference_port}/", [reference]),
        run.LoopTarget("this", f"ws://127.0.0.1:{this_port}/", [this]),
    ]
    if node is not None:
        targets.append(run.LoopTarget("node", f"ws://127.0.0.1:{node_port}/", [node]))
    cpu: dict[str, list[float]] = {target.name: [] for target in targets}
    try:
        for process in processes:
            await process.start()
        for number in range(args.rounds):
            for target in targets if number % 2 == 0 else targets[::-1]:
                result = await run.closed_loop(target, args.stations, args.seconds)
                cpu[target.name].append(result.cpu_us_per_call)
                system = result.cpu_us_per_call * result.system_cpu_share
                print(
                    f"  {target.name}: {result.cpu_us_per_call} µs per call (user {result.cpu_us_per_call - system:.1f},"
                    f" system {system:.1f}), {result.calls_per_second} calls/s, {result.errors} errors",
                    flush=True,
                )
            line = f"round {number + 1}: this/reference {cpu['this'][-1] / cpu['reference'][-1]:.3f}"
            if node is not None:
                line += (
                    f", reference/Node tool {cpu['reference'][-1] / cpu['node'][-1]:.3f},"
                    f" this/Node tool {cpu['this'][-1] / cpu['node'][-1]:.3f}"
                )
            print(f"{line}; load average {os.getloadavg()[0]:.1f}", flush=True)
    finally:
        for process in reversed(processes):
            process.stop()
    pairs = [("this", "reference")] + ([("reference", "node"), ("this", "node")] if node is not None else [])
    for top, bottom in pairs:
        ratios = [a / b for a, b in zip(cpu[top], cpu[bottom])]
        print(
            f"CPU per call {top}/{bottom}: {' '.join(f'{r:.3f}' for r in ratios)}; median {statistics.median(ratios):.3f}"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", required=True, help="a venv with the other build of ocppproxy installed")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--stations", type=int, default=50)
    parser.add_argument(
        "--node-tool",
        default=run.DEFAULT_DIRECTORY,
        help="the Node tool's directory (as bench/run.py's --node-tool)",
    )
    asyncio.run(main(parser.parse_args()))

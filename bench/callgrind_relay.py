"""
Instructions per relayed CALL of the whole daemon, counted by callgrind: deterministic
where CPU time on a shared machine is not, so a change of a few per cent shows.

    .venv/bin/python bench/callgrind_relay.py [--stations K] [--calls M] [--feature NAME]   (after make venv)

Starts the two benchmark central systems and ``twistd -n ocppproxy`` under ``valgrind
--tool=callgrind`` with counting off, connects K stations (each from a loopback address
of its own), warms up, then counts only while each station sends M Heartbeats in a
closed loop (``callgrind_control -i on`` / ``off``). Prints the user-space instructions
(callgrind's Ir) per relayed CALL and leaves the callgrind output file for
``callgrind_annotate``. The kernel's part (the socket calls, an ``fsync``) is not counted.
``--feature`` turns on one of ``bench/features.py``'s switches (``outbox``,
``outbox-mirror-down``, ...), so that two runs compare a feature's cost without noise;
the writer thread of the outbox is counted with the rest.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import subprocess
import tempfile

import run
from features import FEATURES
from fleet import source_address
from websockets.asyncio.client import connect


async def _station(url: str, number: int, warm: int, calls: int, gate: asyncio.Event, ready: list) -> None:
    station_id = f"CG-{number:04d}"
    async with connect(
        url + station_id,
        subprotocols=["ocpp1.6"],
        compression=None,
        open_timeout=120,
        local_addr=(source_address(number), 0),
    ) as ws:
        for call in range(warm):
            await ws.send(f'[2,"w{call}","Heartbeat",{{}}]')
            await asyncio.wait_for(ws.recv(), 120)
        ready.append(station_id)
        await gate.wait()
        for call in range(calls):
            message_id = f"{station_id}-{call}"
            await ws.send(f'[2,"{message_id}","Heartbeat",{{}}]')
            answer = await asyncio.wait_for(ws.recv(), 120)
            if message_id not in answer:
                raise RuntimeError(f"wrong answer {answer[:80]}")
        ready.append(station_id)


def _control(pid: int, *options: str) -> None:
    subprocess.run(["callgrind_control", *options, str(pid)], check=True, capture_output=True)


def _total(path: str) -> int:
    """The instructions counted in one callgrind output file (its header's summary may be 0)."""
    report = subprocess.run(["callgrind_annotate", path], check=True, capture_output=True, text=True).stdout
    for line in report.splitlines():
        if "PROGRAM TOTALS" in line:
            return int(line.split()[0].replace(",", ""))
    raise RuntimeError(f"no totals in {path}")


async def main(args) -> None:
    workdir = tempfile.mkdtemp(prefix="ocppproxy-callgrind-")
    primary_port, secondary_port, proxy_port = (run.free_port() for _ in range(3))
    primary = run.central("primary", primary_port, workdir)
    secondary = run.central("secondary", secondary_port, workdir)
    feature = FEATURES[args.feature] if args.feature else None
    config = run.proxy_config(workdir, proxy_port, primary_port, secondary_port, feature=feature)
    out = os.path.join(workdir, "callgrind.out")
    proxy = run.Process(
        "ocppproxy",
        [
            *("valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"),
            *(os.path.join(run.BIN, "twistd"), "-n", "--pidfile=", "ocppproxy", "-c", config),
        ],
        workdir,
        "StationFactory starting on",
    )
    run.START_TIMEOUT = max(run.START_TIMEOUT, 180)
    processes = [primary, secondary, proxy]
    try:
        for process in processes:
            await process.start()
        gate = asyncio.Event()
        ready: list[str] = []
        url = f"ws://127.0.0.1:{proxy_port}/"
        tasks = [
            asyncio.ensure_future(_station(url, number, args.warm, args.calls, gate, ready))
            for number in range(args.stations)
        ]
        while len(ready) < args.stations:
            done = [task for task in tasks if task.done() and task.exception()]
            if done:
                raise done[0].exception()
            await asyncio.sleep(0.1)
        _control(proxy.pid, "-i", "on")
        gate.set()
        await asyncio.gather(*tasks)
        _control(proxy.pid, "-i", "off")
        _control(proxy.pid, "-d")
        dumps = sorted(glob.glob(out + ".*"), key=os.path.getmtime)  # the dumps, not the file written at exit
        calls = args.stations * args.calls
        total = sum(_total(path) for path in dumps)
        print(
            f"{total / calls:,.0f} instructions per relayed CALL ({calls} CALLs, {args.stations} stations); {dumps[-1]}"
        )
    finally:
        for process in reversed(processes):
            process.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=10)
    parser.add_argument("--calls", type=int, default=200, help="counted CALLs per station")
    parser.add_argument("--warm", type=int, default=20, help="CALLs per station before counting")
    parser.add_argument("--feature", choices=sorted(FEATURES), help="one switch of bench/features.py on")
    asyncio.run(main(parser.parse_args()))

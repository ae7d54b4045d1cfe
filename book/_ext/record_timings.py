"""Record how long each chapter took, from a ``pytest --nbmake`` run, for the timings appendix.

Usage (from the repository root, right after running the chapters on the device to record)::

    pytest --nbmake book --junitxml=_build/nbmake-cpu.xml
    python book/_ext/record_timings.py _build/nbmake-cpu.xml --label cpu

It reads the per-notebook wall times out of pytest's JUnit XML and writes
``book/_static/timings/<label>.json`` together with a description of the machine (device
as chosen by :func:`minigpt.device.best_device`, its name, CPU cores, torch and Python
versions, git commit, date). The ``minigpt-timings`` directive in
``book/appendix_timings.md`` renders every such file; nothing in the table is typed by hand.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "book" / "_static" / "timings"


def parse_junit(path: Path) -> list[dict]:
    """One ``{"notebook", "path", "seconds", "outcome"}`` per notebook test case in a JUnit XML file."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        name = case.get("name", "")
        if not name.endswith(".ipynb"):
            continue  # not an nbmake test case
        # nbmake's classname is the notebook's path with "/" written as "."
        classname = case.get("classname", name)
        folder = classname[: -len(name)].rstrip(".").replace(".", "/")
        outcome = "passed"
        for tag in ("failure", "error", "skipped"):
            if case.find(tag) is not None:
                outcome = {"failure": "failed", "error": "error", "skipped": "skipped"}[tag]
        cases.append(
            {
                "notebook": name,  # the key across runs, wherever the copy that ran lived
                "path": f"{folder}/{name}" if folder else name,
                "seconds": round(float(case.get("time", "nan")), 2),
                "outcome": outcome,
            }
        )
    if not cases:
        raise ValueError(f"{path} holds no notebook test cases; was it written by pytest --nbmake?")
    return sorted(cases, key=lambda c: c["notebook"])


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe_machine() -> dict:
    """The device the chapters pick here, and what it is."""
    import torch

    from minigpt.device import best_device

    device = best_device()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    elif device.type == "mps":
        name = f"Apple MPS ({platform.machine()})"
    else:
        name = _cpu_name()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "device": device.type,
        "device_name": name,
        "cpu_count": cores,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("junit", type=Path, help="JUnit XML written by pytest --nbmake --junitxml")
    parser.add_argument(
        "--label", default=None, help="name of this run (default: the device type, e.g. cpu)"
    )
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for <label>.json")
    parser.add_argument(
        "--command",
        default="pytest --nbmake book",
        help="the command that produced the XML, shown in the appendix",
    )
    parser.add_argument(
        "--commit", default=None, help="the commit that ran (default: git rev-parse HEAD here)"
    )
    args = parser.parse_args(argv)
    if not args.junit.is_file():
        parser.error(f"junit={str(args.junit)!r} does not exist; run pytest --junitxml first")

    record = describe_machine()
    record["label"] = args.label or record["device"]
    record["recorded"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    record["commit"] = args.commit or git_commit()
    record["command"] = args.command
    record["notebooks"] = parse_junit(args.junit)

    args.out.mkdir(parents=True, exist_ok=True)
    target = args.out / f"{record['label']}.json"
    target.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    total = sum(nb["seconds"] for nb in record["notebooks"])
    print(f"wrote {target} ({len(record['notebooks'])} notebooks, {total:.1f} s in all)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Shared by the bench scripts: machine description and writing a section of bench/README.md."""

from __future__ import annotations

import os
import platform
import re
from datetime import date
from pathlib import Path

README = Path(__file__).with_name("README.md")


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}, {platform.system()}"


def load_avg() -> str:
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except OSError:
        return "?"


def today() -> str:
    return date.today().isoformat()


def update_section(marker: str, text: str) -> None:
    """Replace the block between `<!-- marker start -->` and `<!-- marker end -->` (appending it if absent)."""
    start, end = f"<!-- {marker} start -->", f"<!-- {marker} end -->"
    body = README.read_text() if README.exists() else "# vlh benchmarks\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in body and end in body:
        body = re.sub(re.escape(start) + r".*?" + re.escape(end), lambda _: block, body, flags=re.S)
    else:
        body = body.rstrip() + "\n\n" + block + "\n"
    README.write_text(body)


def insert_rows(marker: str, rows: list[str], replaced=None, machine_of: str | None = None) -> None:
    """Put table `rows` before the `marker` line of bench/README.md; drop older rows for which `replaced(line)` says
    so (the same measurement re-run); refresh the "Machine (<machine_of>): …" line."""
    text = README.read_text()
    if marker not in text:
        raise SystemExit(f"{README}: no '{marker}' line to put the rows before")
    lines = [ln for ln in text.splitlines() if not (replaced and ln.startswith("| 20") and replaced(ln))]
    i = lines.index(marker)
    lines[i:i] = rows
    text = "\n".join(lines) + "\n"
    if machine_of:
        text = re.sub(rf"(?m)^Machine \({re.escape(machine_of)}\): .*$", f"Machine ({machine_of}): {machine()}", text)
    README.write_text(text)

"""Regenerates docs/img/report.png: the top of the HTML report of a synthetic run (harness/testing/synthetic.py),
rendered by headless Chromium (harness/testing/browser.py), network off. Usage: .venv/bin/python scripts/report_screenshot.py"""

import asyncio
import sys
import tempfile
from pathlib import Path

from harness.report.render import write_report
from harness.testing.browser import Chromium
from harness.testing.synthetic import make_run

OUT = Path(__file__).resolve().parents[1] / "docs" / "img" / "report.png"


async def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp) / "run", turns=40, calls=4, seed=7, recordings="featured")
        html = write_report([run], Path(tmp) / "report.html")
        async with Chromium(width=1280, height=1100) as browser:
            page = await browser.open(html)
            png = await page.screenshot(OUT)
            stats = await browser.image_stats(png)
    print(f"{OUT}: {stats['width']}×{stats['height']}, {stats['distinct']} colours, "
          f"dominant {stats['dominant_share']:.0%}")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))

"""Headless Chromium driven over the DevTools protocol (CDP), for checking reports in a real browser.

    async with Chromium() as browser:
        page = await browser.open(Path("report.html"))          # waits for load + window.__vlhReady
        await page.evaluate("document.title")
        png = await page.screenshot()
        stats = await browser.image_stats(png)                  # decoded by the browser itself
        page.console_errors(), page.requests, page.foreign_requests()

The browser runs with a fresh profile and with the network off: background networking, sync, component updates
and QUIC disabled, every host name resolves to nothing, and every request that is not file:// or data: is
failed and recorded (Fetch interception). `window.alert/confirm/prompt/print` are replaced before any page
script runs so a payload that gets executed leaves a trace in `window.__xss` instead of blocking.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from harness.errors import VlhError

FLAGS = [
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--remote-debugging-port=0",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
    "--disable-quic", "--disable-default-apps", "--disable-extensions", "--no-default-browser-check",
    "--mute-audio", "--disable-breakpad", "--disable-domain-reliability", "--metrics-recording-only",
    "--host-resolver-rules=MAP * ~NOTFOUND", "--proxy-server=127.0.0.1:9", "--hide-scrollbars",
]
TRAP = """
(function () {
  window.__xss = [];
  ["alert", "confirm", "prompt", "print"].forEach(function (n) {
    window[n] = function (m) { window.__xss.push(n + ":" + String(m)); };
  });
}());
"""
LOCAL_SCHEMES = ("file:", "data:")


def find_chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        p = shutil.which(name)
        if p:
            return p
    return "/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None


@dataclass
class Page:
    browser: "Chromium"
    session: str
    target: str
    console: list[dict] = field(default_factory=list)  # {"type", "text"}
    exceptions: list[str] = field(default_factory=list)
    log: list[dict] = field(default_factory=list)  # {"level", "text", "url"}
    requests: list[str] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    loaded: asyncio.Event = field(default_factory=asyncio.Event)

    async def send(self, method: str, params: dict | None = None) -> dict:
        return await self.browser.send(method, params, session=self.session)

    async def evaluate(self, expression: str, await_promise: bool = False, timeout: float = 30.0):
        r = await asyncio.wait_for(self.send("Runtime.evaluate", {
            "expression": expression, "returnByValue": True, "awaitPromise": await_promise}), timeout)
        if "exceptionDetails" in r:
            d = r["exceptionDetails"]
            raise RuntimeError(f"page script failed: {d.get('exception', {}).get('description') or d.get('text')}")
        return r.get("result", {}).get("value")

    async def wait_for(self, expression: str, timeout: float = 60.0, interval: float = 0.1):
        """Poll `expression` until it is truthy; returns its value."""
        end = time.monotonic() + timeout
        while True:
            v = await self.evaluate(expression)
            if v:
                return v
            if time.monotonic() > end:
                raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {expression!r}")
            await asyncio.sleep(interval)

    async def screenshot(self, path: str | Path | None = None, full_page: bool = False) -> bytes:
        params: dict = {"format": "png"}
        if full_page:
            m = await self.send("Page.getLayoutMetrics")
            size = m.get("cssContentSize") or m["contentSize"]
            params["clip"] = {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 16000),
                              "scale": 1}
            params["captureBeyondViewport"] = True
        r = await self.send("Page.captureScreenshot", params)
        png = base64.b64decode(r["data"])
        if path:
            Path(path).write_bytes(png)
        return png

    async def element_screenshot(self, selector: str, path: str | Path | None = None) -> bytes:
        """PNG of the first element matching `selector` (scrolled into view)."""
        rect = await self.evaluate(
            "(function(){var e=document.querySelector(%s); if(!e) return null; e.scrollIntoView();"
            "var r=e.getBoundingClientRect(); return {x:r.left+window.scrollX, y:r.top+window.scrollY,"
            "w:r.width, h:r.height};}())" % json.dumps(selector))
        if not rect:
            raise RuntimeError(f"no element matches {selector!r}")
        r = await self.send("Page.captureScreenshot", {
            "format": "png", "captureBeyondViewport": True,
            "clip": {"x": rect["x"], "y": rect["y"], "width": max(1, rect["w"]), "height": max(1, rect["h"]),
                     "scale": 1}})
        png = base64.b64decode(r["data"])
        if path:
            Path(path).write_bytes(png)
        return png

    def console_errors(self) -> list[str]:
        """Console errors, uncaught exceptions and browser log errors (failed loads, CSP violations)."""
        out = [f"console.{c['type']}: {c['text']}" for c in self.console if c["type"] in ("error", "assert")]
        out += [f"exception: {e}" for e in self.exceptions]
        out += [f"log {x['level']}: {x['text']} {x.get('url', '')}".strip() for x in self.log if x["level"] == "error"]
        return out

    def foreign_requests(self) -> list[str]:
        """Requests to anything but file:// and data: (all of them were failed, but they were attempted)."""
        return sorted({u for u in self.requests + self.blocked if not u.startswith(LOCAL_SCHEMES)})

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self.browser.send("Target.closeTarget", {"targetId": self.target})


class Chromium:
    def __init__(self, binary: str | None = None, width: int = 1400, height: int = 1000, timeout: float = 60.0):
        self.binary = binary or find_chromium()
        if not self.binary:
            raise VlhError("chromium not found; install it (scripts/setup.sh does: apt-get install chromium)")
        self.width, self.height, self.timeout = width, height, timeout
        self._proc: subprocess.Popen | None = None
        self._dir: str | None = None
        self._http: aiohttp.ClientSession | None = None
        self._ws = None
        self._reader: asyncio.Task | None = None
        self._next = 0
        self._calls: dict[int, asyncio.Future] = {}
        self._pages: dict[str, Page] = {}

    async def __aenter__(self) -> "Chromium":
        await self.start()
        return self

    async def __aexit__(self, *exc) -> None:
        await self.stop()

    async def start(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="vlh-chromium-")
        self._proc = subprocess.Popen(
            [self.binary, *FLAGS, f"--user-data-dir={self._dir}", f"--window-size={self.width},{self.height}",
             "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        port_file = Path(self._dir) / "DevToolsActivePort"
        end = time.monotonic() + self.timeout
        while not (port_file.exists() and len(port_file.read_text().splitlines()) >= 2):
            if self._proc.poll() is not None:
                raise VlhError(f"chromium exited at start (code {self._proc.returncode}); run "
                               f"`{self.binary} --headless=new --no-sandbox about:blank` to see why")
            if time.monotonic() > end:
                await self.stop()
                raise VlhError(f"chromium did not open its DevTools port within {self.timeout:.0f} s")
            await asyncio.sleep(0.05)
        port, path = port_file.read_text().splitlines()[:2]
        self._http = aiohttp.ClientSession()
        self._ws = await self._http.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
        self._reader = asyncio.create_task(self._read())

    async def stop(self) -> None:
        if self._reader:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._reader
        if self._ws is not None:
            with contextlib.suppress(Exception):
                await self._ws.close()
        if self._http is not None:
            await self._http.close()
        if self._proc and self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(timeout=10)
        if self._dir:
            shutil.rmtree(self._dir, ignore_errors=True)
        self._proc = self._ws = self._http = self._reader = self._dir = None

    async def send(self, method: str, params: dict | None = None, session: str | None = None) -> dict:
        self._next += 1
        msg = {"id": self._next, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        fut = asyncio.get_running_loop().create_future()
        self._calls[self._next] = fut
        await self._ws.send_str(json.dumps(msg))
        return await asyncio.wait_for(fut, self.timeout)

    async def _read(self) -> None:
        async for m in self._ws:
            if m.type != aiohttp.WSMsgType.TEXT:
                continue
            msg = json.loads(m.data)
            if "id" in msg:
                fut = self._calls.pop(msg["id"], None)
                if fut and not fut.done():
                    if "error" in msg:
                        fut.set_exception(RuntimeError(f"CDP error: {msg['error']}"))
                    else:
                        fut.set_result(msg.get("result", {}))
                continue
            page = self._pages.get(msg.get("sessionId", ""))
            if page is not None:
                await self._event(page, msg["method"], msg.get("params", {}))

    async def _event(self, page: Page, method: str, p: dict) -> None:
        if method == "Runtime.consoleAPICalled":
            text = " ".join(str(a.get("value", a.get("description", ""))) for a in p.get("args", []))
            page.console.append({"type": p.get("type", ""), "text": text})
        elif method == "Runtime.exceptionThrown":
            d = p.get("exceptionDetails", {})
            page.exceptions.append(d.get("exception", {}).get("description") or d.get("text", "?"))
        elif method == "Log.entryAdded":
            e = p.get("entry", {})
            page.log.append({"level": e.get("level"), "text": e.get("text"), "url": e.get("url", "")})
        elif method == "Network.requestWillBeSent":
            page.requests.append(p.get("request", {}).get("url", ""))
        elif method == "Fetch.requestPaused":
            url = p.get("request", {}).get("url", "")
            if url.startswith(LOCAL_SCHEMES):
                asyncio.ensure_future(page.send("Fetch.continueRequest", {"requestId": p["requestId"]}))
            else:
                page.blocked.append(url)
                asyncio.ensure_future(page.send("Fetch.failRequest", {"requestId": p["requestId"],
                                                                      "errorReason": "BlockedByClient"}))
        elif method == "Page.loadEventFired":
            page.loaded.set()

    async def new_page(self, init_script: str | None = None) -> Page:
        target = (await self.send("Target.createTarget", {"url": "about:blank"}))["targetId"]
        session = (await self.send("Target.attachToTarget", {"targetId": target, "flatten": True}))["sessionId"]
        page = Page(self, session, target)
        self._pages[session] = page
        for m in ("Page.enable", "Runtime.enable", "Log.enable", "Network.enable"):
            await page.send(m)
        await page.send("Fetch.enable", {"patterns": [{"urlPattern": "*"}]})
        await page.send("Page.addScriptToEvaluateOnNewDocument", {"source": TRAP})
        if init_script:  # runs before any page script (a test hook, a timing probe)
            await page.send("Page.addScriptToEvaluateOnNewDocument", {"source": init_script})
        await page.send("Emulation.setDeviceMetricsOverride", {"width": self.width, "height": self.height,
                                                                "deviceScaleFactor": 1, "mobile": False})
        return page

    async def open(self, path: str | Path, ready: str | None = "window.__vlhReady === true",
                   timeout: float = 90.0, init_script: str | None = None) -> Page:
        """Open a local file; wait for the load event and, if given, for the `ready` expression. `init_script`
        runs in the page before any of its own scripts."""
        url = Path(path).resolve().as_uri() if not str(path).startswith(("file:", "data:", "about:")) else str(path)
        page = await self.new_page(init_script)
        r = await page.send("Page.navigate", {"url": url})
        if r.get("errorText"):
            raise VlhError(f"chromium could not open {url}: {r['errorText']}")
        await asyncio.wait_for(page.loaded.wait(), timeout)
        if ready:
            await page.wait_for(f"({ready}) || window.__vlhReady === 'error'", timeout=timeout)
        return page

    async def image_stats(self, png: bytes) -> dict:
        """Decode a PNG in a blank page (the browser's own decoder) and describe its pixels:
        {width, height, distinct (colours, 4-bit quantised), dominant_share (of the most common colour), mean}."""
        page = await self.new_page()
        try:
            uri = "data:image/png;base64," + base64.b64encode(png).decode("ascii")
            js = """
            new Promise(function (ok, fail) {
              var img = new Image();
              img.onload = function () {
                var c = document.createElement('canvas'); c.width = img.width; c.height = img.height;
                var g = c.getContext('2d'); g.drawImage(img, 0, 0);
                var d = g.getImageData(0, 0, c.width, c.height).data, counts = new Map(), sum = 0, n = d.length / 4;
                for (var i = 0; i < d.length; i += 4) {
                  var k = ((d[i] >> 4) << 8) | ((d[i + 1] >> 4) << 4) | (d[i + 2] >> 4);
                  counts.set(k, (counts.get(k) || 0) + 1); sum += d[i] + d[i + 1] + d[i + 2];
                }
                var top = 0; counts.forEach(function (v) { if (v > top) { top = v; } });
                ok({width: c.width, height: c.height, distinct: counts.size, dominant_share: top / n,
                    mean: sum / (3 * n)});
              };
              img.onerror = function () { fail(new Error('not a decodable PNG')); };
              img.src = %s;
            })""" % json.dumps(uri)
            return await page.evaluate(js, await_promise=True)
        finally:
            await page.close()


METRICS_JS = """JSON.stringify(Array.from(document.querySelectorAll('[data-metric]')).map(function (e) {
  return [e.getAttribute('data-metric'), e.getAttribute('data-value'), e.textContent.trim()]; }))"""


async def check_report(browser: Chromium, path: str | Path, screenshot: str | Path | None = None) -> dict:
    """Open a report and gather what a test asserts on: console errors, foreign requests, the headline
    metrics ({id: (data-value, text)}), XSS traces, the screenshot's pixel statistics. Leaves the page open
    (returned as "page") for further checks."""
    page = await browser.open(path)
    metrics = {k: (v, t) for k, v, t in json.loads(await page.evaluate(METRICS_JS))}
    png = await page.screenshot(screenshot)
    return {
        "page": page,
        "ready": await page.evaluate("window.__vlhReady"),
        "errors": page.console_errors(),
        "foreign_requests": page.foreign_requests(),
        "metrics": metrics,
        "xss": await page.evaluate("(window.__xss || []).concat(window.__xss_img ? ['img onerror ran'] : [])"),
        "injected_elements": await page.evaluate(
            "document.querySelectorAll('main img, main iframe, main object, main embed, main script').length"),
        "screenshot": await browser.image_stats(png),
        "text": await page.evaluate("document.body.innerText"),
    }

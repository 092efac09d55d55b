"""Headless Chromium through the Chrome DevTools protocol (aiohttp's websocket client; no driver):
load the served page, type keys, read the terminal's text, take a PNG screenshot.

The text is xterm.js's own buffer (the page draws on a canvas, so the DOM has no text): the
terminal object is found on the page's heap with Runtime.queryObjects, by its public API
(`buffer.active.getLine(y).translateToString()`), not by textual.js's internal names.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import aiohttp

CHROMIUM = "/usr/bin/chromium"


def chromium_path() -> str | None:
    return CHROMIUM if os.access(CHROMIUM, os.X_OK) else shutil.which("chromium")


# Find xterm's Terminal on the heap: every function whose prototype has the public API, then
# the objects made from those prototypes; keep the one with a live buffer.
_FIND_CLASSES = """function() {
  return this.filter(f => { try { const p = f.prototype;
    return p && typeof p.loadAddon === 'function' && typeof p.write === 'function'
      && typeof p.open === 'function'; } catch (e) { return false; } }).map(f => f.prototype);
}"""
_KEEP_TERMINAL = """function() {
  const t = this.find(t => { try { return t.buffer && t.buffer.active && t.rows > 0; } catch (e) { return false; } });
  if (t) window.__schedtopTerminal = t;
  return !!t;
}"""
_TEXT = """(() => { const t = window.__schedtopTerminal; if (!t) return null;
  const b = t.buffer.active, out = [];
  for (let y = 0; y < t.rows; y++) {
    const l = b.getLine(b.viewportY + y); out.push(l ? l.translateToString(true) : ''); }
  return out.join('\\n'); })()"""


class CdpError(RuntimeError):
    pass


def _drain(stream: Any) -> None:
    for _ in stream:
        pass


class Browser:
    """One headless Chromium with one page; `async with Browser(w, h) as b:`."""

    def __init__(self, width: int = 1600, height: int = 1000) -> None:
        self.width, self.height = width, height
        self.proc: subprocess.Popen[bytes] | None = None
        self.ws: Any = None
        self.http: aiohttp.ClientSession | None = None
        self.session_id = ""
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._profile = tempfile.mkdtemp(prefix="schedtop-chromium-")
        self.started_s = 0.0

    async def __aenter__(self) -> Browser:
        exe = chromium_path()
        if exe is None:
            raise CdpError("chromium not found (Debian: apt-get install chromium)")
        t0 = time.monotonic()
        self.proc = subprocess.Popen(
            [exe, "--headless", "--no-sandbox", "--disable-dev-shm-usage", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--mute-audio", "--hide-scrollbars",
             f"--window-size={self.width},{self.height}", "--remote-debugging-port=0",
             f"--user-data-dir={self._profile}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        url = await asyncio.get_running_loop().run_in_executor(None, self._devtools_url)
        self.http = aiohttp.ClientSession()
        self.ws = await self.http.ws_connect(url, max_msg_size=64 * 1024 * 1024)
        self._reader = asyncio.create_task(self._read())
        target = await self.send("Target.createTarget", url="about:blank", session=False)
        attached = await self.send("Target.attachToTarget", targetId=target["targetId"], flatten=True,
                                   session=False)
        self.session_id = attached["sessionId"]
        await self.send("Page.enable")
        await self.send("Runtime.enable")
        await self.send("Emulation.setDeviceMetricsOverride", width=self.width, height=self.height,
                        deviceScaleFactor=1, mobile=False)
        self.started_s = time.monotonic() - t0
        return self

    def _devtools_url(self) -> str:
        assert self.proc is not None and self.proc.stderr is not None
        seen = []
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace")
            seen.append(line)
            m = re.search(r"DevTools listening on (ws://\S+)", line)
            if m:
                # The rest of its stderr is drained so chromium never blocks on a full pipe.
                threading.Thread(target=_drain, args=(self.proc.stderr,), daemon=True).start()
                return m.group(1)
        raise CdpError("chromium exited before its DevTools endpoint: " + "".join(seen[-5:]))

    async def __aexit__(self, *exc: object) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.ws is not None:
            await self.ws.close()
        if self.http is not None:
            await self.http.close()
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for _ in range(20):  # its helper processes may still write there for a moment
            shutil.rmtree(self._profile, ignore_errors=True)
            if not os.path.exists(self._profile):
                break
            await asyncio.sleep(0.1)

    async def _read(self) -> None:
        async for msg in self.ws:
            if msg.type != aiohttp.WSMsgType.TEXT:
                continue
            data = msg.json()
            fut = self._pending.pop(data.get("id", -1), None)
            if fut is not None and not fut.done():
                if "error" in data:
                    fut.set_exception(CdpError(str(data["error"])))
                else:
                    fut.set_result(data.get("result", {}))
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(CdpError("chromium closed the DevTools socket"))

    async def send(self, method: str, session: bool = True, **params: Any) -> Any:
        n = next(self._ids)
        msg: dict[str, Any] = {"id": n, "method": method, "params": params}
        if session:
            msg["sessionId"] = self.session_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[n] = fut
        await self.ws.send_json(msg)
        return await asyncio.wait_for(fut, 30)

    # --- the page -------------------------------------------------------------------------

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)

    async def evaluate(self, expression: str) -> Any:
        r = await self.send("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in r:
            raise CdpError(str(r["exceptionDetails"].get("text")))
        return r["result"].get("value")

    async def _find_terminal(self) -> bool:
        fproto = await self.send("Runtime.evaluate", expression="Function.prototype")
        funcs = await self.send("Runtime.queryObjects", prototypeObjectId=fproto["result"]["objectId"])
        protos = await self.send("Runtime.callFunctionOn", objectId=funcs["objects"]["objectId"],
                                 functionDeclaration=_FIND_CLASSES)
        n = await self.send("Runtime.callFunctionOn", objectId=protos["result"]["objectId"],
                            functionDeclaration="function() { return this.length; }", returnByValue=True)
        for i in range(int(n["result"]["value"])):
            proto = await self.send("Runtime.callFunctionOn", objectId=protos["result"]["objectId"],
                                    functionDeclaration=f"function() {{ return this[{i}]; }}")
            objs = await self.send("Runtime.queryObjects", prototypeObjectId=proto["result"]["objectId"])
            found = await self.send("Runtime.callFunctionOn", objectId=objs["objects"]["objectId"],
                                    functionDeclaration=_KEEP_TERMINAL, returnByValue=True)
            if found["result"].get("value"):
                return True
        return False

    async def terminal_text(self) -> str:
        """The terminal's visible rows, one line each ('' before the terminal exists)."""
        text = await self.evaluate(_TEXT)
        if text is None and await self.evaluate("!!document.querySelector('.xterm')"):
            if await self._find_terminal():
                text = await self.evaluate(_TEXT)
        return text or ""

    async def wait_text(self, *needles: str, timeout: float = 60.0, until: Any = None) -> str:
        """The terminal text once it holds every needle (and until(text) is true, if given);
        CdpError with the last text if not in time."""
        deadline = time.monotonic() + timeout
        text = ""
        while time.monotonic() < deadline:
            text = await self.terminal_text()
            if all(n in text for n in needles) and (until is None or until(text)):
                return text
            await asyncio.sleep(0.1)
        raise CdpError(f"not on the page after {timeout:g} s: {needles!r}; it shows:\n{text}")

    async def type(self, text: str) -> None:
        """Keys as a user types them, into the focused terminal."""
        await self.evaluate("document.querySelector('.xterm-helper-textarea').focus()")
        for ch in text:
            await self.send("Input.dispatchKeyEvent", type="keyDown", key=ch, text=ch)
            await self.send("Input.dispatchKeyEvent", type="keyUp", key=ch)

    async def screenshot(self, path: Path) -> Path:
        shot = await self.send("Page.captureScreenshot", format="png")
        path.write_bytes(base64.b64decode(shot["data"]))
        return path

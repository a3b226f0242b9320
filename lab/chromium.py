"""Debian's Chromium, headless, driven over the DevTools protocol on a pipe.

``--remote-debugging-pipe`` speaks CDP on file descriptors 3 (commands in) and 4 (answers
and events out), NUL-separated JSON, so no debugging port is opened and the browser can
live in a network namespace of its own. Flags follow the lab recipe: no background
networking, no component updates, no mDNS-obfuscated host candidates.

The lab serves pages over plain http:// from namespace addresses, which are not secure
contexts, and browsers give WebCrypto (wss-webrtc.js signs with Ed25519) to secure contexts
only: ``secure_origins`` names the origins Chromium is to treat as secure, as https:// or
localhost would be.
"""

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lab.netns import Namespace

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",  # root, and the namespace is the sandbox here
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-extensions",
    "--disable-default-apps",
    "--disable-dev-shm-usage",
    "--disable-domain-reliability",
    "--disable-client-side-phishing-detection",
    "--metrics-recording-only",
    # Plain host candidates: aioice cannot resolve the .local names Chromium uses otherwise.
    "--disable-features=WebRtcHideLocalIpsWithMdns,Translate,OptimizationHints,MediaRouter",
    "--window-size=1280,1000",  # room for an app beside the console, in screenshots
    "--remote-debugging-pipe",
]


class BrowserError(AssertionError):
    """The page threw, or the browser went away."""


class Chromium:
    """One headless browser with one page; ``console`` collects every console line."""

    def __init__(
        self, namespace: Namespace, workdir: Path, secure_origins: Sequence[str] = ()
    ) -> None:
        self.namespace = namespace
        self.workdir = workdir
        self.secure_origins = tuple(secure_origins)
        self.console: list[str] = []
        self._process: subprocess.Popen[bytes] | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self._next_id = 0
        self._session = ""
        self._event_waiters: dict[str, list[asyncio.Future[dict[str, Any]]]] = {}
        self._frame_contexts: dict[str, int] = {}  # frame id -> its page scripts' context

    async def start(self) -> "Chromium":
        commands_read, commands_write = os.pipe()
        events_read, events_write = os.pipe()
        profile = self.workdir / "chromium-profile"
        profile.mkdir(parents=True, exist_ok=True)
        # bash maps the pipe ends onto the descriptors Chromium expects, 3 and 4.
        wrapper = f'exec "$0" "$@" 3<&{commands_read} 4>&{events_write}'
        argv = ["bash", "-c", wrapper, CHROMIUM, *FLAGS, f"--user-data-dir={profile}"]
        if self.secure_origins:
            origins = ",".join(self.secure_origins)
            argv.append(f"--unsafely-treat-insecure-origin-as-secure={origins}")
        with (self.workdir / "chromium.log").open("wb") as log:
            self._process = self.namespace.popen(
                [*argv, "about:blank"],
                pass_fds=(commands_read, events_write),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        os.close(commands_read)
        os.close(events_write)
        loop = asyncio.get_running_loop()
        reader = asyncio.StreamReader(limit=64 * 1024 * 1024)
        await loop.connect_read_pipe(
            lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(events_read, "rb", 0)
        )
        transport, protocol = await loop.connect_write_pipe(
            asyncio.streams.FlowControlMixin, os.fdopen(commands_write, "wb", 0)
        )
        self._writer = asyncio.StreamWriter(transport, protocol, None, loop)
        self._reader_task = asyncio.create_task(self._read(reader), name="cdp-reader")
        targets = await self.send("Target.getTargets")
        page = next(t for t in targets["targetInfos"] if t["type"] == "page")
        attached = await self.send("Target.attachToTarget", targetId=page["targetId"], flatten=True)
        self._session = attached["sessionId"]
        await self.send("Runtime.enable", session=True)
        await self.send("Page.enable", session=True)
        return self

    async def _read(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            while True:
                message = json.loads((await reader.readuntil(b"\0"))[:-1])
                if "id" in message:
                    waiter = self._pending.pop(message["id"], None)
                    if waiter is not None and not waiter.done():
                        waiter.set_result(message)
                elif message.get("method") in self._event_waiters:
                    for waiter in self._event_waiters.pop(message["method"]):
                        if not waiter.done():
                            waiter.set_result(message.get("params", {}))
                elif message.get("method", "").startswith("Runtime.executionContext"):
                    self._track_context(message["method"], message.get("params", {}))
                elif message.get("method") == "Runtime.consoleAPICalled":
                    params = message["params"]
                    text = " ".join(
                        str(arg.get("value", arg.get("description", ""))) for arg in params["args"]
                    )
                    self.console.append(f"{params['type']}: {text}")
        for waiter in self._pending.values():
            if not waiter.done():
                waiter.set_exception(BrowserError(f"Chromium exited:\n{self.log()}"))

    def _track_context(self, method: str, params: dict[str, Any]) -> None:
        """Which JavaScript context is each frame's own (not an isolated world)."""
        if method == "Runtime.executionContextCreated":
            context = params["context"]
            aux = context.get("auxData", {})
            if aux.get("isDefault") and "frameId" in aux:
                self._frame_contexts[aux["frameId"]] = context["id"]
        elif method == "Runtime.executionContextDestroyed":
            gone = params.get("executionContextId")
            for frame, context_id in list(self._frame_contexts.items()):
                if context_id == gone:
                    del self._frame_contexts[frame]
        elif method == "Runtime.executionContextsCleared":
            self._frame_contexts.clear()

    async def send(self, method: str, session: bool = False, **params: Any) -> dict[str, Any]:
        assert self._writer is not None, "not started"
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params}
        if session:
            message["sessionId"] = self._session
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._pending[self._next_id] = waiter
        self._writer.write(json.dumps(message).encode() + b"\0")
        answer = await asyncio.wait_for(waiter, 120)
        if "error" in answer:
            raise BrowserError(f"{method}: {answer['error']}")
        result: dict[str, Any] = answer["result"]
        return result

    async def goto(self, url: str) -> None:
        loaded: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._event_waiters.setdefault("Page.loadEventFired", []).append(loaded)
        navigated = await self.send("Page.navigate", session=True, url=url)
        if navigated.get("errorText"):
            raise BrowserError(f"{url} did not load: {navigated['errorText']}")
        if "loaderId" not in navigated:
            raise BrowserError(f"{url} only changed the fragment of this page: load another one")
        await asyncio.wait_for(loaded, 60)

    async def evaluate(self, expression: str, context_id: int | None = None) -> Any:
        """The value of ``expression`` (awaited if it is a promise), or BrowserError if it threw.

        It runs in the page's top frame, or in the JavaScript context ``context_id``."""
        where = {} if context_id is None else {"contextId": context_id}
        answer = await self.send(
            "Runtime.evaluate",
            session=True,
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
            **where,
        )
        if "exceptionDetails" in answer:
            details = answer["exceptionDetails"]
            thrown = details.get("exception", {})
            raise BrowserError(thrown.get("description") or details.get("text") or str(details))
        return answer["result"].get("value")

    async def frame_urls(self) -> dict[str, str]:
        """Every frame of the page: its id and its URL."""
        tree = (await self.send("Page.getFrameTree", session=True))["frameTree"]
        found: dict[str, str] = {}
        pending = [tree]
        while pending:
            node = pending.pop()
            found[node["frame"]["id"]] = node["frame"]["url"]
            pending.extend(node.get("childFrames", []))
        return found

    async def _frame_context(self, url_prefix: str) -> int:
        """The scripts' context of the frame whose URL starts with ``url_prefix``."""
        frames = await self.frame_urls()
        frame = next((f for f, url in frames.items() if url.startswith(url_prefix)), None)
        context_id = self._frame_contexts.get(frame) if frame else None
        if context_id is None:
            raise BrowserError(f"no frame at {url_prefix} with scripts; the frames: {frames}")
        return context_id

    async def evaluate_in_frame(self, url_prefix: str, expression: str) -> Any:
        """``evaluate`` in the page's frame whose URL starts with ``url_prefix``, as its own
        scripts run; BrowserError when there is no such frame (or it has no scripts yet)."""
        return await self.evaluate(expression, await self._frame_context(url_prefix))

    async def choose_files(
        self, selector: str, files: Sequence[Path], frame: str | None = None
    ) -> None:
        """Pick ``files`` in the file input ``selector``, as a person does (it fires
        ``change``): in the top frame, or in the frame whose URL starts with ``frame``."""
        where = {} if frame is None else {"contextId": await self._frame_context(frame)}
        found = await self.send(
            "Runtime.evaluate",
            session=True,
            expression=f"document.querySelector({json.dumps(selector)})",
            **where,
        )
        object_id = found["result"].get("objectId")
        if object_id is None:
            raise BrowserError(f"no {selector} in the frame at {frame or 'the top'}")
        await self.send(
            "DOM.setFileInputFiles",
            session=True,
            objectId=object_id,
            files=[str(path) for path in files],
        )

    async def click(self, x: float, y: float) -> None:
        """A left click at the page's (x, y), in CSS pixels from its top left corner."""
        for kind in ("mousePressed", "mouseReleased"):
            await self.send(
                "Input.dispatchMouseEvent",
                session=True,
                type=kind,
                x=x,
                y=y,
                button="left",
                clickCount=1,
            )

    async def type_text(self, text: str) -> None:
        """Type ``text`` into the focused element key by key; a newline presses Enter."""
        for char in text:
            key, code, text_sent = ("Enter", 13, "\r") if char == "\n" else (char, 0, char)
            await self.send(
                "Input.dispatchKeyEvent",
                session=True,
                type="keyDown",
                key=key,
                text=text_sent,
                windowsVirtualKeyCode=code or ord(char.upper()) if char.isalnum() else code,
            )
            await self.send("Input.dispatchKeyEvent", session=True, type="keyUp", key=key)

    async def screenshot(self, path: Path) -> None:
        """The page as it shows now, as a PNG file."""
        shot = await self.send("Page.captureScreenshot", session=True, format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))

    @property
    def pid(self) -> int:
        """The browser's main process (its renderers and services are its descendants)."""
        assert self._process is not None, "the browser has not been started"
        return self._process.pid

    def log(self) -> str:
        return (self.workdir / "chromium.log").read_text(errors="replace")

    async def stop(self) -> None:
        if self._writer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.send("Browser.close"), 10)
            self._writer.close()
        if self._process is not None:
            try:
                await asyncio.to_thread(self._process.wait, 10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                await asyncio.to_thread(self._process.wait)
        if self._reader_task is not None:
            self._reader_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader_task

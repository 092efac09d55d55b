"""textual-serve's Server, fenced: each browser tab runs its own `schedtop` process (textual-serve's
AppService), and this subclass decides who may start one.

- The Host header must name this server (an IP literal, localhost, this machine's names, the
  listen address or --public-url's host): a page of another site that points its own DNS name
  at 127.0.0.1 (DNS rebinding) gets 403.
- The websocket's Origin, when a browser sends one, must be the page's own: another site's
  page cannot open the socket and type into the app.
- With steering allowed, the socket's path carries a random token printed once at start, so
  another user of this machine who can reach the loopback port cannot steer as the server's user.
- At most max_sessions apps at once (each is a schedtop process with its own collection).
"""

from __future__ import annotations

import ipaddress
import logging
import secrets
import socket
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp_jinja2
import jinja2
from aiohttp import web
from textual_serve.server import Server

log = logging.getLogger("schedtop.serve")

TEMPLATES = Path(__file__).with_name("templates")


def is_loopback(host: str) -> bool:
    """True when every address the host resolves to is a loopback one (0.0.0.0 and :: are not)."""
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError):
        return False
    return bool(infos) and all(ipaddress.ip_address(str(i[4][0]).partition("%")[0]).is_loopback for i in infos)


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port; OSError when it cannot bind."""
    family, kind, proto, _, addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(addr)
        sock.listen(32)
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(False)
    return sock


def _split_host(netloc: str) -> str:
    """'[::1]:9646' -> '::1', 'localhost:9646' -> 'localhost'."""
    if netloc.startswith("["):
        return netloc[1:].partition("]")[0]
    return netloc.rpartition(":")[0] if netloc.count(":") == 1 else netloc


class SchedtopServer(Server):
    def __init__(self, command: str, *, host: str, port: int, title: str, allow_steer: bool,
                 max_sessions: int, public_url: str | None = None) -> None:
        super().__init__(command, host=host, port=port, title=title, public_url=public_url,
                         templates_path=TEMPLATES)
        self.given_public_url = public_url
        self.allow_steer = allow_steer
        self.token = secrets.token_urlsafe(24) if allow_steer else ""
        self.max_sessions = max_sessions
        self.sessions = 0
        names = {"localhost", socket.gethostname(), socket.getfqdn(), host}
        if public_url:
            names.add(urlsplit(public_url).hostname or "")
        self.names = {n.lower() for n in names if n}

    # --- who may connect ------------------------------------------------------------------

    def host_refusal(self, request: web.Request) -> str | None:
        name = _split_host(request.host).lower()
        try:
            ipaddress.ip_address(name)
            return None
        except ValueError:
            pass
        if name in self.names:
            return None
        return f"Host {request.host!r} is not a name of this server"

    def origin_refusal(self, request: web.Request) -> str | None:
        origin = request.headers.get("Origin")
        if origin is None:  # not a browser: nothing a page of another site could have sent
            return None
        own = {f"http://{request.host}", f"https://{request.host}"}
        if self.given_public_url:
            u = urlsplit(self.given_public_url)
            own.add(f"{u.scheme}://{u.netloc}")
        if origin.rstrip("/") in own:
            return None
        return f"a page of {origin!r} may not open this server's session"

    # --- routes ---------------------------------------------------------------------------

    async def _make_app(self) -> web.Application:
        app = web.Application()
        aiohttp_jinja2.setup(app, loader=jinja2.FileSystemLoader(str(self.templates_path)))
        app.add_routes([
            web.get("/", self.handle_index, name="index"),
            web.get("/ws" + (f"/{self.token}" if self.token else ""), self.handle_websocket, name="websocket"),
            web.get("/download/{key}", self.handle_download, name="download"),
            web.static("/static", self.statics_path, name="static"),
        ])
        return app

    async def handle_index(self, request: web.Request) -> web.Response:
        why = self.host_refusal(request)
        if why:
            log.warning("refused %s: %s", request.remote, why)
            raise web.HTTPForbidden(text=f"schedtop serve: {why}\n")
        if self.token and not secrets.compare_digest(request.query.get("token", ""), self.token):
            raise web.HTTPForbidden(text="schedtop serve: this server steers: open the URL with the token "
                                         "it printed at start\n")
        base = (self.given_public_url or f"{request.scheme}://{request.host}").rstrip("/")
        ws = ("wss:" if base.startswith("https:") else "ws:") + base.split(":", 1)[1] + "/ws"
        if self.token:
            ws += f"/{self.token}"
        try:
            font_size = int(request.query.get("fontsize", "16"))
        except ValueError:
            font_size = 16
        steering = "on" if self.allow_steer else "off"
        context: dict[str, Any] = {
            "title": f"{self.title} (steering {steering})", "steering": steering,
            "static_url": "/static/", "websocket_url": ws, "font_size": max(6, min(font_size, 48)),
        }
        return aiohttp_jinja2.render_template("app_index.html", request, context)

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        why = self.host_refusal(request) or self.origin_refusal(request)
        if why:
            log.warning("refused a session from %s: %s", request.remote, why)
            raise web.HTTPForbidden(text=f"schedtop serve: {why}\n")
        if self.sessions >= self.max_sessions:
            log.warning("refused a session from %s: %d already run (--max-sessions)", request.remote,
                        self.sessions)
            raise web.HTTPServiceUnavailable(text=f"schedtop serve: {self.sessions} sessions already run\n")
        self.sessions += 1
        log.info("session from %s (%d running)", request.remote, self.sessions)
        try:
            return await super().handle_websocket(request)
        finally:
            self.sessions -= 1

    async def on_startup(self, app: web.Application) -> None:  # textual-serve's banner: not here
        pass

    def serve_on(self, sock: socket.socket) -> None:
        """Serve on an already bound socket until SIGINT or SIGTERM; the apps get textual-serve's
        quit message when their sockets close, and restore what they changed on the way out."""
        import asyncio
        import signal

        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, self.request_exit)
        web.run_app(self._make_app(), sock=sock, handle_signals=False, loop=loop, print=None,
                    shutdown_timeout=10)

"""A managed kernel on a Jupyter Kernel Gateway or Enterprise Gateway.

:class:`GatewayBackend` starts, interrupts and ends its kernel over the gateway's
REST API (``/api/kernels``) and exchanges the kernel's messages over one websocket
(``/api/kernels/{id}/channels``), sending ``Authorization: token …`` on both. The
websocket speaks the JSON protocol every gateway version accepts (each message a
JSON text frame with a ``channel`` field; a message with buffers a binary frame:
a count, offsets, the JSON, then the buffers), so push and pull carry their
buffers as they do locally.

What a remote kernel changes, and how it is handled here:

- Death: the gateway restarts a kernel whose process ended and says so with an
  iopub ``status`` of ``restarting`` (or ``dead`` when it gave up); either marks
  the kernel dead, and the managed kernel replaces it with a new one of its own.
- A dropped websocket is reconnected once, with the same session id, so that the
  gateway hands over what it buffered meanwhile; if that fails, or the kernel is
  gone from the gateway, the kernel counts as dead and the step says why.
- The gateway's websocket refuses messages over 10 MiB (tornado's default), so
  larger pushes travel in parts that the kernel joins (see :data:`_PARTS_CODE`).
- The environment is the gateway's: only ``KERNEL_*`` variables and the ones set
  in ``KernelConfig.env`` are sent, and the gateway decides which it keeps. The
  user's own environment never leaves this machine.

One module past the usual length on purpose: the gateway's REST API, its websocket
and their failures are one backend.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
import sys
import urllib.request
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.simple_httpclient import HTTPTimeoutError
from tornado.websocket import (
    WebSocketClientConnection,
    WebSocketClosedError,
    WebSocketError,
    websocket_connect,
)

from ..errors import KernelStartError
from .backend import Message
from .config import check_gateway_url
from .environment import is_secret

__all__ = ["KERNEL_VARIABLE", "TOKEN_VARIABLE", "GatewayBackend", "remote_environ"]

log = logging.getLogger(__name__)

TOKEN_VARIABLE = "AGENTNB_GATEWAY_TOKEN"
"""The environment variable that holds the gateway's token when none is given."""
KERNEL_VARIABLE = "AGENTNB_GATEWAY_KERNEL"
"""The environment variable that names the gateway's kernelspec when none is given."""

_PROTOCOL_VERSION = "5.3"  # of the messages sent; nothing newer is needed
_REQUEST_TIMEOUT = 20.0  # seconds for REST calls other than the start
_KILL_TIMEOUT = 3.0  # seconds for the blocking DELETE at interpreter exit
_PING_INTERVAL = 10.0  # seconds between websocket pings: a silent drop is noticed
_PING_TIMEOUT = 10.0
# The gateway closes the websocket on a message over 10 MiB (tornado's default
# websocket_max_message_size); parts stay well below it, JSON header included.
_PART_SIZE = 8 * 2**20


def remote_environ(
    environ: Mapping[str, str], *, extra: Mapping[str, str], launch_timeout: float
) -> dict[str, str]:
    """What a remote kernel is asked to have in its environment.

    Gateways pass ``KERNEL_*`` variables to their kernels by design (Enterprise
    Gateway reads ``KERNEL_USERNAME``, ``KERNEL_NAMESPACE``, ``KERNEL_WORKING_DIR``…),
    so the caller's ones go along unless they look secret; ``extra`` is what was
    set explicitly (``KernelConfig.env``). Nothing else of the caller's environment
    is sent, and the gateway still decides what its kernel gets.
    """
    env = {
        name: value
        for name, value in environ.items()
        if name.startswith("KERNEL_") and not is_secret(name, value)
    }
    # Enterprise Gateway waits this long for a kernel pod; ours is the same limit
    env.setdefault("KERNEL_LAUNCH_TIMEOUT", str(int(launch_timeout)))
    env.update(extra)
    return env


class GatewayBackend:
    """A kernel on a gateway (see :class:`~agentnb.kernel.backend.KernelBackend`).

    Args:
        url: the gateway's base URL, such as ``http://127.0.0.1:8888``.
        token: the gateway's auth token; default ``$AGENTNB_GATEWAY_TOKEN``.
        kernel_name: the gateway's kernelspec to start; default
            ``$AGENTNB_GATEWAY_KERNEL``, else the gateway's default.
    """

    def __init__(
        self, url: str, *, token: str | None = None, kernel_name: str | None = None
    ) -> None:
        self.url = check_gateway_url(url)
        self._token = token or os.environ.get(TOKEN_VARIABLE) or None
        self._kernel_name = kernel_name or os.environ.get(KERNEL_VARIABLE) or None
        self._session = uuid.uuid4().hex
        self._http: AsyncHTTPClient | None = None
        self._kernel_id: str | None = None
        self._ws: WebSocketClientConnection | None = None
        self._reader: asyncio.Task[None] | None = None
        self._iopub: asyncio.Queue[Message] = asyncio.Queue()
        self._shell: asyncio.Queue[Message] = asyncio.Queue()
        self._outbox: list[str | bytes] = []  # frames sent while reconnecting
        self._reconnecting = False
        self._dead: str | None = None  # how the kernel ended, once it has
        self._parts_for: str | None = None  # the kernel that can join parts
        self._deleting: dict[str, asyncio.Task[None]] = {}
        self._undeleted: set[str] = set()  # kernels whose DELETE failed: tried again
        self.reconnects = 0
        """Websocket reconnections so far (each after a dropped connection)."""

    # --- KernelBackend -------------------------------------------------------------

    @property
    def pid(self) -> int | None:
        return None  # the process is the gateway's

    @property
    def log_path(self) -> Path | None:
        return None  # its output goes to the gateway's log

    @property
    def kernel_id(self) -> str | None:
        """The gateway's id of the current kernel."""
        return self._kernel_id

    async def start(self, *, env: Mapping[str, str], cwd: str, timeout: float) -> None:
        """Start a kernel on the gateway; ``cwd`` is the gateway's to decide.

        (Enterprise Gateway takes ``KERNEL_WORKING_DIR`` in ``KernelConfig.env``.)
        """
        self._reset_connection()
        if self._http is None:
            self._http = AsyncHTTPClient(force_instance=True)
        body: dict[str, Any] = {"env": dict(env)}
        if self._kernel_name:
            body["name"] = self._kernel_name
        post = asyncio.ensure_future(
            self._rest("POST", "/api/kernels", body=body, timeout=timeout, what="start a kernel")
        )
        try:
            # shielded: a start cancelled mid-request still learns the id, to delete it
            model = await asyncio.shield(post)
        except asyncio.CancelledError:
            post.add_done_callback(self._delete_started)
            raise
        except _RestError as err:
            if self._kernel_name and err.status not in (None, 401, 403):
                await self._check_kernel_name()
            raise
        self._kernel_id = str(model["id"])
        try:
            self._ws = await self._connect(timeout)
            self._reader = asyncio.ensure_future(self._read())
            await asyncio.wait_for(self._kernel_info(), timeout)
        except BaseException as err:
            await self.stop(graceful=False, final=False)
            if isinstance(err, asyncio.TimeoutError):
                raise KernelStartError(
                    f"the kernel on the gateway {self.url} did not answer within {timeout:g} s; "
                    "the gateway's log says why"
                ) from None
            raise

    async def stop(self, *, graceful: bool, final: bool) -> None:
        """Close the websocket and delete the kernel on the gateway.

        The gateway's DELETE asks the kernel to shut down and kills it if it does
        not, so there is nothing more graceful to do here. A restart (not ``final``)
        does not wait for the deletion; the final stop waits for all of them.
        """
        kernel_id = self._kernel_id
        self._reset_connection()
        if kernel_id is not None:
            self._deleting[kernel_id] = asyncio.ensure_future(self._delete(kernel_id))
        if final:
            # a kernel that could not be deleted earlier (the gateway was out of
            # reach) is tried once more, so that it does not stay until culled
            for orphan in self._undeleted - set(self._deleting):
                self._deleting[orphan] = asyncio.ensure_future(self._delete(orphan))
            if self._deleting:
                await asyncio.wait(list(self._deleting.values()), timeout=_REQUEST_TIMEOUT)
            if self._http is not None:
                self._http.close()
                self._http = None

    def kill_now(self) -> None:
        """Delete the kernels on the gateway with blocking requests (no event loop)."""
        ids = {*self._deleting, *self._undeleted, *([self._kernel_id] if self._kernel_id else [])}
        self._kernel_id = None
        self._undeleted.clear()
        for kernel_id in ids:
            request = urllib.request.Request(
                self._api(f"/api/kernels/{quote(kernel_id)}"),
                method="DELETE",
                headers=self._headers(),
            )
            try:
                with urllib.request.urlopen(request, timeout=_KILL_TIMEOUT):
                    pass
            except (OSError, ValueError) as err:
                log.warning("could not delete kernel %s on %s: %s", kernel_id, self.url, err)

    async def interrupt(self) -> None:
        if self._kernel_id is None:
            return
        try:
            await self._rest(
                "POST", f"/api/kernels/{quote(self._kernel_id)}/interrupt", what="interrupt"
            )
        except _RestError as err:
            # the step's own time limit still holds: a restart follows if it is stuck
            log.warning("%s", err)

    def is_alive(self) -> bool:
        return self._kernel_id is not None and self._dead is None

    def exit_reason(self) -> str:
        if self._dead is not None:
            return self._dead
        return "is still running" if self._kernel_id else "was not started"

    def log_size(self) -> int:
        return 0

    def log_tail(self, since: int = 0) -> str:
        return ""

    def send(
        self, msg_type: str, content: Mapping[str, Any], *, buffers: Sequence[Any] = ()
    ) -> str:
        views = [memoryview(b).cast("B") for b in buffers]
        if msg_type == "comm_msg" and sum(v.nbytes for v in views) > _PART_SIZE:
            return self._send_in_parts(content, views)
        msg = self._message(msg_type, content)
        self._write(_encode(msg, views))
        return str(msg["header"]["msg_id"])

    async def iopub(self) -> Message:
        return await self._iopub.get()

    async def shell_reply(self) -> Message:
        return await self._shell.get()

    # --- the websocket ---------------------------------------------------------------

    async def _connect(self, timeout: float) -> WebSocketClientConnection:
        assert self._kernel_id is not None
        ws_url = self._api(
            f"/api/kernels/{quote(self._kernel_id)}/channels?session_id={self._session}"
        ).replace("http", "ws", 1)
        request = HTTPRequest(
            ws_url, headers=self._headers(), connect_timeout=timeout, request_timeout=timeout
        )
        try:
            ws = await websocket_connect(
                request,
                ping_interval=_PING_INTERVAL,
                ping_timeout=_PING_TIMEOUT,
                # a pull is as big as the value pulled; the limit is the caller's memory
                max_message_size=sys.maxsize,
            )
        except HTTPClientError as err:
            if err.code == 599:
                raise self._unreachable(err) from None
            raise self._http_error(err, "open the kernel's websocket") from None
        except (OSError, WebSocketError) as err:
            raise self._unreachable(err) from None
        # Requests are small frames: without this, Nagle's algorithm holds each one
        # back until the previous one is acknowledged, some 40 ms per round trip.
        if ws.protocol is not None:
            ws.protocol.set_nodelay(True)
        return ws

    async def _read(self) -> None:
        """Route incoming messages to the queues; reconnect once on a drop."""
        try:
            while (ws := self._ws) is not None:
                _quick_ack(ws)
                frame = await ws.read_message()
                if frame is None:
                    if self._ws is not ws or not await self._reconnect(ws):
                        return
                    continue
                try:
                    self._dispatch(_decode(frame))
                except (ValueError, KeyError, TypeError, AttributeError, struct.error) as err:
                    log.warning("ignored a malformed message from %s: %s", self.url, err)
        except Exception as err:
            # a reader that stops unseen would leave every request waiting for its timeout
            log.exception("reading from the gateway %s failed", self.url)
            self._dead = f"lost its connection to the gateway {self.url} ({err!r})"

    def _dispatch(self, msg: Message) -> None:
        channel = msg.pop("channel", None)
        if channel == "iopub":
            if msg["msg_type"] == "status" and not msg["parent_header"]:
                # the gateway's own word: its restarter saw the process end
                state = msg["content"].get("execution_state")
                if state == "restarting":
                    self._dead = f"ended on the gateway {self.url}"
                elif state == "dead":
                    self._dead = f"ended on the gateway {self.url}, which could not restart it"
            self._iopub.put_nowait(msg)
        elif channel == "shell":
            self._shell.put_nowait(msg)

    async def _reconnect(self, dropped: WebSocketClientConnection) -> bool:
        """One new websocket to the same kernel; False (and the kernel dead) if not."""
        why = dropped.close_reason or (
            f"code {dropped.close_code}" if dropped.close_code else "connection lost"
        )
        log.warning("the websocket to %s closed (%s); reconnecting once", self.url, why)
        self._reconnecting = True
        try:
            assert self._kernel_id is not None
            # a kernel the gateway no longer has cannot be reconnected to
            await self._rest("GET", f"/api/kernels/{quote(self._kernel_id)}", what="find")
            ws = await self._connect(_REQUEST_TIMEOUT)
        except Exception as err:
            if isinstance(err, _RestError) and err.status == 404:
                self._dead = (
                    f"is gone from the gateway {self.url} (shut down there, or culled as idle)"
                )
            else:
                self._dead = (
                    f"lost its connection to the gateway {self.url} ({why}) and reconnecting "
                    f"failed: {err}"
                )
            self._ws = None
            return False
        finally:
            self._reconnecting = False
        self._ws = ws
        self.reconnects += 1
        outbox, self._outbox = self._outbox, []
        for frame in outbox:
            self._write(frame)
        return True

    def _write(self, frame: str | bytes) -> None:
        ws = self._ws
        if ws is None or self._reconnecting:
            self._outbox.append(frame)
            return
        try:
            written = ws.write_message(frame, binary=isinstance(frame, bytes))
        except WebSocketClosedError:
            # dropped just now: the reader is about to reconnect and send it then
            self._outbox.append(frame)
            return
        written.add_done_callback(_consume)

    async def _kernel_info(self) -> None:
        """Wait until the kernel answers a kernel_info_request."""
        msg_id = self.send("kernel_info_request", {})
        while True:
            reply = await self._shell.get()
            if reply["parent_header"].get("msg_id") == msg_id:
                return

    def _reset_connection(self) -> None:
        """Forget the current kernel's websocket, queues and state."""
        if self._reader is not None:
            self._reader.cancel()
            self._reader = None
        ws, self._ws = self._ws, None
        if ws is not None:
            ws.close()
        self._kernel_id = None
        self._dead = None
        self._reconnecting = False
        self._outbox = []
        self._parts_for = None
        self._iopub = asyncio.Queue()
        self._shell = asyncio.Queue()

    def _message(self, msg_type: str, content: Mapping[str, Any]) -> Message:
        msg_id = uuid.uuid4().hex
        return {
            "header": {
                "msg_id": msg_id,
                "msg_type": msg_type,
                "username": "agentnb",
                "session": self._session,
                "date": datetime.now(timezone.utc).isoformat(),
                "version": _PROTOCOL_VERSION,
            },
            "parent_header": {},
            "metadata": {},
            "content": dict(content),
            "channel": "shell",
        }

    # --- pushes larger than one websocket message --------------------------------------

    def _send_in_parts(self, content: Mapping[str, Any], views: list[memoryview]) -> str:
        """Send a comm message's buffers in parts that the kernel joins.

        The last part's msg_id is returned: the kernel answers the data request
        from there, as if the whole message had come at once.
        """
        if self._parts_for != self._kernel_id:
            code = _PARTS_CODE.format(target=_PARTS_TARGET)
            self.send("execute_request", _silent(code))
            self.send("comm_open", {"comm_id": self._session, "target_name": _PARTS_TARGET})
            self._parts_for = self._kernel_id
        parts = [
            view[start : start + _PART_SIZE]
            for view in views
            for start in range(0, max(view.nbytes, 1), _PART_SIZE)
        ]
        sizes = [view.nbytes for view in views]
        msg_id = ""
        for number, part in enumerate(parts, 1):
            data: dict[str, Any] = {}
            if number == len(parts):
                data = {"comm_id": content["comm_id"], "data": content["data"], "sizes": sizes}
            msg = self._message("comm_msg", {"comm_id": self._session, "data": data})
            self._write(_encode(msg, [part]))
            msg_id = str(msg["header"]["msg_id"])
        return msg_id

    # --- REST ------------------------------------------------------------------------

    def _api(self, path: str) -> str:
        return self.url + path

    def _headers(self) -> dict[str, str]:
        headers = {"Content-Type": "application/json"}
        if self._token:
            headers["Authorization"] = f"token {self._token}"
        return headers

    async def _rest(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        timeout: float = _REQUEST_TIMEOUT,
        what: str,
    ) -> Any:
        """A JSON request to the gateway; failures as KernelStartError saying why."""
        if self._http is None:
            self._http = AsyncHTTPClient(force_instance=True)
        payload = json.dumps(body) if body is not None else ("{}" if method == "POST" else None)
        request = HTTPRequest(
            self._api(path),
            method=method,
            headers=self._headers(),
            body=payload,
            connect_timeout=min(timeout, _REQUEST_TIMEOUT),
            request_timeout=timeout,
        )
        try:
            response = await self._http.fetch(request)
        except HTTPTimeoutError:
            raise _RestError(
                f"the gateway {self.url} did not answer the request to {what} within "
                f"{timeout:g} s; check that it is running and not overloaded",
                status=None,
            ) from None
        except HTTPClientError as err:
            if err.code == 599:  # tornado's code for a connection that closed early
                raise self._unreachable(err) from None
            raise self._http_error(err, what) from None
        except OSError as err:
            raise self._unreachable(err) from None
        return json.loads(response.body) if response.body else None

    def _http_error(self, err: HTTPClientError, what: str) -> _RestError:
        detail = _error_message(err)
        said = f": {detail}" if detail else ""
        if err.code == 401 or (err.code == 403 and "resource limit" not in detail.lower()):
            told = "a token" if self._token else "no token"
            text = (
                f"the gateway {self.url} rejected the token (HTTP {err.code}): agentnb sent "
                f"{told}. Set {TOKEN_VARIABLE} (or Agents.gateway_token, or the "
                "gateway_token argument) to the gateway's auth token."
            )
        elif err.code == 403:
            text = (
                f"the gateway {self.url} refused to {what} (HTTP 403{said}): it runs as many "
                "kernels as it may (KernelGatewayApp.max_kernels); shut some down"
            )
        elif err.code == 404 and what == "start a kernel":
            text = (
                f"{self.url} did not start a kernel (HTTP 404{said}): check that the URL is "
                "the gateway's base URL and that it has the kernel asked for"
            )
        else:
            text = f"the gateway {self.url} could not {what}: HTTP {err.code}{said}"
        return _RestError(text, status=err.code)

    def _unreachable(self, err: Exception) -> _RestError:
        reason = getattr(err, "strerror", None) or str(err) or type(err).__name__
        return _RestError(
            f"cannot reach the gateway at {self.url} ({reason}); check that it "
            "is running, that the URL (--gateway, AGENTNB_GATEWAY) is right and that this "
            "machine can connect to it",
            status=None,
        )

    async def _check_kernel_name(self) -> None:
        """Raise a clear error when the gateway has no kernelspec of the name asked for."""
        try:
            specs = await self._rest("GET", "/api/kernelspecs", what="list its kernels")
        except _RestError:
            return  # the start's own error says enough
        names = sorted((specs or {}).get("kernelspecs", {}))
        if self._kernel_name not in names:
            raise KernelStartError(
                f"the gateway {self.url} has no kernel named {self._kernel_name!r}; it has: "
                f"{', '.join(names) or 'none'} ({KERNEL_VARIABLE}, KernelConfig.gateway_kernel)"
            )

    async def _delete(self, kernel_id: str) -> None:
        try:
            await self._rest(
                "DELETE", f"/api/kernels/{quote(kernel_id)}", what="shut its kernel down"
            )
        except _RestError as err:
            if err.status != 404:  # a 404 is a kernel that is gone already
                log.warning("could not delete kernel %s: %s", kernel_id, err)
                self._undeleted.add(kernel_id)
                return
        finally:
            self._deleting.pop(kernel_id, None)
        self._undeleted.discard(kernel_id)

    def _delete_started(self, post: asyncio.Future[Any]) -> None:
        """Done-callback of a start that was cancelled: delete what it started."""
        if post.cancelled() or post.exception() is not None:
            return
        kernel_id = str(post.result()["id"])
        self._deleting[kernel_id] = asyncio.ensure_future(self._delete(kernel_id))


class _RestError(KernelStartError):
    """A failed request to the gateway, with its HTTP status (None: no answer)."""

    def __init__(self, message: str, *, status: int | None) -> None:
        super().__init__(message)
        self.status = status


# --- the websocket's message format --------------------------------------------------


def _encode(msg: Message, buffers: Sequence[memoryview]) -> str | bytes:
    """A message as one frame: JSON text, or the binary layout when it has buffers."""
    if not buffers:
        return json.dumps(msg)
    parts: list[bytes | memoryview] = [json.dumps(msg).encode("utf-8"), *buffers]
    # a count, then each part's offset from the frame's start (big-endian uint32)
    offsets = [4 * (len(parts) + 1)]
    for part in parts[:-1]:
        offsets.append(offsets[-1] + memoryview(part).nbytes)
    header = struct.pack(f"!{len(parts) + 1}I", len(parts), *offsets)
    return b"".join([header, *parts])


def _decode(frame: str | bytes) -> Message:
    if isinstance(frame, str):
        msg: Message = json.loads(frame)
        msg.setdefault("buffers", [])
    else:
        (count,) = struct.unpack("!I", frame[:4])
        offsets = [*struct.unpack(f"!{count}I", frame[4 : 4 * (count + 1)]), len(frame)]
        view = memoryview(frame)
        parts = [view[offsets[i] : offsets[i + 1]] for i in range(count)]
        msg = json.loads(bytes(parts[0]))
        msg["buffers"] = parts[1:]
    msg.setdefault("msg_type", msg["header"]["msg_type"])
    return msg


def _quick_ack(ws: WebSocketClientConnection) -> None:
    """Acknowledge what arrives next at once (Linux's TCP_QUICKACK, which lapses).

    Gateways write each kernel message as its own small frame without TCP_NODELAY,
    so Nagle's algorithm holds the second until the first is acknowledged, and a
    delayed acknowledgement costs some 40 ms per round trip.
    """
    option = getattr(socket, "TCP_QUICKACK", None)
    stream = getattr(ws.protocol, "stream", None)
    if option is None or stream is None or stream.socket is None:
        return
    with contextlib.suppress(OSError):
        stream.socket.setsockopt(socket.IPPROTO_TCP, option, 1)


def _consume(future: asyncio.Future[None]) -> None:
    # a write to a connection that dropped meanwhile; the reader deals with the drop
    if not future.cancelled():
        future.exception()


def _error_message(err: HTTPClientError) -> str:
    """The gateway's own words from an error response, if it gave any."""
    body = err.response.body if err.response is not None else b""
    try:
        data = json.loads(body)
    except (ValueError, TypeError):
        return ""
    if not isinstance(data, dict):
        return ""
    return str(data.get("message") or data.get("reason") or "")


def _silent(code: str) -> dict[str, Any]:
    return {
        "code": code,
        "silent": True,
        "store_history": False,
        "user_expressions": {},
        "allow_stdin": False,
        "stop_on_error": False,
    }


_PARTS_TARGET = "agentnb.parts"

# Sent into the kernel before its first push in parts: a comm target that collects
# the parts and, at the last one, hands the joined buffers to agentnb_inside's own
# data handler, whose answer then belongs to the last part's message.
_PARTS_CODE = """\
def __agentnb_parts():
    import sys
    from IPython import get_ipython
    inside = sys.modules['agentnb_inside']
    manager = get_ipython().kernel.comm_manager
    def opened(comm, _msg):
        parts = []
        def on_msg(msg):
            parts.extend(msg.get('buffers') or [])
            data = msg['content']['data']
            if not data:
                return
            joined = memoryview(b''.join(parts))
            parts.clear()
            frames, start = [], 0
            for size in data['sizes']:
                frames.append(joined[start:start + size])
                start += size
            request = {{'content': {{'data': data['data']}}, 'buffers': frames}}
            inside._on_data_msg(manager.get_comm(data['comm_id']), request)
        comm.on_msg(on_msg)
    manager.register_target({target!r}, opened)
__agentnb_parts()
del __agentnb_parts
"""

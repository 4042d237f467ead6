"""Client: one gRPC channel to a daemon, the session-less RPCs, and the one place where gRPC
errors become KvshuttleError subclasses (Client.call).

    client = kvshuttle.connect("unix:/run/kvshuttle/kvshuttle.sock")
    print(client.info().devices)
    session = client.session("worker-0")

Client sits above session.py (Client.session opens one); a session sees its client only as an
rpc.Connection.
"""
from __future__ import annotations

import os
from typing import Any, Callable

import grpc

from kvshuttle._stubs import pb, pb_grpc
from kvshuttle.errors import UnavailableError, from_rpc_error
from kvshuttle.jobs import JobResult
from kvshuttle.session import Session

DEFAULT_TARGET = "unix:/run/kvshuttle/kvshuttle.sock"
# Largest message either side of the channel accepts (the daemon has its own cap).
MAX_MESSAGE_BYTES = 64 << 20
DEFAULT_CALL_TIMEOUT = 30.0


def normalize_target(target: str) -> str:
    """gRPC target of a user-given address: URIs ("unix:", "dns:", "ipv4:", ...) unchanged, a
    path (no ':', or starting with '/' or '.') as a unix socket, "host:port" unchanged."""
    if target.startswith(("unix:", "unix-abstract:", "dns:", "ipv4:", "ipv6:")):
        return target
    if ":" not in target or target.startswith(("/", ".")):
        return f"unix:{target}"
    return target


class Client:
    """A channel to one daemon; thread-safe. `timeout`: how long to wait for the channel to be
    ready (UnavailableError after); `call_timeout`: deadline of each unary call."""

    def __init__(self, target: str = DEFAULT_TARGET, *, timeout: float = 5.0,
                 call_timeout: float = DEFAULT_CALL_TIMEOUT) -> None:
        self.target = normalize_target(target)
        self.call_timeout = call_timeout
        socket_path = self.target[len("unix:"):] if self.target.startswith("unix:") else ""
        if socket_path and not os.path.exists(socket_path):
            raise UnavailableError(f"cannot connect to {self.target}: no socket at "
                                   f"{socket_path} (is kvshuttled running?)",
                                   grpc.StatusCode.UNAVAILABLE)
        self._channel = grpc.insecure_channel(self.target, options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
        ])
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            self._channel.close()
            raise UnavailableError(f"cannot connect to {self.target} within {timeout} s "
                                   "(is kvshuttled running there?)",
                                   grpc.StatusCode.UNAVAILABLE) from None
        self.stub = pb_grpc.ShuttleStub(self._channel)

    def call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        """Runs the unary Shuttle RPC `method` with a deadline of `timeout` (default
        call_timeout) seconds; a failure raises the matching KvshuttleError."""
        try:
            return getattr(self.stub, method)(request, timeout=timeout or self.call_timeout)
        except grpc.RpcError as error:
            raise from_rpc_error(error, method) from None

    def info(self) -> pb.GetInfoResponse:
        """Version, devices (ordinal, uuid, name...), executors, limits, draining."""
        return self.call("GetInfo", pb.GetInfoRequest())

    def stats(self) -> pb.GetStatsResponse:
        return self.call("GetStats", pb.GetStatsRequest())

    def list_pools(self) -> list[pb.Pool]:
        return list(self.call("ListPools", pb.ListPoolsRequest()).pools)

    def list_sessions(self, session_id: str = "") -> list[pb.SessionSummary]:
        return list(self.call("ListSessions",
                              pb.ListSessionsRequest(session_id=session_id)).sessions)

    def session(self, name: str = "kvshuttle-python", *, attach: bool = True,
                on_job_done: Callable[[JobResult], None] | None = None) -> Session:
        """Opens a session (see Session)."""
        return Session(self, name, attach=attach, on_job_done=on_job_done)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(target: str = DEFAULT_TARGET, timeout: float = 5.0) -> Client:
    """A Client connected to `target` (a unix socket path or a gRPC target)."""
    return Client(target, timeout=timeout)

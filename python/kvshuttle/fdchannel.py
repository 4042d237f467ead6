"""The descriptor side channel's client half: sends file descriptors (memfd host memory) to the
daemon with a token from CreateFdToken, which gRPC cannot carry.

    grant = client.call("CreateFdToken", pb.CreateFdTokenRequest(session_id=...))
    send_fds(grant.socket_path, grant.token, [fd])    # then RegisterRegion host_memfd

Wire format (the daemon's server/memory/fd_channel.h), one SOCK_SEQPACKET message each way:
the client sends 32 bytes {b"KVSFD1\\0\\0", token[16], uint32 count (little endian), uint32 0}
with `count` descriptors as SCM_RIGHTS; the daemon answers {uint32 google.rpc code (0 = OK),
message}. The daemon takes the sender's uid and pid from the kernel: only the process that got
the token may send with it. Most callers use Session.send_fds.
"""
from __future__ import annotations

import socket
import struct
from typing import Sequence

import grpc

from kvshuttle.errors import UnavailableError, error_for, status_code

MAGIC = b"KVSFD1\0\0"
TOKEN_BYTES = 16
_REPLY_MAX_BYTES = 256
DEFAULT_TIMEOUT = 5.0


def _unavailable(socket_path: str, what: str, error: OSError) -> UnavailableError:
    reason = error.strerror or type(error).__name__
    return UnavailableError(f"side channel {socket_path}: {what}: {reason}",
                            grpc.StatusCode.UNAVAILABLE)


def send_fds(socket_path: str, token: bytes, fds: Sequence[int],
             timeout: float = DEFAULT_TIMEOUT) -> None:
    """Sends `fds` (open descriptors; this process keeps its own) to the daemon's side channel
    at `socket_path` with `token`, and waits for the answer.

    ValueError for a token that is not 16 bytes or no descriptors; UnavailableError when the
    channel cannot be reached or does not answer within `timeout` seconds; the daemon's refusal
    as the KvshuttleError of its code: NotFoundError (unknown or expired token),
    PermissionDeniedError (the token was issued to another process), FailedPreconditionError
    (descriptors were sent with it already), InvalidArgumentError (too many descriptors)."""
    token = bytes(token)
    if len(token) != TOKEN_BYTES:
        raise ValueError(f"token: {len(token)} bytes; a descriptor token is {TOKEN_BYTES}")
    fds = [int(fd) for fd in fds]
    if not fds:
        raise ValueError("fds: none given; send 1 or more descriptors")
    message = MAGIC + token + struct.pack("<II", len(fds), 0)
    with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as channel:
        channel.settimeout(timeout)
        try:
            channel.connect(socket_path)
        except OSError as error:
            raise _unavailable(socket_path, "connect", error) from None
        try:
            socket.send_fds(channel, [message], fds)
            reply = channel.recv(_REPLY_MAX_BYTES)
        except OSError as error:  # socket.timeout is an OSError too
            raise _unavailable(socket_path, "send / receive", error) from None
    if len(reply) < 4:
        raise UnavailableError(f"side channel {socket_path}: no answer from the daemon "
                               f"({len(reply)} bytes)", grpc.StatusCode.UNAVAILABLE)
    (code,) = struct.unpack_from("<I", reply)
    if code != 0:
        raise error_for(status_code(code),
                        f"side channel: {reply[4:].decode('utf-8', errors='replace')}")

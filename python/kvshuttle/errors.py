"""Errors: one exception per gRPC status code, all under KvshuttleError.

The daemon's gRPC status is mapped in one place (`from_rpc_error`): the exception keeps the code
(`grpc.StatusCode`) and the daemon's message, which names the field, the value and the allowed
range. The classes also derive from the matching built-in where one fits (ValueError for
INVALID_ARGUMENT and OUT_OF_RANGE, LookupError for NOT_FOUND, TimeoutError for
DEADLINE_EXCEEDED, ConnectionError for UNAVAILABLE), so generic handlers keep working.

Client-side argument checks raise plain TypeError / ValueError before any RPC. A job that
finishes failed or cancelled raises jobs.JobError, also a KvshuttleError.
"""
from __future__ import annotations

import grpc


class KvshuttleError(Exception):
    """An error reported by kvshuttled (or by this client about the daemon).

    `code` is the grpc.StatusCode (None for client-side failures), `message` the text.
    """

    def __init__(self, message: str, code: grpc.StatusCode | None = None) -> None:
        super().__init__(f"{code.name}: {message}" if code is not None else message)
        self.code = code
        self.message = message


class InvalidArgumentError(KvshuttleError, ValueError):
    """INVALID_ARGUMENT: malformed input (bad dtype, shape, handle, slot count...)."""


class OutOfRangeError(KvshuttleError, ValueError):
    """OUT_OF_RANGE: a block id, offset or head/layer range outside its region or block set."""


class NotFoundError(KvshuttleError, LookupError):
    """NOT_FOUND: unknown session, region, block set, job or pool (or another session's)."""


class AlreadyExistsError(KvshuttleError):
    """ALREADY_EXISTS: duplicate region / block set name in the session, or pool name."""


class FailedPreconditionError(KvshuttleError):
    """FAILED_PRECONDITION: wrong GPU, device memory without a GPU, a region being released."""


class ResourceExhaustedError(KvshuttleError):
    """RESOURCE_EXHAUSTED: quotas, a full executor queue, a pool out of blocks."""


class UnavailableError(KvshuttleError, ConnectionError):
    """UNAVAILABLE: the daemon is not reachable or is draining."""


class DeadlineExceededError(KvshuttleError, TimeoutError):
    """DEADLINE_EXCEEDED: a call or a wait ran out of time."""


class CancelledError(KvshuttleError):
    """CANCELLED: the call or the job was cancelled."""


class PermissionDeniedError(KvshuttleError, PermissionError):
    """PERMISSION_DENIED: e.g. the daemon may not open a shared-memory object."""


class InternalError(KvshuttleError):
    """INTERNAL / UNKNOWN / DATA_LOSS / UNIMPLEMENTED / ABORTED / UNAUTHENTICATED."""


_BY_CODE: dict[grpc.StatusCode, type[KvshuttleError]] = {
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.OUT_OF_RANGE: OutOfRangeError,
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.FAILED_PRECONDITION: FailedPreconditionError,
    grpc.StatusCode.RESOURCE_EXHAUSTED: ResourceExhaustedError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.CANCELLED: CancelledError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}

# google.rpc.Code numbers (JobResult.code) → grpc.StatusCode.
_CODE_BY_NUMBER: dict[int, grpc.StatusCode] = {code.value[0]: code for code in grpc.StatusCode}


def status_code(number: int) -> grpc.StatusCode:
    """The grpc.StatusCode of a google.rpc.Code number (UNKNOWN for numbers it does not know)."""
    return _CODE_BY_NUMBER.get(number, grpc.StatusCode.UNKNOWN)


def error_for(code: grpc.StatusCode, message: str) -> KvshuttleError:
    """The exception for `code` carrying `message`."""
    return _BY_CODE.get(code, InternalError)(message, code)


def from_rpc_error(error: grpc.RpcError, what: str) -> KvshuttleError:
    """The one mapping of a failed RPC: same code, the daemon's message prefixed by `what`
    (the RPC name)."""
    code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
    details = error.details() if hasattr(error, "details") else str(error)
    return error_for(code, f"{what}: {details}")

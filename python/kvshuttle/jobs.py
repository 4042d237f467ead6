"""Jobs: what to move (Job, AxisRange, Span), what came of it (JobResult, JobError for a failed
or cancelled job) and the handle a submission returns (JobFuture: wait / done / result /
cancel), which asks through the session's SessionRpc (rpc.py).

A JobFuture holds whatever must stay alive until its jobs finish (per-call registrations, CUDA
events) and runs its cleanup once, when the results are final.
"""
from __future__ import annotations

import operator
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence, Union

import grpc

from kvshuttle._stubs import pb
from kvshuttle.blocksets import BlockSet
from kvshuttle.errors import DeadlineExceededError, KvshuttleError, status_code
from kvshuttle.pools import Pool
from kvshuttle.rpc import SessionRpc

BACKENDS: dict[str, int] = {
    "auto": pb.BACKEND_AUTO,
    "kernel": pb.BACKEND_KERNEL,
    "batch": pb.BACKEND_BATCH,
    "async": pb.BACKEND_ASYNC,
    "staged": pb.BACKEND_STAGED,
}
_BACKEND_NAMES = {value: name for name, value in BACKENDS.items()}
_STATE_NAMES = {
    pb.JOB_STATE_UNSPECIFIED: "unspecified",
    pb.JOB_QUEUED: "queued",
    pb.JOB_RUNNING: "running",
    pb.JOB_DONE: "done",
    pb.JOB_FAILED: "failed",
    pb.JOB_CANCELLED: "cancelled",
}
_FINAL_STATES = ("done", "failed", "cancelled")
_UINT32_MAX = 2**32 - 1
# A Wait RPC never asks the daemon for longer than this; longer waits loop.
_WAIT_SLICE_SECONDS = 10.0


def parse_backend(backend: str, what: str = "backend") -> int:
    """The proto Backend of "auto" / "kernel" / "batch" / "async" / "staged"."""
    if not isinstance(backend, str) or backend.lower() not in BACKENDS:
        raise ValueError(f"{what}: {backend!r}; allowed: {', '.join(BACKENDS)}")
    return BACKENDS[backend.lower()]


def _check_uint32(value: Any, what: str) -> int:
    """`value` as an int in [0, 2**32) (numpy / torch integers accepted)."""
    if isinstance(value, bool):
        raise TypeError(f"{what}: expected an int, got bool")
    try:
        value = operator.index(value)
    except TypeError:
        raise TypeError(f"{what}: expected an int, got {type(value).__name__}") from None
    if not 0 <= value <= _UINT32_MAX:
        raise ValueError(f"{what}: {value}; allowed: 0 to {_UINT32_MAX}")
    return value


@dataclass(frozen=True)
class AxisRange:
    """A sub-range of heads or layers: source offset, destination offset, count (0 = all
    source items from src_offset on)."""

    src_offset: int = 0
    dst_offset: int = 0
    count: int = 0

    def to_proto(self, what: str) -> pb.AxisRange:
        return pb.AxisRange(src_offset=_check_uint32(self.src_offset, f"{what}.src_offset"),
                            dst_offset=_check_uint32(self.dst_offset, f"{what}.dst_offset"),
                            count=_check_uint32(self.count, f"{what}.count"))


@dataclass(frozen=True)
class Span:
    """A sub-range of heads or layers for offload/onboard, in cache and pool terms: the cache's
    items [cache_offset, cache_offset + count) ↔ the pool's [pool_offset, pool_offset + count)
    (count 0 = all of the source's items from its offset on).

    Span.tp(rank, tp_size, num_heads): a tensor-parallel rank's heads — all of its cache's
    num_heads/tp_size heads ↔ the pool's heads from rank*num_heads/tp_size on.
    """

    cache_offset: int = 0
    pool_offset: int = 0
    count: int = 0

    @classmethod
    def tp(cls, rank: int, tp_size: int, num_heads: int) -> Span:
        if tp_size <= 0 or num_heads % tp_size:
            raise ValueError(f"tp_size: {tp_size}; must be ≥ 1 and divide num_heads "
                             f"({num_heads})")
        if not 0 <= rank < tp_size:
            raise ValueError(f"rank: {rank}; allowed: 0 to {tp_size - 1}")
        per_rank = num_heads // tp_size
        return cls(0, rank * per_rank, per_rank)

    def to_axis(self, cache_is_source: bool) -> AxisRange:
        if cache_is_source:
            return AxisRange(self.cache_offset, self.pool_offset, self.count)
        return AxisRange(self.pool_offset, self.cache_offset, self.count)


SpanLike = Union[Span, slice, range, Sequence[int], None]


def parse_span(value: SpanLike, what: str) -> Span | None:
    """A Span from a Span, a (cache_offset, pool_offset, count) triple, or a slice/range
    start:stop (the same items on both sides); None = everything."""
    if value is None or isinstance(value, Span):
        return value
    if isinstance(value, (slice, range)):
        if value.step not in (None, 1) or value.start is None or value.stop is None:
            raise ValueError(f"{what}: {value!r}; a slice needs a start and a stop and step 1")
        if value.stop <= value.start:
            raise ValueError(f"{what}: {value!r} is empty")
        return Span(value.start, value.start, value.stop - value.start)
    if isinstance(value, (tuple, list)) and len(value) == 3:
        return Span(*value)
    raise TypeError(f"{what}: expected a kvshuttle.Span, a slice or a (cache_offset, "
                    f"pool_offset, count) triple, got {value!r}")


Endpoint = Union[BlockSet, Pool, str]


def endpoint_proto(endpoint: Endpoint, what: str) -> pb.Endpoint:
    """A block set (of this session) or a pool (object or name) as a proto Endpoint."""
    if isinstance(endpoint, BlockSet):
        return pb.Endpoint(block_set_id=endpoint.block_set_id)
    if isinstance(endpoint, Pool):
        return pb.Endpoint(pool=endpoint.name)
    if isinstance(endpoint, str):
        return pb.Endpoint(pool=endpoint)
    raise TypeError(f"{what}: expected a BlockSet, a Pool or a pool name, got "
                    f"{type(endpoint).__name__}")


@dataclass
class Job:
    """One conversion: src block ids → dst block ids, with optional head / layer ranges, a
    token count (0 = all of the source's), a backend and an SM cap (kernel backend).

    `pairs` are (src_block, dst_block) or (src_block, dst_block, src_token_offset,
    dst_token_offset).
    """

    src: Endpoint
    dst: Endpoint
    pairs: Sequence[Sequence[int]]
    heads: AxisRange | None = None
    layers: AxisRange | None = None
    token_count: int = 0
    backend: str = "auto"
    max_sms: int = 0

    def to_proto(self, what: str = "job") -> pb.Job:
        job = pb.Job(src=endpoint_proto(self.src, f"{what}.src"),
                     dst=endpoint_proto(self.dst, f"{what}.dst"),
                     token_count=_check_uint32(self.token_count, f"{what}.token_count"),
                     backend=parse_backend(self.backend, f"{what}.backend"),
                     max_sms=_check_uint32(self.max_sms, f"{what}.max_sms"))
        for name in ("heads", "layers"):
            axis = getattr(self, name)
            if axis is not None:
                getattr(job, name).CopyFrom(axis.to_proto(f"{what}.{name}"))
        for i, pair in enumerate(self.pairs):
            if len(pair) not in (2, 4):
                raise ValueError(f"{what}.pairs[{i}]: {tuple(pair)}; expected (src_block, "
                                 "dst_block) or (src, dst, src_token_offset, dst_token_offset)")
            values = [_check_uint32(v, f"{what}.pairs[{i}]") for v in pair]
            job.pairs.add(src_block=values[0], dst_block=values[1],
                          src_token_offset=values[2] if len(values) == 4 else 0,
                          dst_token_offset=values[3] if len(values) == 4 else 0)
        return job


def pairs_of(src_ids: Sequence[int], dst_ids: Sequence[int], what_src: str,
             what_dst: str) -> list[tuple[int, int]]:
    """(src, dst) pairs of two equally long id lists; ValueError naming both otherwise."""
    src_ids, dst_ids = list(src_ids), list(dst_ids)
    if len(src_ids) != len(dst_ids):
        raise ValueError(f"{what_src} has {len(src_ids)} ids but {what_dst} has "
                         f"{len(dst_ids)}; they pair up one to one")
    return [(_check_uint32(s, f"{what_src}[{i}]"), _check_uint32(d, f"{what_dst}[{i}]"))
            for i, (s, d) in enumerate(zip(src_ids, dst_ids))]


@dataclass(frozen=True)
class JobResult:
    """The daemon's JobResult: state ("queued", "running", "done", "failed", "cancelled"),
    status code and message of a failure, bytes moved, backend and executor used, timings, and
    whether the copies are on the GPU stream (launched)."""

    job_id: int
    state: str
    code: grpc.StatusCode
    message: str
    bytes: int
    backend: str
    executor: str
    queue_seconds: float
    run_seconds: float
    launched: bool = False

    @property
    def final(self) -> bool:
        return self.state in _FINAL_STATES

    @property
    def ok(self) -> bool:
        return self.state == "done"

    @classmethod
    def from_proto(cls, message: pb.JobResult) -> JobResult:
        return cls(job_id=message.job_id, state=_STATE_NAMES.get(message.state, "unspecified"),
                   code=status_code(message.code), message=message.message,
                   bytes=message.bytes, backend=_BACKEND_NAMES.get(message.backend, "auto"),
                   executor=message.executor, queue_seconds=message.queue_seconds,
                   run_seconds=message.run_seconds,
                   launched=bool(getattr(message, "launched", False)))


class JobError(KvshuttleError):
    """A job finished JOB_FAILED or JOB_CANCELLED; `result` is its JobResult."""

    def __init__(self, result: JobResult) -> None:
        super().__init__(f"job {result.job_id} {result.state}: {result.message}", result.code)
        self.result = result


# Takes the completions of job ids within a timeout in seconds (< 0: no wait) from a session's
# streaming channel: all of them, or None when they did not all come (or the channel ended).
TakeCompletions = Callable[[Sequence[int], float], Union[list[JobResult], None]]


class JobFuture:
    """The jobs of one submission. Thread-safe.

    wait(timeout) → True once all are final; done() → the same without waiting; results() /
    result() → JobResults, raising JobError for a failed or cancelled job and
    DeadlineExceededError when the timeout passes first; cancel() cancels queued jobs.
    """

    def __init__(self, rpc: SessionRpc | None, job_ids: Sequence[int],
                 keepalive: Sequence[Any] = (), on_final: Callable[[], None] | None = None,
                 take_completions: TakeCompletions | None = None):
        self._rpc = rpc
        # Given when submitted over the session's channel: the completions come on it.
        self._take_completions = take_completions
        self.job_ids: list[int] = list(job_ids)
        self._keepalive = list(keepalive)
        self._on_final = on_final
        self._results: list[JobResult] | None = None if self.job_ids else []
        self._lock = threading.Lock()
        if not self.job_ids:
            self._finish()

    def _finish(self) -> None:
        """Runs the cleanup once and drops what was kept alive."""
        on_final, self._on_final = self._on_final, None
        self._keepalive = []
        if on_final is not None:
            on_final()

    def _poll(self, timeout: float) -> bool:
        """Waits at most `timeout` seconds (< 0: not at all) for the completions — from the
        session's channel when it submitted over one, else one Wait RPC; stores final
        results."""
        assert self._rpc is not None
        if self._take_completions is not None:
            got = self._take_completions(self.job_ids, timeout)
            if got is not None:
                with self._lock:
                    if self._results is None:
                        self._results = got
                        self._finish()
                return True
            # Not all there yet (or the channel ended): what the daemon knows, without waiting.
            timeout = -1.0
        response = self._rpc.wait_raw(self.job_ids, timeout)
        results = [JobResult.from_proto(r) for r in response.results]
        if response.all_done and all(r.final for r in results):
            with self._lock:
                if self._results is None:
                    self._results = results
                    self._finish()
            return True
        return False

    def done(self) -> bool:
        """True when every job is final (asks the daemon without waiting)."""
        return self._results is not None or self._poll(-1.0)

    def wait(self, timeout: float | None = None) -> bool:
        """Waits up to `timeout` seconds (None: no limit); True when every job is final."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while self._results is None:
            left = _WAIT_SLICE_SECONDS if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return self._poll(-1.0)
            if self._poll(min(left, _WAIT_SLICE_SECONDS)):
                return True
        return True

    def results(self, timeout: float | None = None) -> list[JobResult]:
        """Every job's result (in submission order) once all are final; JobError for the first
        failed or cancelled one; DeadlineExceededError after `timeout` seconds."""
        if not self.wait(timeout):
            raise DeadlineExceededError(f"jobs {self.job_ids} not finished after {timeout} s",
                                        grpc.StatusCode.DEADLINE_EXCEEDED)
        assert self._results is not None
        for result in self._results:
            if not result.ok:
                raise JobError(result)
        return list(self._results)

    def result(self, timeout: float | None = None) -> JobResult:
        """The result of a one-job submission (see results())."""
        if len(self.job_ids) != 1:
            raise ValueError(f"result(): this submission has {len(self.job_ids)} jobs; "
                             "use results()")
        return self.results(timeout)[0]

    def cancel(self) -> list[int]:
        """Cancels the jobs that have not started; returns their ids."""
        if self._results is not None or self._rpc is None:
            return []
        return self._rpc.cancel(self.job_ids)

    def __repr__(self) -> str:
        state = "final" if self._results is not None else "pending"
        return f"JobFuture(job_ids={self.job_ids}, {state})"


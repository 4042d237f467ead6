"""Session: everything a worker registers and submits, wrapping every session RPC.

    client = kvshuttle.connect("unix:/run/kvshuttle/kvshuttle.sock")
    with client.session("worker-0") as session:
        cache = session.register_vllm_cache(kv_caches)            # torch CUDA tensors
        pool = session.create_pool("store", cache.layout.replace("universal"), 1024)
        ids = pool.allocate(2)
        session.offload(cache, [3, 5], pool, ids).result()

A session lives while its streaming channel is open (the default; the daemon closes it as soon
as this process goes away) or, unattached, while a background thread renews its lease. An
attached session submits over the channel and learns of completions from it, so a job costs no
unary call; every other RPC goes through its SessionRpc (rpc.py), and so through Client.call.
Stubs of a proto without the channel fall back to the Attach stream and unary SubmitBatch /
Wait.

Layers: the handles (regions.py, blocksets.py, pools.py, jobs.py) keep the session's SessionRpc,
never the Session, and import nothing of this module; Session builds the SessionRpc, composes
the handles over it and owns the streams. The streams stay open while the SessionRpc lives, so
a handle keeps its session alive as long as it is reachable.
"""
from __future__ import annotations

import collections
import itertools
import queue
import threading
import time
import weakref
from typing import Any, Callable, Iterator, Sequence

import grpc

from kvshuttle import blocksets
from kvshuttle._stubs import HAS_CHANNEL, HAS_COMPLETION_EVENT, HAS_START_EVENT, pb
from kvshuttle.blocksets import BlockSet, KVCache
from kvshuttle.errors import (DeadlineExceededError, KvshuttleError, UnavailableError,
                              error_for, from_rpc_error, status_code)
from kvshuttle.jobs import (Endpoint, Job, JobFuture, JobResult, SpanLike, pairs_of,
                            parse_backend, parse_span)
from kvshuttle.layout import Layout
from kvshuttle.pools import Pool, parse_memory
from kvshuttle.regions import MemoryRegistration, Region, register_memory
from kvshuttle.rpc import Connection, SessionRpc
from kvshuttle.tensors import describe

# Batches larger than this (serialized) take the unary SubmitBatch even on the channel: a
# message over the daemon's cap ends a stream (and the session with it), but fails only a call.
MAX_CHANNEL_SUBMIT_BYTES = 256 << 10
# Completions kept for futures that have not collected them yet (the oldest go first).
_MAX_KEPT_COMPLETIONS = 1 << 16


class _Background:
    """What a session's background thread shares with it (never the Session itself, so an
    abandoned session can be collected and its stream cancelled)."""

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.attached = threading.Event()
        self.ended = threading.Event()
        self.error: BaseException | None = None
        self.call: Any = None
        # The streaming channel: requests to send (None ends them), answers by tag, and the
        # completions of jobs submitted over it, by job id, until their future takes them.
        self.channel = False
        self.requests: queue.Queue[Any] = queue.Queue()
        self.cond = threading.Condition()
        self.answers: dict[int, Any] = {}
        self.watched: set[int] = set()
        self.completions: collections.OrderedDict[int, JobResult] = collections.OrderedDict()

    def shutdown(self) -> None:
        self.stop.set()
        self.requests.put(None)
        if self.call is not None:
            self.call.cancel()

    def take_completions(self, job_ids: Sequence[int],
                         timeout: float) -> list[JobResult] | None:
        """The completions of `job_ids` from the channel once all arrived within `timeout`
        seconds (< 0: no wait), taken from the session; None when they did not (or the
        channel ended: then ask the daemon with Wait)."""
        with self.cond:
            def ready() -> bool:
                return all(i in self.completions for i in job_ids)
            if timeout >= 0 and not ready():
                self.cond.wait_for(lambda: ready() or self.ended.is_set(), timeout)
            if not ready():
                return None
            return [self.completions.pop(i) for i in job_ids]


def _channel_requests(state: _Background, session_id: str) -> Iterator[Any]:
    yield pb.ChannelRequest(open=session_id)
    while True:
        request = state.requests.get()
        if request is None:
            return
        yield request


def _channel_loop(state: _Background, call: Any,
                  on_job_done: Callable[[JobResult], None] | None) -> None:
    try:
        for event in call:
            kind = event.WhichOneof("event")
            if kind == "attached":
                state.attached.set()
            elif kind in ("accepted", "rejected"):
                answer = getattr(event, kind)
                with state.cond:
                    if kind == "accepted":
                        # Before the next event: every job_done of these jobs comes after it.
                        state.watched.update(answer.job_ids)
                    state.answers[answer.tag] = answer
                    state.cond.notify_all()
            elif kind == "job_done":
                result = JobResult.from_proto(event.job_done)
                with state.cond:
                    if result.job_id in state.watched:
                        state.watched.discard(result.job_id)
                        state.completions[result.job_id] = result
                        while len(state.completions) > _MAX_KEPT_COMPLETIONS:
                            state.completions.popitem(last=False)
                        state.cond.notify_all()
                if on_job_done is not None:
                    on_job_done(result)
            elif kind == "closing":
                state.error = error_for(status_code(event.closing.code),
                                        f"Channel: {event.closing.message}")
    except grpc.RpcError as error:
        if not state.stop.is_set() and state.error is None:
            state.error = from_rpc_error(error, "Channel")
    finally:
        state.ended.set()
        with state.cond:
            state.cond.notify_all()


def _attach_loop(state: _Background, call: Any,
                 on_job_done: Callable[[JobResult], None] | None) -> None:
    try:
        for event in call:
            if event.HasField("attached"):
                state.attached.set()
            elif event.HasField("job_done") and on_job_done is not None:
                on_job_done(JobResult.from_proto(event.job_done))
    except grpc.RpcError as error:
        if not state.stop.is_set():
            state.error = from_rpc_error(error, "Attach")
    finally:
        state.ended.set()


def _keepalive_loop(state: _Background, client: Connection, session_id: str,
                    interval: float) -> None:
    while not state.stop.wait(interval):
        try:
            client.call("KeepAlive", pb.KeepAliveRequest(session_id=session_id))
        except KvshuttleError as error:  # a lost lease shows up on the next real call
            state.error = error


class Session:
    """One session (see the module docstring). Thread-safe; a context manager that closes it.

    `attach` (default): the session ends when this process (or close()) ends its streaming
    channel (Attach with older stubs); `on_job_done` is then called, on the stream's thread,
    with every job completion.
    Without `attach` a thread renews the lease every lease/3 seconds.
    `rpc` is the session's SessionRpc, which its handles keep.
    """

    def __init__(self, client: Connection, name: str = "kvshuttle-python", *, attach: bool = True,
                 on_job_done: Callable[[JobResult], None] | None = None) -> None:
        self.client = client
        opened = client.call("OpenSession", pb.OpenSessionRequest(client_name=name))
        self.id: str = opened.session_id
        self.rpc = SessionRpc(client, self.id)
        self.lease_seconds: int = opened.lease_seconds
        self.attached = attach
        self.closed = False
        self._state = _Background()
        self._tags = itertools.count(1)
        if attach and HAS_CHANNEL:
            call = client.stub.Channel(_channel_requests(self._state, self.id))
            self._state.call = call
            self._state.channel = True
            target, args = _channel_loop, (self._state, call, on_job_done)
        elif attach:
            call = client.stub.Attach(pb.AttachRequest(session_id=self.id))
            self._state.call = call
            target, args = _attach_loop, (self._state, call, on_job_done)
        else:
            interval = max(self.lease_seconds / 3.0, 0.5)
            target, args = _keepalive_loop, (self._state, client, self.id, interval)
        self._thread = threading.Thread(target=target, args=args, daemon=True,
                                        name=f"kvshuttle-session-{name}")
        self._thread.start()
        # The streams end when the last holder of the SessionRpc (this or a handle) goes.
        self._finalizer = weakref.finalize(self.rpc, self._state.shutdown)
        if attach:
            self._await_attached()

    def _await_attached(self) -> None:
        deadline = time.monotonic() + self.client.call_timeout
        while not self._state.attached.wait(0.05):
            if self._state.ended.is_set() or time.monotonic() > deadline:
                self.close()
                cause = self._state.error or "no `attached` event"
                raise UnavailableError(f"the session stream did not start: {cause}",
                                       grpc.StatusCode.UNAVAILABLE)

    def close(self) -> None:
        """Closes the session: queued jobs are dropped, everything it registered is released
        once its running jobs finish. Idempotent."""
        if self.closed:
            return
        self.closed = True
        try:
            self.client.call("CloseSession", pb.CloseSessionRequest(session_id=self.id))
        except KvshuttleError:
            pass  # already gone (lease expired, daemon stopped)
        self._finalizer()
        self._thread.join(timeout=5.0)

    def __enter__(self) -> Session:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def stream_error(self) -> BaseException | None:
        """Why the channel (or Attach stream) or the lease renewal failed, if it did."""
        return self._state.error

    def _call(self, method: str, request: Any, timeout: float | None = None) -> Any:
        return self.rpc.call(method, request, timeout)

    # -----------------------------------------------------------------------------------------
    # Regions

    def register_cuda_ipc(self, handle: bytes, gpu_uuid: str, offset: int, size: int,
                          name: str = "") -> Region:
        """Lends `size` bytes at `offset` of the CUDA allocation whose base has the 64-byte
        IPC `handle`, on GPU `gpu_uuid` ("GPU-..."). Most callers use register_tensor."""
        return Region.from_proto(self.rpc, self.rpc.register_cuda_ipc(handle, gpu_uuid, offset,
                                                                      size, name))

    def register_shm(self, shm_name: str, offset: int, size: int, name: str = "") -> Region:
        """Lends bytes [offset, offset + size) of the POSIX shm object `shm_name`, which this
        process's user must own (the daemon checks). Kept for compatibility: kvshuttle's own
        host memory is memfd (register_memfd)."""
        return Region.from_proto(self.rpc, self.rpc.register_shm(shm_name, offset, size, name))

    def send_fds(self, fds: Sequence[int]) -> list[tuple[bytes, int]]:
        """Sends descriptors to the daemon over its side channel (this process keeps its own)
        and returns, for each, the (token, index) that register_memfd names it by — usable once,
        within the token's lifetime (30 s). One token per message of at most the daemon's
        max_fds descriptors; a session holds few unused tokens at once (ResourceExhaustedError
        beyond). Side-channel refusals raise the KvshuttleError of their code (fdchannel)."""
        return self.rpc.send_fds(fds)

    def register_memfd(self, fd_token: bytes, fd_index: int, offset: int, size: int,
                       name: str = "") -> Region:
        """Lends bytes [offset, offset + size) of descriptor `fd_index` sent with `fd_token`
        (send_fds). The daemon maps only a memfd sealed against shrinking:
        FailedPreconditionError for an unsealed one, InvalidArgumentError for any other kind of
        file."""
        return Region.from_proto(self.rpc, self.rpc.register_memfd(fd_token, fd_index, offset,
                                                                   size, name))

    def register_fd(self, fd: int, offset: int, size: int, name: str = "") -> Region:
        """Sends `fd` (a sealed memfd) and lends bytes [offset, offset + size) of it: send_fds
        and register_memfd in one call."""
        [(token, index)] = self.send_fds([fd])
        return self.register_memfd(token, index, offset, size, name)

    def register_tensor(self, *tensors: Any, name: str = "") -> MemoryRegistration:
        """Lends the memory under torch CUDA tensors (through their allocations' IPC handles)
        or host arrays in kvshuttle host memory (memfd, sent over the side channel): one region
        per allocation / memfd object. The registration keeps the tensors alive until
        release()."""
        whats = [f"tensors[{i}]" for i in range(len(tensors))]
        infos = [describe(t, w) for t, w in zip(tensors, whats)]
        if not infos:
            raise ValueError("register_tensor: no tensors given")
        blocksets.same_place(infos, whats)
        return register_memory(self.rpc, infos, whats, name)

    def unregister_region(self, region_id: int) -> bool:
        """Releases a region; True when the daemon deferred it until its jobs finish."""
        return self.rpc.unregister_region(region_id)

    def list_regions(self) -> list[pb.Region]:
        return list(self._call("ListRegions", pb.ListRegionsRequest()).regions)

    # -----------------------------------------------------------------------------------------
    # Block sets

    def register_block_set_raw(self, layout: Layout, num_blocks: int, *,
                               strided: pb.StridedPlacement | None = None,
                               explicit: pb.ExplicitPlacement | None = None,
                               name: str = "") -> pb.BlockSet:
        """RegisterBlockSet over registered regions with a strided or an explicit placement."""
        return self.rpc.register_block_set_raw(layout, num_blocks, strided=strided,
                                               explicit=explicit, name=name)

    def register_vllm_cache(self, kv_caches: Sequence[Any], layout: str = "NHD",
                            kv_first: bool = True, name: str = "") -> KVCache:
        """Registers per-layer vLLM cache tensors as one strided block set, in one call.

        kv_caches[l] is [2, num_blocks, nt, nh, hd] (kv_first=True) or [num_blocks, 2, nt, nh,
        hd] (kv_first=False), with [.., nh, nt, hd] for layout="HND"; rank-4 [num_blocks, nt,
        nh, hd] and rank-3 [num_blocks, nt, hd] tensors are one-chunk (MLA) caches. Each
        (layer, K/V, block) chunk must be contiguous; the physical chunk order is read from the
        strides. All layers share shape, dtype and device. The KVCache keeps the tensors
        registered until close()."""
        return blocksets.vllm_cache(self.rpc, kv_caches, layout, kv_first, name)

    def register_blocks(self, blocks: Sequence[Sequence[Any]], layout: Layout,
                        name: str = "") -> BlockSet:
        """Registers the seed's block stacks — blocks[b][l*no + o] a chunk of layout.slot_shape
        — as an explicit block set of layout (NHD or HND)."""
        if not layout.kind.is_stack:
            raise ValueError(f"layout: {layout}; register_blocks takes an NHD or HND layout")
        infos, whats, chunks = blocksets.describe_stacks(blocks, "blocks")
        if not infos:
            raise ValueError("blocks: empty")
        if chunks != layout.slots:
            raise ValueError(f"blocks[0]: {chunks} chunks; layout {layout} has nl*no = "
                             f"{layout.slots}")
        return self._explicit(layout, infos, whats, name)

    def register_buffers(self, buffers: Sequence[Any], layout: Layout,
                         name: str = "") -> BlockSet:
        """Registers one buffer per block (universal / operational layouts, shape
        layout.slot_shape) as an explicit block set."""
        if layout.kind.is_stack:
            raise ValueError(f"layout: {layout}; register_buffers takes a universal or "
                             "operational layout")
        infos, whats = blocksets.describe_buffers(buffers, "buffers")
        if not infos:
            raise ValueError("buffers: empty")
        return self._explicit(layout, infos, whats, name)

    def _explicit(self, layout: Layout, infos: list, whats: list[str], name: str) -> BlockSet:
        blocksets.same_place(infos, whats)
        dtype = blocksets.same_dtype(infos, whats)
        if dtype != layout.dtype:
            raise ValueError(f"{whats[0]}: dtype {dtype}; layout says {layout.dtype}")
        blocksets.check_shapes(infos, whats, layout.slot_shape, f"layout {layout}")
        blocksets.check_registrable(infos, whats)
        return blocksets.explicit_block_set(self.rpc, layout, infos, whats, name)

    def unregister_block_set(self, block_set_id: int) -> None:
        self.rpc.unregister_block_set(block_set_id)

    def list_block_sets(self) -> list[pb.BlockSet]:
        return list(self._call("ListBlockSets", pb.ListBlockSetsRequest()).block_sets)

    # -----------------------------------------------------------------------------------------
    # Pools

    def create_pool(self, name: str, layout: Layout, num_blocks: int, memory: str = "device",
                    gpu_uuid: str = "") -> Pool:
        """Creates a daemon-owned pool (universal or operational layout) of `num_blocks`
        blocks in "device" memory (GPU `gpu_uuid`, default the daemon's first) or pinned
        "host" memory. AlreadyExistsError when the name is taken."""
        request = pb.CreatePoolRequest(name=name, layout=layout.to_proto(),
                                       num_blocks=num_blocks, memory=parse_memory(memory),
                                       gpu_uuid=gpu_uuid)
        return Pool(self.rpc, self._call("CreatePool", request).pool)

    def pool(self, name: str) -> Pool:
        """A handle on an existing pool (created by any session); NotFoundError if none."""
        return Pool(self.rpc, self.rpc.find_pool(name))

    def destroy_pool(self, name: str) -> None:
        self.rpc.destroy_pool(name)

    def allocate_blocks(self, pool: str, count: int) -> list[int]:
        return self.rpc.allocate_blocks(pool, count)

    def free_blocks(self, pool: str, block_ids: Sequence[int]) -> None:
        self.rpc.free_blocks(pool, block_ids)

    # -----------------------------------------------------------------------------------------
    # Jobs

    def submit(self, jobs: Sequence[Job], *, stream: Any = None, timeout: float | None = None,
               device_index: int | None = None, keepalive: Sequence[Any] = (),
               on_final: Callable[[], None] | None = None) -> JobFuture:
        """Queues `jobs` as one batch (all or none) and returns their JobFuture.

        With `stream` (a torch.cuda.Stream on the jobs' GPU) the copies are ordered with it on
        the GPU: a CUDA IPC event recorded on `stream` now is every job's start event (the
        daemon starts them once your stream's work so far is done; nothing here waits for it),
        every job records a CUDA IPC event after its copies, and once the daemon has
        launched them (`timeout` seconds at most) the stream waits for those events — later
        work on it runs after the copies, with no CPU wait for the copies themselves.
        `device_index` (optional): the jobs' GPU, which the stream must be on.
        `keepalive` objects live and `on_final` runs once the jobs are final."""
        protos = [job.to_proto(f"jobs[{i}]") for i, job in enumerate(jobs)]
        if not protos:
            return JobFuture(None, [], keepalive, on_final)
        events: list[Any] = []
        start: list[Any] = []
        if stream is not None:
            events, start = self._prepare_events(protos, stream, device_index)
        job_ids, via_channel = self._submit(protos)
        future = JobFuture(self.rpc, job_ids, [*keepalive, *events, *start], on_final,
                           self._state.take_completions if via_channel else None)
        if events:
            self._order_stream(future, events, stream, timeout)
        return future

    @property
    def over_channel(self) -> bool:
        """True while this session submits over its streaming channel."""
        return self._state.channel and not self._state.ended.is_set()

    def _submit(self, protos: list[pb.Job]) -> tuple[list[int], bool]:
        """Queues one batch: over the channel when attached (and the batch is small enough),
        else the SubmitBatch RPC. Returns the job ids and whether the channel took them (their
        completions then come from it)."""
        request = pb.SubmitBatchRequest(jobs=protos)
        if not self.over_channel or request.ByteSize() > MAX_CHANNEL_SUBMIT_BYTES:
            return list(self._call("SubmitBatch", request).job_ids), False
        tag = next(self._tags)
        timeout = self.client.call_timeout
        state = self._state
        state.requests.put(pb.ChannelRequest(submit=pb.ChannelSubmit(
            tag=tag, jobs=protos, timeout_seconds=timeout)))
        with state.cond:
            state.cond.wait_for(lambda: tag in state.answers or state.ended.is_set(), timeout)
            answer = state.answers.pop(tag, None)
        if answer is None:
            cause = state.error or "no answer"
            raise UnavailableError(f"SubmitBatch over the channel: {cause}; whether the batch "
                                   "was queued is unknown", grpc.StatusCode.UNAVAILABLE)
        if answer.DESCRIPTOR.name == "ChannelRejected":
            raise error_for(status_code(answer.code), answer.message)
        return list(answer.job_ids), True

    def _prepare_events(self, protos: list[pb.Job], stream: Any,
                        device_index: int | None) -> tuple[list[Any], list[Any]]:
        """Completion events (one per job) and the batch's start event (recorded on `stream`;
        none with stubs older than Job.start_event: `stream` is synchronized instead)."""
        if not HAS_COMPLETION_EVENT:
            raise RuntimeError("stream=: these kvshuttle stubs were generated from a proto "
                               "without Job.completion_event; rebuild the package from a "
                               "newer proto/")
        from kvshuttle import cuda
        cuda.check_stream(stream, device_index)
        start: list[Any] = []
        if HAS_START_EVENT:
            # The jobs start on the GPU once `stream` reaches this point: no CPU wait.
            event = cuda.IpcEvent(stream.device.index)
            event.record(stream)
            for proto in protos:
                proto.start_event.handle = event.handle
            start.append(event)  # alive until the jobs are final (the daemon opens it late)
        else:
            cuda.synchronize(stream)
        events = [cuda.IpcEvent(stream.device.index) for _ in protos]
        for proto, event in zip(protos, events):
            proto.completion_event.handle = event.handle
        return events, start

    def _order_stream(self, future: JobFuture, events: list[Any], stream: Any,
                      timeout: float | None) -> None:
        """Waits until every job is launched or final, then makes `stream` wait on the
        events of the launched ones."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = 10.0 if deadline is None else min(deadline - time.monotonic(), 10.0)
            response = self.rpc.wait_raw(future.job_ids, left if left > 0 else -1.0,
                                         until_launched=True)
            results = [JobResult.from_proto(r) for r in response.results]
            if all(r.launched or r.final for r in results):
                break
            if deadline is not None and time.monotonic() >= deadline:
                raise DeadlineExceededError(
                    f"jobs {future.job_ids} not launched within {timeout} s; the stream was "
                    "not ordered after them", grpc.StatusCode.DEADLINE_EXCEEDED)
        for result, event in zip(results, events):
            if result.launched or result.ok:
                event.make_stream_wait(stream)

    def wait_raw(self, job_ids: Sequence[int], timeout: float,
                 until_launched: bool = False) -> pb.WaitResponse:
        """One Wait RPC: the daemon waits up to `timeout` seconds (< 0: not at all)."""
        return self.rpc.wait_raw(job_ids, timeout, until_launched)

    def cancel(self, job_ids: Sequence[int]) -> list[int]:
        """Cancels jobs that have not started; returns the ids it cancelled."""
        return self.rpc.cancel(job_ids)

    def offload(self, cache: BlockSet, block_ids: Sequence[int], pool: Pool | str,
                pool_block_ids: Sequence[int], *, heads: SpanLike = None,
                layers: SpanLike = None, token_count: int = 0, backend: str = "auto",
                max_sms: int = 0, stream: Any = None,
                timeout: float | None = None) -> JobFuture:
        """Copies cache blocks block_ids[i] → pool blocks pool_block_ids[i] (one job).

        heads / layers: a Span(cache_offset, pool_offset, count), a (cache, pool, count)
        triple or a slice (same range on both sides); None = all. A TP rank holding heads
        [4, 8) of 8 offloads with heads=Span.tp(rank=1, tp_size=2, num_heads=8).
        stream: see submit(). Without it, make sure the cache's data is written (e.g.
        torch.cuda.synchronize()) before calling."""
        return self._move(cache, block_ids, pool, pool_block_ids, True, heads, layers,
                          token_count, backend, max_sms, stream, timeout)

    def onboard(self, pool: Pool | str, pool_block_ids: Sequence[int], cache: BlockSet,
                block_ids: Sequence[int], *, heads: SpanLike = None, layers: SpanLike = None,
                token_count: int = 0, backend: str = "auto", max_sms: int = 0,
                stream: Any = None, timeout: float | None = None) -> JobFuture:
        """Copies pool blocks pool_block_ids[i] → cache blocks block_ids[i] (see offload; the
        spans are still given in cache / pool terms)."""
        return self._move(cache, block_ids, pool, pool_block_ids, False, heads, layers,
                          token_count, backend, max_sms, stream, timeout)

    def _move(self, cache: BlockSet, block_ids: Sequence[int], pool: Pool | str,
              pool_block_ids: Sequence[int], offload: bool, heads: SpanLike, layers: SpanLike,
              token_count: int, backend: str, max_sms: int, stream: Any,
              timeout: float | None) -> JobFuture:
        if not isinstance(cache, BlockSet):
            raise TypeError(f"cache: expected a BlockSet / KVCache (register_vllm_cache), got "
                            f"{type(cache).__name__}")
        parse_backend(backend)
        pairs = pairs_of(block_ids, pool_block_ids, "block_ids", "pool_block_ids")
        head_span, layer_span = parse_span(heads, "heads"), parse_span(layers, "layers")
        if stream is not None and cache.memory != "device":
            raise ValueError("stream: only for caches in GPU memory; this cache is host memory")
        pool_endpoint: Endpoint = pool
        src, dst = (cache, pool_endpoint) if offload else (pool_endpoint, cache)
        if not offload:
            pairs = [(p, c) for c, p in pairs]
        job = Job(src, dst, pairs,
                  heads=head_span.to_axis(offload) if head_span else None,
                  layers=layer_span.to_axis(offload) if layer_span else None,
                  token_count=token_count, backend=backend, max_sms=max_sms)
        if not pairs:
            return JobFuture(None, [])
        return self.submit([job], stream=stream, timeout=timeout,
                           device_index=cache.device_index)

    def keep_alive(self) -> int:
        """Renews the lease now; returns the lease in seconds."""
        return self._call("KeepAlive", pb.KeepAliveRequest()).lease_seconds

    def __repr__(self) -> str:
        return f"Session(target={self.client.target!r}, attached={self.attached})"

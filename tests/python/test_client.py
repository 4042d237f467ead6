"""The client itself on the CPU tier: connecting, sessions, gRPC errors as exceptions, pools,
regions over shared memory, futures (wait / done / result / cancel), shared-memory objects and
the block-set helpers' argument checks."""
from __future__ import annotations

import fcntl
import gc
import os
import time
import uuid
from typing import Iterator

import grpc
import numpy as np
import pytest

import kvshuttle
from conftest import start_daemon
from kvshuttle._stubs import pb
from kvshuttle.client import normalize_target
from daemon import DaemonProcess

UNIVERSAL = kvshuttle.Layout.of("universal", nl=2, no=2, nt=4, nh=3, hd=5, dtype="f16")


@pytest.fixture
def session(cpu_daemon: DaemonProcess) -> Iterator[kvshuttle.Session]:
    with cpu_daemon.connect() as client, client.session("pytest-client") as opened:
        yield opened


def pool_name() -> str:
    return f"pytest-{uuid.uuid4().hex[:12]}"


# ---------------------------------------------------------------------------------------------
# Connecting and sessions


def test_targets_are_normalized() -> None:
    assert normalize_target("/run/kvshuttle/kvshuttle.sock") == "unix:/run/kvshuttle/kvshuttle.sock"
    assert normalize_target("./kvs.sock") == "unix:./kvs.sock"
    assert normalize_target("kvs.sock") == "unix:kvs.sock"
    assert normalize_target("unix:/tmp/a.sock") == "unix:/tmp/a.sock"
    assert normalize_target("localhost:9460") == "localhost:9460"
    assert normalize_target("dns:///kvs:9460") == "dns:///kvs:9460"


def test_connect_to_missing_socket_fails_fast(tmp_path) -> None:
    started = time.monotonic()
    with pytest.raises(kvshuttle.UnavailableError, match="no socket at") as caught:
        kvshuttle.connect(str(tmp_path / "none.sock"), timeout=5.0)
    assert caught.value.code == grpc.StatusCode.UNAVAILABLE
    assert time.monotonic() - started < 1.0


def test_info_reports_the_cpu_executor(cpu_daemon: DaemonProcess) -> None:
    with cpu_daemon.connect() as client:
        info = client.info()
    assert info.cpu_executor and not info.draining and info.version
    assert info.limits.max_jobs_per_batch > 0


def test_session_is_listed_and_closing_forgets_it(cpu_daemon: DaemonProcess) -> None:
    with cpu_daemon.connect() as client:
        session = client.session("pytest-listed")
        own = [s for s in client.list_sessions(session.id) if s.own]
        assert len(own) == 1 and own[0].client_name == "pytest-listed" and own[0].attached
        session.close()
        session.close()  # idempotent
        with pytest.raises(kvshuttle.NotFoundError) as caught:
            client.call("ListRegions", pb.ListRegionsRequest(session_id=session.id))
        assert caught.value.code == grpc.StatusCode.NOT_FOUND


def test_unattached_session_renews_its_lease(cpu_daemon: DaemonProcess) -> None:
    with cpu_daemon.connect() as client, client.session("pytest-lease",
                                                        attach=False) as session:
        assert not session.attached
        assert session.keep_alive() == session.lease_seconds > 0
        assert session.list_regions() == []


def test_job_completions_reach_the_callback(cpu_daemon: DaemonProcess) -> None:
    seen: list[kvshuttle.JobResult] = []
    with cpu_daemon.connect() as client, client.session(
            "pytest-events", on_job_done=seen.append) as session:
        src = [kvshuttle.shm_empty(UNIVERSAL.slot_shape, np.float16) for _ in range(2)]
        dst = [kvshuttle.shm_empty(UNIVERSAL.slot_shape, np.float16) for _ in range(2)]
        a, b = session.register_buffers(src, UNIVERSAL), session.register_buffers(dst, UNIVERSAL)
        future = session.submit([kvshuttle.Job(a, b, [(0, 1), (1, 0)])])
        result = future.result(timeout=30)
        deadline = time.monotonic() + 10
        while not seen and time.monotonic() < deadline:
            time.sleep(0.01)
        assert [r.job_id for r in seen] == [result.job_id] and seen[0].ok


# ---------------------------------------------------------------------------------------------
# Errors keep the daemon's code and message


def test_duplicate_pool_is_already_exists(session: kvshuttle.Session) -> None:
    name = pool_name()
    pool = session.create_pool(name, UNIVERSAL, 4, memory="host")
    try:
        with pytest.raises(kvshuttle.AlreadyExistsError, match=name) as caught:
            session.create_pool(name, UNIVERSAL, 4, memory="host")
        assert caught.value.code == grpc.StatusCode.ALREADY_EXISTS
        assert caught.value.message.startswith("CreatePool: ")
    finally:
        pool.destroy()


def test_unknown_pool_is_not_found(session: kvshuttle.Session) -> None:
    with pytest.raises(kvshuttle.NotFoundError, match="no such pool"):
        session.pool("pytest-never-created")
    with pytest.raises(kvshuttle.NotFoundError):
        session.allocate_blocks("pytest-never-created", 1)


def test_pool_out_of_blocks_is_resource_exhausted(session: kvshuttle.Session) -> None:
    pool = session.create_pool(pool_name(), UNIVERSAL, 3, memory="host")
    try:
        ids = pool.allocate(3)
        assert sorted(ids) == [0, 1, 2] and pool.refresh().blocks_in_use == 3
        with pytest.raises(kvshuttle.ResourceExhaustedError):
            pool.allocate(1)
        pool.free(ids[:2])
        assert pool.refresh().blocks_in_use == 1
    finally:
        pool.destroy()
    with pytest.raises(kvshuttle.NotFoundError):
        pool.refresh()


def test_bad_ipc_handle_is_invalid_argument(session: kvshuttle.Session) -> None:
    with pytest.raises(kvshuttle.InvalidArgumentError, match="64") as caught:
        session.register_cuda_ipc(b"\0" * 63, "GPU-00000000-0000-0000-0000-000000000000", 0, 1)
    assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert isinstance(caught.value, ValueError)


def test_missing_shm_object_is_not_found(session: kvshuttle.Session) -> None:
    with pytest.raises(kvshuttle.NotFoundError, match="shm_open"):
        session.register_shm("/kvshuttle-py-does-not-exist", 0, 4096)


def test_block_id_beyond_the_block_set_is_out_of_range(session: kvshuttle.Session) -> None:
    src = [kvshuttle.shm_empty(UNIVERSAL.slot_shape, np.float16) for _ in range(2)]
    blocks = session.register_buffers(src, UNIVERSAL)
    pool = session.create_pool(pool_name(), UNIVERSAL, 4, memory="host")
    try:
        with pytest.raises(kvshuttle.OutOfRangeError) as caught:
            session.offload(blocks, [2], pool, [0])
        assert caught.value.code == grpc.StatusCode.OUT_OF_RANGE
    finally:
        pool.destroy()
        blocks.close()


# ---------------------------------------------------------------------------------------------
# The streaming channel


def test_attached_session_submits_and_completes_over_the_channel() -> None:
    daemon = start_daemon(gpus=False, flags=("--log_level=debug",))
    try:
        client = kvshuttle.connect(daemon.target)
        with client.session("pytest-channel") as session:
            assert session.over_channel
            src = [kvshuttle.shm_empty(UNIVERSAL.slot_shape, np.float16) for _ in range(2)]
            for i, array in enumerate(src):
                array[...] = np.arange(array.size).reshape(array.shape) % 251 + i
            blocks = session.register_buffers(src, UNIVERSAL)
            pool = session.create_pool(pool_name(), UNIVERSAL, 4, memory="host")
            back = [kvshuttle.shm_zeros(UNIVERSAL.slot_shape, np.float16) for _ in range(2)]
            returned = session.register_buffers(back, UNIVERSAL)
            ids = pool.allocate(2)
            for _ in range(20):
                session.offload(blocks, [0, 1], pool, ids).result(timeout=30)
            session.onboard(pool, ids, returned, [1, 0]).result(timeout=30)
            assert np.array_equal(back[0], src[1]) and np.array_equal(back[1], src[0])
            with pytest.raises(kvshuttle.OutOfRangeError):
                session.offload(blocks, [2], pool, [ids[0]])  # rejected on the channel
            session.offload(blocks, [0], pool, [ids[0]]).result(timeout=30)  # still serving
            pool.destroy()
        log = daemon.log()
        assert "method=CreatePool" in log, "the debug log does not name RPCs"
        assert "method=SubmitBatch" not in log and "method=Wait" not in log
    finally:
        daemon.stop()


def test_unattached_session_uses_the_unary_calls(cpu_daemon: DaemonProcess) -> None:
    with kvshuttle.connect(cpu_daemon.target).session("pytest-unary", attach=False) as session:
        assert not session.over_channel
        src = [kvshuttle.shm_empty(UNIVERSAL.slot_shape, np.float16) for _ in range(2)]
        blocks = session.register_buffers(src, UNIVERSAL)
        pool = session.create_pool(pool_name(), UNIVERSAL, 2, memory="host")
        try:
            assert session.offload(blocks, [0, 1], pool, pool.allocate(2)).result(timeout=30).ok
        finally:
            pool.destroy()


# ---------------------------------------------------------------------------------------------
# Regions and block sets


def test_register_tensor_uses_one_region_per_shm_object(session: kvshuttle.Session) -> None:
    arena = kvshuttle.HostArena(1 << 20)
    a, b = arena.empty((64,), np.float32), arena.empty((16, 16), np.float16)
    c = kvshuttle.shm_empty((128,), np.uint8)
    registration = session.register_tensor(a, b, c, name="pytest-reg")
    assert len(registration.regions) == 2 and registration.memory == "host"
    listed = {r.region_id: r for r in session.list_regions()}
    assert set(listed) == {r.region_id for r in registration.regions}
    assert {r.name for r in listed.values()} == {"pytest-reg.0", "pytest-reg.1"}
    # a and b share the arena's region; b starts 256-aligned after a.
    assert registration.placements[0].region_id == registration.placements[1].region_id
    assert registration.placements[1].offset - registration.placements[0].offset == 256
    registration.release()
    registration.release()  # idempotent
    assert session.list_regions() == []


def test_block_set_close_releases_its_memory(session: kvshuttle.Session) -> None:
    buffers = [kvshuttle.shm_empty(UNIVERSAL.slot_shape, np.float16) for _ in range(3)]
    block_set = session.register_buffers(buffers, UNIVERSAL, name="pytest-bs")
    listed = session.list_block_sets()
    assert [(b.block_set_id, b.name, b.num_blocks) for b in listed] == [
        (block_set.block_set_id, "pytest-bs", 3)]
    block_set.close()
    assert session.list_block_sets() == [] and session.list_regions() == []


def test_register_blocks_checks_chunks_against_the_layout(session: kvshuttle.Session) -> None:
    nhd = UNIVERSAL.replace("nhd")
    chunks = [[kvshuttle.shm_empty(nhd.slot_shape, np.float16) for _ in range(3)]]
    with pytest.raises(ValueError, match=r"blocks\[0\]: 3 chunks; layout .* has nl\*no = 4"):
        session.register_blocks(chunks, nhd)
    chunks = [[kvshuttle.shm_empty(nhd.slot_shape, np.float32) for _ in range(4)]]
    with pytest.raises(ValueError, match=r"blocks\[0\]\[0\]: dtype f32; layout says f16"):
        session.register_blocks(chunks, nhd)
    with pytest.raises(ValueError, match="register_blocks takes an NHD or HND layout"):
        session.register_blocks(chunks, UNIVERSAL)
    with pytest.raises(ValueError, match="register_buffers takes a universal or operational"):
        session.register_buffers([], nhd)


# ---------------------------------------------------------------------------------------------
# vLLM cache registration: argument checks


@pytest.mark.parametrize("bad, kwargs, error, pattern", [
    ("not-a-list", {}, TypeError, r"kv_caches: expected a non-empty list"),
    ([], {}, TypeError, r"kv_caches: expected a non-empty list .*\(empty\)"),
    ([np.zeros((3, 4, 2, 4, 8), np.float16)], {}, ValueError,
     r"kv_caches\[0\]: shape \(3, 4, 2, 4, 8\); the K/V axis \(0\) must be 2"),
    ([np.zeros((4, 3, 2, 4, 8), np.float16)], {"kv_first": False}, ValueError,
     r"the K/V axis \(1\) must be 2"),
    ([np.zeros((4, 8), np.float16)], {}, ValueError, r"has rank 2"),
    ([np.zeros((2, 4, 2, 4, 16), np.float16)[..., ::2]], {}, ValueError,
     r"kv_caches\[0\]: strides .* must be contiguous in NHD .* or HND"),
    ([np.zeros((2, 4, 2, 4, 8), np.float16), np.zeros((2, 5, 2, 4, 8), np.float16)], {},
     ValueError, r"kv_caches\[1\]: shape \(2, 5, 2, 4, 8\) .* differ from kv_caches\[0\]"),
    ([np.zeros((2, 4, 2, 4, 8), np.float16), np.zeros((2, 4, 2, 4, 8), np.float32)], {},
     ValueError, r"kv_caches\[1\]: dtype float32, but kv_caches\[0\] is float16"),
    ([np.zeros((2, 4, 2, 4, 8), np.float16)], {"layout": "universal"}, ValueError,
     r"layout: 'universal'; a vLLM cache is 'NHD' or 'HND'"),
    ([np.zeros((2, 4, 2, 4, 8), np.float16)], {}, ValueError,
     r"kv_caches\[0\]: host memory .* is not kvshuttle shared memory"),
])
def test_vllm_cache_arguments(session: kvshuttle.Session, bad, kwargs, error, pattern) -> None:
    with pytest.raises(error, match=pattern) as caught:
        session.register_vllm_cache(bad, **kwargs)
    assert type(caught.value) is error


def test_offload_arguments(session: kvshuttle.Session) -> None:
    cache_tensor = kvshuttle.shm_empty((2, 4, 4, 3, 5), np.float16)
    cache = session.register_vllm_cache([cache_tensor] * 2)
    try:
        with pytest.raises(ValueError, match="block_ids has 2 ids but pool_block_ids has 1"):
            session.offload(cache, [0, 1], "p", [0])
        with pytest.raises(TypeError, match="cache: expected a BlockSet"):
            session.offload([cache_tensor], [0], "p", [0])
        with pytest.raises(ValueError, match="stream: only for caches in GPU memory"):
            session.offload(cache, [0], "p", [0], stream=object())
        with pytest.raises(ValueError, match=r"heads: slice\(3, 3, None\) is empty"):
            session.offload(cache, [0], "p", [0], heads=slice(3, 3))
        with pytest.raises(TypeError, match="heads: expected a kvshuttle.Span"):
            session.offload(cache, [0], "p", [0], heads=4)
        with pytest.raises(ValueError, match=r"^block_ids\[0\]: -1; allowed: 0 to 4294967295"):
            session.offload(cache, [-1], "p", [0])
        with pytest.raises(ValueError, match="^backend: 'gpu'; allowed"):
            session.offload(cache, [0], "p", [0], backend="gpu")
        assert session.offload(cache, [], "p", []).results() == []
    finally:
        cache.close()


def test_span_for_tensor_parallel_ranks() -> None:
    assert kvshuttle.Span.tp(0, 4, 8) == kvshuttle.Span(0, 0, 2)
    assert kvshuttle.Span.tp(3, 4, 8) == kvshuttle.Span(0, 6, 2)
    assert kvshuttle.Span.tp(1, 3, 12) == kvshuttle.Span(0, 4, 4)
    with pytest.raises(ValueError, match="must be ≥ 1 and divide num_heads"):
        kvshuttle.Span.tp(0, 3, 8)
    with pytest.raises(ValueError, match="rank: 4; allowed: 0 to 3"):
        kvshuttle.Span.tp(4, 4, 8)


# ---------------------------------------------------------------------------------------------
# Futures


def _slow_jobs(session: kvshuttle.Session, pairs: int) -> tuple[kvshuttle.Job, kvshuttle.Job]:
    """An NHD → HND transpose of 1-byte rows repeated over one block pair (seconds of CPU
    work for one executor thread), and a small job to queue behind it."""
    nhd = kvshuttle.Layout.of("nhd", nl=1, no=1, nt=256, nh=256, hd=1, dtype="uint8")
    src = session.register_blocks([[kvshuttle.shm_empty(nhd.slot_shape, np.uint8)]], nhd)
    dst = session.register_blocks([[kvshuttle.shm_empty(nhd.slot_shape, np.uint8)]],
                                  nhd.replace("hnd"))
    return kvshuttle.Job(src, dst, [(0, 0)] * pairs), kvshuttle.Job(src, dst, [(0, 0)])


def test_future_times_out_is_cancelled_and_finishes() -> None:
    daemon = start_daemon(gpus=False, flags=("--cpu_threads=1",))
    try:
        with daemon.connect() as client, client.session("pytest-slow") as session:
            slow, small = _slow_jobs(session, pairs=4000)
            running = session.submit([slow])
            queued = session.submit([small])
            assert not queued.wait(timeout=0.05) and not queued.done()
            with pytest.raises(kvshuttle.DeadlineExceededError):
                queued.results(timeout=0.05)
            assert queued.cancel() == queued.job_ids
            with pytest.raises(kvshuttle.JobError, match="cancelled") as caught:
                queued.result(timeout=30)
            assert caught.value.result.state == "cancelled"
            result = running.result(timeout=120)
            assert result.ok and result.executor == "cpu" and result.bytes == 4000 * 65536
            assert running.done() and running.cancel() == []
    finally:
        daemon.stop()


def test_submit_of_nothing_is_done_at_once(session: kvshuttle.Session) -> None:
    future = session.submit([])
    assert future.done() and future.wait(0) and future.results() == []
    with pytest.raises(ValueError, match="this submission has 0 jobs"):
        future.result()


# ---------------------------------------------------------------------------------------------
# Shared memory


def _fd_of(name: str) -> str | None:
    """The /proc/self/fd entry of this process's memfd `name`, or None."""
    for entry in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{entry}") == f"/memfd:{name} (deleted)":
                return entry
        except OSError:
            continue
    return None


def test_host_objects_are_sealed_private_memfds_that_go_with_their_arrays() -> None:
    array = kvshuttle.shm_empty((32,), np.float64)
    location = kvshuttle.shm.find(array.ctypes.data, array.nbytes)
    assert location is not None and location.offset == 0
    assert not os.path.exists("/dev/shm/" + location.name), "memfds have no name in /dev/shm"
    fd = kvshuttle.shm.dup_fd(location.name)
    try:
        assert os.fstat(fd).st_mode & 0o777 == 0o600
        assert fcntl.fcntl(fd, fcntl.F_GET_SEALS) == kvshuttle.shm.SEALS
        with pytest.raises(PermissionError):
            os.ftruncate(fd, 0)  # sealed: nobody can shrink memory the daemon maps
    finally:
        os.close(fd)
    view = array[8:]
    del array
    gc.collect()
    assert _fd_of(location.name) is not None, "a view keeps the object"
    del view
    gc.collect()
    assert _fd_of(location.name) is None
    assert kvshuttle.shm.find(location.offset, 1) is None


def test_closed_segment_can_no_longer_be_registered(session: kvshuttle.Session) -> None:
    segment = kvshuttle.SharedMemory(4096)
    array = segment.array((16, 16), np.float16)
    assert kvshuttle.shm.find(array.ctypes.data, array.nbytes).name == segment.name
    segment.close()
    with pytest.raises(ValueError, match="is closed"):
        kvshuttle.shm.dup_fd(segment.name)  # (Python < 3.13's mmap keeps a private dup)
    array[...] = 1  # still mapped here
    with pytest.raises(ValueError, match="is not kvshuttle shared memory"):
        session.register_tensor(array)
    with pytest.raises(ValueError, match="is closed"):
        segment.array((1,))


def test_host_memory_reaches_the_daemon_as_a_memfd(session: kvshuttle.Session) -> None:
    src = kvshuttle.shm_empty((4096,), np.uint8)
    src[...] = np.arange(4096) % 251
    registration = session.register_tensor(src)
    try:
        [region] = registration.regions
        assert region.memory == "host" and region.size == 4096, region
    finally:
        registration.release()


def test_unsealed_memfd_is_refused(session: kvshuttle.Session) -> None:
    fd = os.memfd_create("kvshuttle-test-unsealed", os.MFD_CLOEXEC | os.MFD_ALLOW_SEALING)
    try:
        os.ftruncate(fd, 8192)
        with pytest.raises(kvshuttle.FailedPreconditionError, match="SHRINK"):
            session.register_fd(fd, 0, 4096)
    finally:
        os.close(fd)


def test_side_channel_refuses_a_token_twice_and_an_unknown_token(
        session: kvshuttle.Session) -> None:
    segment = kvshuttle.SharedMemory(4096)
    fd = segment.dup_fd()
    try:
        grant = session._call("CreateFdToken", pb.CreateFdTokenRequest())
        kvshuttle.fdchannel.send_fds(grant.socket_path, grant.token, [fd])
        with pytest.raises(kvshuttle.FailedPreconditionError):
            kvshuttle.fdchannel.send_fds(grant.socket_path, grant.token, [fd])
        with pytest.raises(kvshuttle.NotFoundError):
            kvshuttle.fdchannel.send_fds(grant.socket_path, b"\0" * 16, [fd])
        with pytest.raises(ValueError, match="16"):
            kvshuttle.fdchannel.send_fds(grant.socket_path, b"short", [fd])
        region = session.register_memfd(grant.token, 0, 0, 4096)
        assert region.size == 4096
        with pytest.raises(kvshuttle.KvshuttleError):
            session.register_memfd(grant.token, 0, 0, 4096)  # each descriptor is used once
    finally:
        os.close(fd)
        segment.close()


def test_arena_aligns_and_refuses_overflow() -> None:
    arena = kvshuttle.HostArena(4096, alignment=512)
    first = arena.empty((3,), np.uint8)
    second = arena.zeros((10,), np.float32)
    assert second.ctypes.data - first.ctypes.data == 512 and not second.any()
    with pytest.raises(MemoryError, match="HostArena: 4096 bytes requested, 3072 of 4096 left"):
        arena.empty((4096,), np.uint8)
    with pytest.raises(ValueError, match="power of two"):
        kvshuttle.HostArena(4096, alignment=48)
    with pytest.raises(ValueError, match="exceed its"):
        arena.segment.array((4097,), np.uint8)

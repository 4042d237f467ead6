"""CUDA-only behaviour (gpu tier): IPC registration of torch tensors (UUID, offsets, one share
per storage, torch's consumer counter given back), GPU-side completion through CUDA IPC
events on a torch stream, the refusal of expandable-segment memory, device checks."""
from __future__ import annotations

import gc
import os
import subprocess
import sys
import textwrap
import uuid
from typing import Any, Iterator

import pytest

import kvshuttle
from baseline import (Shape, bytes_equal, cache_block, describe_difference,
                      stack_to_universal)
from conftest import require_cuda
from daemon import DaemonProcess

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def torch() -> Any:
    return require_cuda()


@pytest.fixture(scope="module")
def kvs_cuda(torch) -> Any:
    """kvshuttle.cuda (it imports torch, so only the gpu tier imports it)."""
    from kvshuttle import cuda
    return cuda


@pytest.fixture(scope="module")
def session(torch, gpu_daemon: DaemonProcess) -> Iterator[kvshuttle.Session]:
    with gpu_daemon.connect() as client, client.session("pytest-cuda") as opened:
        yield opened


def random_tensor(torch, shape: tuple[int, ...], dtype: Any, seed: int) -> Any:
    generator = torch.Generator(device="cuda").manual_seed(seed)
    itemsize = torch.empty((), dtype=dtype).element_size()
    count = 1
    for d in shape:
        count *= d
    raw = torch.randint(0, 256, (count * itemsize,), dtype=torch.uint8, device="cuda",
                        generator=generator)
    return raw.view(dtype).reshape(shape)


def test_registered_tensor_is_device_memory_of_the_daemons_gpu(torch, kvs_cuda, session,
                                                               gpu_daemon) -> None:
    big = torch.empty(3 << 20, dtype=torch.uint8, device="cuda")
    view = big[4096 + 128:]  # a nonzero offset inside the allocation
    registration = session.register_tensor(view)
    try:
        (region,) = registration.regions
        assert region.memory == "device"
        assert region.gpu_uuid == gpu_daemon.info.devices[0].uuid
        assert region.gpu_uuid == kvs_cuda.gpu_uuid(0)
        assert region.size == view.numel()
        assert registration.placements[0].offset == 0
    finally:
        registration.release()


def test_one_share_per_storage_and_torch_gets_its_counter_back(torch, kvs_cuda,
                                                               session) -> None:
    torch.cuda.synchronize()
    baseline = torch.cuda.memory_allocated()
    tensor = torch.empty(8 << 20, dtype=torch.uint8, device="cuda")
    first = kvs_cuda.share(tensor, "tensor")
    assert kvs_cuda.share(tensor[1024:], "view") is first  # cached for the storage
    assert len(first.handle) == kvs_cuda.IPC_HANDLE_BYTES
    key = tensor.untyped_storage()._cdata
    registration = session.register_tensor(tensor)
    registration.release()
    del tensor
    gc.collect()
    assert key not in kvs_cuda._shares
    torch.cuda.ipc_collect()  # frees blocks whose consumers all let go
    assert torch.cuda.memory_allocated() == baseline, "the shared block stayed in torch's limbo"


def test_seed_call_on_a_stream_orders_later_work_on_the_gpu(torch, session) -> None:
    nb, nl, no, nt, nh, hd = 16, 8, 2, 16, 8, 128
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        blocks = [[random_tensor(torch, (nt, nh, hd), torch.bfloat16, 100 * b + c)
                   for c in range(nl * no)] for b in range(nb)]
        universals = [torch.zeros((nh, nl, no, nt, hd), dtype=torch.bfloat16, device="cuda")
                      for _ in range(nb)]
    future = kvshuttle.block_to_universal(blocks, universals, session=session, stream=stream)
    assert isinstance(future, kvshuttle.JobFuture)
    with torch.cuda.stream(stream):
        copies = [u.clone() for u in universals]  # runs after the daemon's copy, on the GPU
    result = future.result(timeout=60)
    assert result.ok and result.executor.startswith("gpu:")
    stream.synchronize()
    for i in range(nb):
        expected = stack_to_universal(blocks[i], Shape(nb, nl, no, nt, nh, hd), "NHD")
        assert bytes_equal(copies[i], expected), describe_difference(copies[i], expected)
    assert session.list_regions() == []


def test_offload_and_onboard_on_a_stream(torch, session) -> None:
    """offload → pool → onboard with stream=: a clone enqueued right after onboard returns
    sees the onboarded data (32 MiB per direction, so an unordered clone would not)."""
    nl, nb, nt, nh, hd = 8, 64, 16, 8, 128
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        source = [random_tensor(torch, (2, nb, nt, nh, hd), torch.bfloat16, l) for l in range(nl)]
        target = [torch.zeros((2, nb, nt, nh, hd), dtype=torch.bfloat16, device="cuda")
                  for _ in range(nl)]
    src_cache = session.register_vllm_cache(source)
    dst_cache = session.register_vllm_cache(target)
    pool = session.create_pool(f"pytest-stream-{uuid.uuid4().hex[:8]}",
                               src_cache.layout.replace("universal"), nb)
    try:
        ids = pool.allocate(nb)
        blocks = list(range(nb))
        offload = session.offload(src_cache, blocks, pool, ids, stream=stream)
        onboard = session.onboard(pool, ids, dst_cache, blocks[::-1], stream=stream)
        with torch.cuda.stream(stream):
            snapshot = [t.clone() for t in target]
        assert offload.result(60).ok and onboard.result(60).ok
        stream.synchronize()
        for b in range(nb):
            got = cache_block(snapshot, nb - 1 - b, "NHD", True)
            want = cache_block(source, b, "NHD", True)
            assert bytes_equal(got, want), f"block {b}: {describe_difference(got, want)}"
    finally:
        pool.destroy()
        src_cache.close()
        dst_cache.close()


def test_offload_on_a_busy_stream_starts_after_it_without_a_cpu_sync(torch, kvs_cuda, session,
                                                                      monkeypatch) -> None:
    """stream= sends a start event instead of synchronizing: with the stream held by a
    sleeping kernel and the cache written after it on the same stream, the submit must not
    synchronize the stream (cuda.synchronize is made to fail) and the offload must still
    convert the bytes written after the sleep (it would read the zeros if it started early)."""
    nl, nb, nt, nh, hd = 4, 16, 16, 8, 128
    stream = torch.cuda.Stream()
    cache = [torch.zeros((2, nb, nt, nh, hd), dtype=torch.bfloat16, device="cuda")
             for _ in range(nl)]
    fresh = [random_tensor(torch, (2, nb, nt, nh, hd), torch.bfloat16, 70 + l)
             for l in range(nl)]
    torch.cuda.synchronize()
    registered = session.register_vllm_cache(cache)
    pool = session.create_pool(f"pytest-start-{uuid.uuid4().hex[:8]}",
                               registered.layout.replace("universal"), nb)
    back = [torch.zeros_like(t) for t in cache]
    back_cache = session.register_vllm_cache(back)
    torch.cuda.synchronize()

    def no_sync(_stream: Any) -> None:
        raise AssertionError("submit synchronized the stream instead of sending a start event")

    monkeypatch.setattr(kvs_cuda, "synchronize", no_sync)
    try:
        ids = pool.allocate(nb)
        blocks = list(range(nb))
        with torch.cuda.stream(stream):
            torch.cuda._sleep(200_000_000)  # about 0.1 s of GPU time before the write
            for t, f in zip(cache, fresh):
                t.copy_(f)
        offload = session.offload(registered, blocks, pool, ids, stream=stream)
        assert offload.result(60).ok
        monkeypatch.undo()
        onboarded = session.onboard(pool, ids, back_cache, blocks)
        assert onboarded.result(60).ok
        for b in range(nb):
            got = cache_block(back, b, "NHD", True)
            want = cache_block(fresh, b, "NHD", True)
            assert bytes_equal(got, want), f"block {b}: {describe_difference(got, want)}"
    finally:
        pool.destroy()
        registered.close()
        back_cache.close()


def test_stream_argument_is_checked(torch, session) -> None:
    cache = session.register_vllm_cache([torch.zeros((2, 4, 4, 2, 8), device="cuda",
                                                     dtype=torch.float16)])
    try:
        with pytest.raises(TypeError, match="stream: expected a torch.cuda.Stream, got str"):
            session.offload(cache, [0], "pool", [0], stream="default")
    finally:
        cache.close()


def test_mixed_devices_are_refused(torch) -> None:
    blocks = [[torch.zeros((4, 3, 5), dtype=torch.float16, device="cuda") for _ in range(4)]]
    universals = [kvshuttle.shm_empty((3, 2, 2, 4, 5), torch.float16)]
    with pytest.raises(ValueError, match=r"^universals\[0\]: on cpu, but blocks\[0\]\[0\] is on "
                                         r"cuda:0; all tensors of a call must be on one device"):
        kvshuttle.block_to_universal(blocks, universals)


def test_device_and_pinned_host_memory_convert(torch, session) -> None:
    """A vLLM cache on the GPU offloaded into a pinned host pool and back."""
    nl, nb, nt, nh, hd = 2, 4, 16, 4, 64
    source = [random_tensor(torch, (nb, 2, nh, nt, hd), torch.float16, 40 + l)
              for l in range(nl)]
    target = [torch.zeros_like(t) for t in source]
    torch.cuda.synchronize()
    src = session.register_vllm_cache(source, layout="HND", kv_first=False)
    dst = session.register_vllm_cache(target, layout="HND", kv_first=False)
    pool = session.create_pool(f"pytest-host-{uuid.uuid4().hex[:8]}",
                               src.layout.replace("universal"), nb, memory="host")
    try:
        ids = pool.allocate(nb)
        session.offload(src, range(nb), pool, ids).result(60)
        session.onboard(pool, ids, dst, range(nb)).result(60)
        for t, s in zip(target, source):
            assert bytes_equal(t, s)
    finally:
        pool.destroy()
        src.close()
        dst.close()


def test_expandable_segments_are_refused_with_the_fix(torch, gpu_daemon) -> None:
    script = textwrap.dedent(f"""
        import torch, kvshuttle
        cache = [torch.zeros((2, 4, 16, 2, 8), dtype=torch.float16, device="cuda")]
        with kvshuttle.connect({gpu_daemon.target!r}) as client:
            with client.session("pytest-vmm") as session:
                try:
                    session.register_vllm_cache(cache)
                except ValueError as error:
                    print("REFUSED:", type(error).__name__, error)
                else:
                    print("ACCEPTED")
    """)
    env = dict(os.environ, PYTORCH_CUDA_ALLOC_CONF="expandable_segments:True",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          env=env, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "REFUSED:" in done.stdout, done.stdout + done.stderr
    assert "expandable" in done.stdout and "expandable_segments" in done.stdout

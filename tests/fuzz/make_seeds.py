#!/usr/bin/python3
"""Writes the seed corpus of the fuzz targets: tests/fuzz/corpus/<target>/<name>.

Each seed is one input in the target's own format: a binary kvshuttle.v1 request message
(block_set, region), a binary fuzz.PlanInput / fuzz.PoolInput made of request messages (plan,
pool), or config file text (config). Seeds cover every layout, placement, memory kind and call
the target reaches, plus a few requests each validator must reject. Region ids are the fake
regions of fuzz_util.cc (1..9).

Usage: tests/fuzz/make_seeds.py [OUT_DIR]   (default: tests/fuzz/corpus next to this file)
Needs protoc and Debian's python3-protobuf (hence /usr/bin/python3). The output is
deterministic; re-run it after changing a seed and commit the result.
"""
import importlib
import os
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))

U64_MAX = (1 << 64) - 1

def load_protos(tmp):
    subprocess.run(["protoc", "-I", os.path.join(ROOT, "proto"), "-I", HERE, "--python_out", tmp,
                    os.path.join(ROOT, "proto/kvshuttle/v1/kvshuttle.proto"),
                    os.path.join(HERE, "fuzz_input.proto")], check=True)
    sys.path.insert(0, tmp)
    return (importlib.import_module("kvshuttle.v1.kvshuttle_pb2"),
            importlib.import_module("fuzz_input_pb2"))


def main():
    out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(HERE, "corpus")
    with tempfile.TemporaryDirectory() as tmp:
        v1, fz = load_protos(tmp)
        seeds = build(v1, fz)
    if os.path.isdir(out):
        shutil.rmtree(out)
    total = 0
    for target, items in seeds.items():
        os.makedirs(os.path.join(out, target))
        for name, data in items:
            if not isinstance(data, bytes):
                data = data.SerializeToString(deterministic=True)
            with open(os.path.join(out, target, name), "wb") as f:
                f.write(data)
            total += len(data)
    print(f"{sum(len(v) for v in seeds.values())} seeds, {total} bytes under {out}")


def build(v1, fz):
    dtypes = {"f16": v1.DTYPE_F16, "bf16": v1.DTYPE_BF16, "f32": v1.DTYPE_F32,
              "f64": v1.DTYPE_F64, "uint8": v1.DTYPE_UINT8}
    kinds = {"nhd": v1.LAYOUT_NHD, "hnd": v1.LAYOUT_HND,
             "operational_nhd": v1.LAYOUT_OPERATIONAL_NHD,
             "operational_hnd": v1.LAYOUT_OPERATIONAL_HND, "universal": v1.LAYOUT_UNIVERSAL}

    def layout(kind, nl, no, nt, nh, hd, dtype="bf16"):
        return v1.Layout(kind=kinds[kind], dtype=dtypes[dtype],
                         shape=v1.BlockShape(nl=nl, no=no, nt=nt, nh=nh, hd=hd))

    def chunk_bytes(l):
        s = l.shape
        es = {v1.DTYPE_F16: 2, v1.DTYPE_BF16: 2, v1.DTYPE_F32: 4, v1.DTYPE_F64: 8,
              v1.DTYPE_UINT8: 1}[l.dtype]
        return s.nt * s.nh * s.hd * es

    def is_stack(l):
        return l.kind in (v1.LAYOUT_NHD, v1.LAYOUT_HND)

    def strided(name, l, num_blocks, region, offset=0, stride=None):
        """Blocks one after another per slot; a stack's slots are num_blocks chunks apart."""
        chunk = chunk_bytes(l)
        slots = l.shape.nl * l.shape.no if is_stack(l) else 1
        piece = chunk if is_stack(l) else chunk * l.shape.nl * l.shape.no
        stride = piece if stride is None else stride
        r = v1.RegisterBlockSetRequest(name=name, layout=l, num_blocks=num_blocks)
        r.strided.block_stride = stride
        for s in range(slots):
            r.strided.slots.add(region_id=region, offset=offset + s * num_blocks * piece)
        return r

    def explicit(name, l, entries):
        """entries: (region_id, offset) per (block, slot), block-major."""
        slots = l.shape.nl * l.shape.no if is_stack(l) else 1
        r = v1.RegisterBlockSetRequest(name=name, layout=l, num_blocks=len(entries) // slots)
        for region, offset in entries:
            r.explicit_table.addresses.add(region_id=region, offset=offset)
        return r

    # --- block_set: RegisterBlockSetRequest ---------------------------------------------------
    llama_nhd = layout("nhd", 2, 2, 16, 8, 128)
    llama_uni = layout("universal", 2, 2, 16, 8, 128)
    mla = layout("universal", 2, 1, 16, 1, 576, "f16")
    small_hnd = layout("hnd", 1, 2, 4, 2, 8, "f16")  # 128-byte chunks
    small_op = layout("operational_hnd", 1, 2, 4, 2, 8, "f16")  # 256-byte blocks
    top = strided("top", layout("operational_nhd", 1, 2, 16, 4, 64, "uint8"), 4, 8,
                  offset=(1 << 32) - 4096 - 4 * 2 * 4096)
    block_set = [
        ("nhd_strided_host", strided("kv", llama_nhd, 4, 3)),
        ("universal_strided_device", strided("store", llama_uni, 8, 4)),
        ("mla_universal_device", strided("mla", mla, 4, 5)),
        ("hnd_explicit_adjacent_regions",
         explicit("adj", small_hnd, [(1, 0), (1, 128), (2, 0), (2, 128)])),
        ("operational_explicit", explicit("op", small_op, [(2, 0), (2, 4096), (3, 0)])),
        ("top_of_address_space", top),
        ("one_byte_region", explicit("one", layout("universal", 1, 1, 1, 1, 1, "uint8"),
                                     [(9, 0)])),
        ("f64_f32", strided("f", layout("operational_nhd", 3, 2, 8, 2, 16, "f64"), 2, 6)),
        # Requests the validator must reject.
        ("bad_num_blocks_0", v1.RegisterBlockSetRequest(layout=llama_uni, num_blocks=0)),
        ("bad_stride_overflow", strided("o", llama_uni, 3, 3, stride=U64_MAX // 2)),
        ("bad_offset_near_max", strided("m", llama_uni, 1, 3, offset=U64_MAX - 8)),
        ("bad_releasing_region", strided("r", llama_uni, 1, 7)),
        ("bad_mixed_places", explicit("x", small_op, [(1, 0), (4, 0)])),
        ("bad_no_placement", v1.RegisterBlockSetRequest(layout=llama_uni, num_blocks=1)),
        ("bad_unknown_region", strided("u", llama_uni, 1, 1234)),
    ]

    # --- plan: fuzz.PlanInput -----------------------------------------------------------------
    def pool(name, l, num_blocks, memory="host", uuid=""):
        return v1.CreatePoolRequest(
            name=name, layout=l, num_blocks=num_blocks,
            memory=v1.MEMORY_HOST if memory == "host" else v1.MEMORY_DEVICE, gpu_uuid=uuid)

    def job(src, dst, pairs, heads=None, layers=None, token_count=0, backend=v1.BACKEND_AUTO):
        j = v1.Job(token_count=token_count, backend=backend)
        for side, target in ((j.src, src), (j.dst, dst)):
            if isinstance(target, int):
                side.block_set_id = target
            else:
                side.pool = target
        for p in pairs:
            j.pairs.add(src_block=p[0], dst_block=p[1],
                        src_token_offset=p[2] if len(p) > 2 else 0,
                        dst_token_offset=p[3] if len(p) > 3 else 0)
        if heads:
            j.heads.CopyFrom(v1.AxisRange(src_offset=heads[0], dst_offset=heads[1], count=heads[2]))
        if layers:
            j.layers.CopyFrom(v1.AxisRange(src_offset=layers[0], dst_offset=layers[1],
                                           count=layers[2]))
        return j

    def plan(block_sets, pools, jobs):
        p = fz.PlanInput()
        p.block_sets.extend(block_sets)
        p.pools.extend(pools)
        p.batch.session_id = "fuzz"
        p.batch.jobs.extend(jobs)
        return p

    tp_rank = layout("nhd", 2, 2, 16, 2, 128)          # 2 of 8 heads
    long_blocks = layout("universal", 2, 2, 64, 8, 128)  # 64-token storage blocks
    hnd16 = layout("hnd", 2, 2, 16, 8, 128)
    op_nhd = layout("operational_nhd", 2, 2, 16, 8, 128)
    plan_seeds = [
        ("nhd_to_universal_pool", plan([strided("kv", llama_nhd, 4, 3)],
                                       [pool("store", llama_uni, 8)],
                                       [job(1, "store", [(0, 0), (1, 1), (3, 2)])])),
        ("tp_rank_head_slice", plan([strided("rank1", tp_rank, 4, 3)],
                                    [pool("store", llama_uni, 4)],
                                    [job(1, "store", [(0, 0), (1, 1)], heads=(0, 2, 2)),
                                     job("store", 1, [(2, 3)], heads=(6, 0, 2))])),
        ("token_ranges_16_into_64", plan([strided("kv", llama_nhd, 4, 3)],
                                         [pool("long", long_blocks, 2)],
                                         [job(1, "long", [(0, 0, 0, 0), (1, 0, 0, 16),
                                                          (2, 0, 0, 32), (3, 0, 0, 48)]),
                                          job("long", 1, [(0, 2, 16, 0)], token_count=16)])),
        ("layer_range", plan([strided("a", hnd16, 2, 3), strided("b", op_nhd, 2, 4)], [],
                             [job(1, 2, [(0, 1), (1, 0)], layers=(1, 0, 1)),
                              job(2, 1, [(0, 0)], layers=(0, 1, 1), heads=(3, 3, 4))])),
        ("hnd_to_operational", plan([strided("a", hnd16, 2, 3), strided("b", op_nhd, 2, 3)], [],
                                    [job(1, 2, [(0, 0), (1, 1)], backend=v1.BACKEND_BATCH)])),
        ("mla", plan([strided("m", mla, 4, 5)],
                     [pool("latent", layout("operational_nhd", 2, 1, 16, 1, 576, "f16"), 4,
                           "device")],
                     [job(1, "latent", [(0, 0), (1, 1), (2, 2), (3, 3)])])),
        ("adjacent_regions", plan([explicit("adj", small_hnd, [(1, 0), (1, 128), (2, 0), (2, 128)]),
                                   explicit("op", small_op, [(2, 1024), (2, 1280)])], [],
                                  [job(1, 2, [(0, 0), (1, 1)]),
                                   job(2, 1, [(0, 1), (1, 0)], backend=v1.BACKEND_ASYNC)])),
        ("top_of_address_space", plan([top, strided("kv", layout("hnd", 1, 2, 16, 4, 64, "uint8"),
                                                    4, 3)], [],
                                      [job(1, 2, [(0, 3), (3, 0)])])),
        ("bad_ranges", plan([strided("kv", llama_nhd, 4, 3)], [pool("store", llama_uni, 8)],
                            [job(1, "store", [(0, 0)], heads=(0, 7, 2)),
                             job(1, "store", [(0, 9)]),
                             job(1, "store", [(0, 0, 15, 0)], token_count=2),
                             job(1, "nowhere", [(0, 0)]),
                             job(7, 1, [(0, 0)]),
                             job(1, "store", [(0, 0)], backend=99)])),
    ]

    # --- region: RegisterRegionRequest --------------------------------------------------------
    gpu0 = "GPU-00000000-0000-0000-0000-000000000000"

    def ipc(handle_bytes, offset=0, size=1 << 20, uuid=gpu0):
        r = v1.RegisterRegionRequest(session_id="fuzz", name="r")
        handle = bytes((7 * i + 1) % 256 for i in range(handle_bytes))
        r.cuda_ipc.CopyFrom(v1.CudaIpcMemory(handle=handle, gpu_uuid=uuid, offset=offset,
                                             size=size))
        return r

    def shm(name, offset=0, size=4096):
        r = v1.RegisterRegionRequest(session_id="fuzz", name="r")
        r.host_shm.CopyFrom(v1.HostShmMemory(name=name, offset=offset, size=size))
        return r

    region = [
        ("ipc_valid", ipc(64)),
        ("ipc_valid_other_gpu", ipc(64, offset=4096, uuid="GPU-11111111-1111-1111-1111-111111111111")),
        ("ipc_unknown_uuid", ipc(64, uuid="GPU-deadbeef")),
        ("ipc_63", ipc(63)),
        ("ipc_65", ipc(65)),
        ("ipc_0", ipc(0)),
        ("ipc_size_0", ipc(64, size=0)),
        ("ipc_offset_overflow", ipc(64, offset=U64_MAX - 3, size=8)),
        ("shm_valid", shm("/kvs-worker-3")),
        ("shm_offset", shm("/kvs", offset=1 << 30, size=1 << 20)),
        ("shm_slash_only", shm("/")),
        ("shm_dotdot", shm("/..")),
        ("shm_two_slashes", shm("/a/b")),
        ("shm_no_slash", shm("kvs")),
        ("shm_nul", shm("/kv\0s")),
        ("shm_256", shm("/" + "n" * 255)),
        ("shm_size_0", shm("/kvs", size=0)),
        ("shm_overflow", shm("/kvs", offset=U64_MAX, size=1)),
    ]

    # --- pool: fuzz.PoolInput -----------------------------------------------------------------
    def calls(*items):
        p = fz.PoolInput()
        for kind, msg in items:
            getattr(p.calls.add(), kind).CopyFrom(msg)
        return p

    def alloc(name, count):
        return ("allocate", v1.AllocateBlocksRequest(session_id="fuzz", pool=name, count=count))

    def free(name, ids):
        return ("free", v1.FreeBlocksRequest(session_id="fuzz", pool=name, block_ids=ids))

    def destroy(name):
        return ("destroy", v1.DestroyPoolRequest(session_id="fuzz", name=name))

    def create(*args, **kw):
        return ("create", pool(*args, **kw))

    pool_seeds = [
        ("lifecycle", calls(create("store", llama_uni, 16), alloc("store", 4),
                            free("store", [0, 1]), alloc("store", 3), free("store", [2, 3, 0]),
                            destroy("store"), alloc("store", 1))),
        ("device_pools", calls(create("d0", mla, 8, "device"),
                               create("d1", small_op, 4, "device",
                                      "GPU-11111111-1111-1111-1111-111111111111"),
                               create("dx", small_op, 4, "device", "GPU-nope"),
                               alloc("d1", 4), alloc("d1", 1), free("d1", [3, 3]))),
        ("operational_layouts", calls(create("op-nhd", op_nhd, 2), create("op.hnd", small_op, 64),
                                      alloc("op.hnd", 64), free("op.hnd", [63, 64]))),
        ("errors", calls(create("bad name!", llama_uni, 2), create("", llama_uni, 2),
                         create("z", llama_uni, 0), create("z", llama_uni, 1 << 25),
                         create("z", llama_uni, 2, "nowhere"), create("z", llama_uni, 2),
                         create("z", llama_uni, 2), free("z", [0]), alloc("z", 0),
                         destroy("y"))),
        ("quota", calls(*[create(f"p{i}", small_op, 2) for i in range(6)])),
        ("long_names", calls(create("n" * 100, llama_uni, 2), alloc("m" * 100, 1),
                             destroy("d" * 100), free("f" * 100, [0]))),
        ("huge_blocks", calls(create("big", layout("universal", 4096, 2, 4096, 64, 1024, "f64"), 2),
                              create("many", layout("universal", 1, 1, 1, 1, 1, "uint8"), 4096))),
    ]

    # --- config: config file text -------------------------------------------------------------
    with open(os.path.join(ROOT, "deploy/systemd/kvshuttled.conf"), "rb") as f:
        shipped = f.read()
    config = [
        ("shipped_kvshuttled_conf", shipped),
        ("quotes_and_comments", b'# comment\nlisten = "unix:/tmp/a #b.sock"  # trailing\n'
                                b'log_format=json\n\n  cpu_threads = 4 # four\nempty =\n'
                                b'spaced = "  x  "\n'),
        ("command_line", b"--fuzz_bool\n--fuzz_string\nvalue\n-fuzz_int=3\n--nofuzz_bool\n--\n"),
        ("bad_unterminated_quote", b'listen = "unix:/tmp/x\n'),
        ("bad_repeated_key", b"a = 1\nb = 2\na = 3\n"),
        ("bad_no_equals", b"listen unix:/tmp/x\n"),
        ("bad_key", b"lis-ten = x\n"),
        ("bad_after_quote", b'a = "x" y\n'),
    ]

    return {"block_set": block_set, "plan": plan_seeds, "region": region, "pool": pool_seeds,
            "config": config}


if __name__ == "__main__":
    main()

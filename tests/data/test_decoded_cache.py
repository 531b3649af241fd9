"""The decoded-image cache (``harness.data.base``): one memory-mapped file per dataset content,
splits as views of it, shared by worker processes through the page cache, rebuilt when broken."""
from __future__ import annotations

import hashlib
import multiprocessing as mp
import os
import sys
from pathlib import Path

import pytest
import torch

from harness.data import build_transform, iterate_batches, load_dataset
from tests.data.makers import make_rafdb

SIZE = 128


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("FERBENCH_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _rafdb(root: Path) -> Path:
    lines = [(f"train_{i:05d}.jpg", 1 + i % 7) for i in range(1, 21)] + \
        [(f"test_{i:05d}.jpg", 1 + i % 7) for i in range(1, 6)]
    return make_rafdb(root, lines)


def _mappings(path: str) -> list[tuple[int, int]]:
    """Address ranges of this process's mappings of ``path`` (from /proc/self/maps)."""
    out = []
    with open("/proc/self/maps") as f:
        for line in f:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].strip() == path:
                lo, hi = (int(v, 16) for v in parts[0].split("-"))
                out.append((lo, hi))
    return out


def _smaps(path: str) -> dict[str, int]:
    """kB of this process's mappings of ``path`` by kind, summed (from /proc/self/smaps)."""
    totals, inside = dict.fromkeys(("Rss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty"), 0), False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                inside = len(head) == 6 and head[5] == path
            elif inside and head[0].rstrip(":") in totals:
                totals[head[0].rstrip(":")] += int(head[1])
    return totals


def _sha(path: str) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/maps")


@linux
def test_splits_are_views_of_one_mapped_file_and_equal_the_uncached_load(tmp_path, cache):
    root = _rafdb(tmp_path / "raf")
    plain = load_dataset("rafdb", root, decode_size=SIZE, cache=False)
    assert plain.decoded_cache is None and not cache.exists()
    first = load_dataset("rafdb", root, decode_size=SIZE)  # decodes and writes the file
    again = load_dataset("rafdb", root, decode_size=SIZE)  # maps it
    assert first.decoded_cache == again.decoded_cache and Path(again.decoded_cache).parent == cache / "decoded"
    assert plain.fingerprint == first.fingerprint == again.fingerprint
    ranges = _mappings(again.decoded_cache)
    for name in ("train", "val", "test"):
        a, b = plain.splits[name], again.splits[name]
        assert torch.equal(a.images, b.images) and torch.equal(a.labels, b.labels) and a.names == b.names
        ptr = b.images.data_ptr()
        assert any(lo <= ptr < hi for lo, hi in ranges)  # a view of the mapping, not a copy
    before = _sha(again.decoded_cache)
    t = build_transform("apvit", 64, train=True)
    run = lambda ds: [(x, i) for x, _, i in iterate_batches(ds.splits["train"], batch_size=16, transform=t,
                                                             seed=1, epoch=0, shuffle=True)]
    for (x1, i1), (x2, i2) in zip(run(plain), run(again)):  # index_select on the mapping: same batches
        assert torch.equal(x1, x2) and torch.equal(i1, i2)
    assert _sha(again.decoded_cache) == before  # nothing wrote to the file


def test_stale_partial_or_unwritable_cache_is_rebuilt_or_skipped(tmp_path, cache):
    root = _rafdb(tmp_path / "raf")
    ds = load_dataset("rafdb", root, decode_size=SIZE)
    path = Path(ds.decoded_cache)
    good = path.read_bytes()
    for broken in (good[: len(good) // 2], b"not a numpy file", good[:100]):  # partial, garbage, header only
        path.unlink()  # a new file: truncating the one ``ds`` maps would pull pages from under it
        path.write_bytes(broken)
        again = load_dataset("rafdb", root, decode_size=SIZE)
        assert again.fingerprint == ds.fingerprint and path.read_bytes() == good
        assert torch.equal(again.splits["test"].images, ds.splits["test"].images)
    assert not [p for p in path.parent.iterdir() if p.name.endswith(".tmp")]  # written via tmp + rename
    os.environ["FERBENCH_CACHE"] = str(path)  # a file: the cache folder cannot be made
    nowhere = load_dataset("rafdb", root, decode_size=SIZE)
    assert nowhere.decoded_cache is None and nowhere.fingerprint == ds.fingerprint
    assert torch.equal(nowhere.splits["train"].images, ds.splits["train"].images)


def test_a_decode_that_skips_an_image_is_not_cached(tmp_path, cache):
    root = _rafdb(tmp_path / "raf")
    (root / "Image" / "aligned" / "train_00003_aligned.jpg").write_bytes(b"broken")
    ds = load_dataset("rafdb", root, decode_size=SIZE, skip_bad=True)
    assert len(ds.skipped) == 1 and ds.decoded_cache is None
    assert not (cache / "decoded").exists() or not list((cache / "decoded").glob("*.npy"))
    assert load_dataset("rafdb", root, decode_size=SIZE, skip_bad=True).fingerprint == ds.fingerprint


def _worker(root: str, barrier, queue) -> None:
    torch.set_num_threads(1)  # as DataLoader workers: a forked child entering the parent's OpenMP pool hangs
    ds = load_dataset("rafdb", root, decode_size=SIZE)
    checksum = sum(int(s.images.sum()) for s in ds.splits.values())  # touch every page
    ptr = ds.splits["train"].images.data_ptr()
    barrier.wait(60)  # both have mapped and read everything
    stats = _smaps(ds.decoded_cache)
    in_mapping = any(lo <= ptr < hi for lo, hi in _mappings(ds.decoded_cache))
    barrier.wait(60)  # keep both mappings alive while the other reads its smaps
    queue.put((ds.fingerprint, ds.decoded_cache, checksum, in_mapping, stats))


@linux
def test_two_worker_processes_share_one_copy(tmp_path, cache):
    """Two processes load the same dataset at once (one decodes while the other waits on the
    lock) and map the same file: its pages count as shared in both, none as private (with the
    splits held in process memory each would hold all 1.2 MB privately)."""
    root = _rafdb(tmp_path / "raf")
    ctx = mp.get_context("fork")  # the children start from this process: no second import of torch
    barrier, queue = ctx.Barrier(2), ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(str(root), barrier, queue)) for _ in range(2)]
    for p in procs:
        p.start()
    try:
        results = [queue.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(30)
            assert p.exitcode == 0
    finally:
        for p in procs:
            if p.is_alive():
                p.kill()
    (fp_a, file_a, sum_a, in_a, smaps_a), (fp_b, file_b, sum_b, in_b, smaps_b) = results
    assert fp_a == fp_b == load_dataset("rafdb", root, decode_size=SIZE, cache=False).fingerprint
    assert file_a == file_b and sum_a == sum_b and in_a and in_b
    size_kb = os.path.getsize(file_a) / 1024  # 25 images [3, 128, 128]: 1.2 MB
    for s in (smaps_a, smaps_b):
        shared = s["Shared_Clean"] + s["Shared_Dirty"]
        private = s["Private_Clean"] + s["Private_Dirty"]
        assert shared >= 0.95 * size_kb and private <= 8, s  # every page shared; at most two private

"""Writing a stand-in anywhere, or once into the cache named by its parameters, with a
``SYNTHETIC.json`` marker that lets the loaders flag the data as synthetic."""
from __future__ import annotations

import atexit
import hashlib
import json
import os
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path


from harness.data.base import SYNTHETIC_MARKER
from harness.errors import UserError
from harness.data.synth.knobs import GENERATOR_VERSION, SCALES, make_knobs
from harness.data.synth.layouts import (_DATASET_CODE, _sizes, _write_affectnet, _write_expw, _write_faceid,
                                        _write_ferplus, _write_folders, _write_imagenet, _write_rafdb)


CACHE_ENV = "FERBENCH_CACHE"


def _tree_hash(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.name != SYNTHETIC_MARKER and not p.name.startswith(".decoded-"):
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def write_synthetic(name: str, out: str | Path, *, scale: str = "tiny", seed: int = 0, **knobs) -> Path:
    """Write a synthetic stand-in for ``name`` into ``out`` in the official layout; return it."""
    if name not in _DATASET_CODE:
        raise UserError(f"no synthetic generator for {name!r}; known: {', '.join(_DATASET_CODE)}")
    if scale not in SCALES:
        raise UserError(f"unknown scale {scale!r}; known: {', '.join(SCALES)}")
    k = make_knobs(name, **knobs)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n_train, n_test = _sizes(name, scale, k)
    if name == "rafdb":
        _write_rafdb(out, seed, k, n_train, n_test)
    elif name == "affectnet":
        _write_affectnet(out, seed, k, n_train, n_test)
    elif name == "ferplus":
        _write_ferplus(out, seed, k, n_train, n_test)
    elif name == "expw":
        _write_expw(out, seed, k, n_train, n_test)
    elif name == "faceid":
        _write_faceid(out, seed, k, n_train, n_test)
    elif name == "imagenet":
        _write_imagenet(out, seed, k, n_train, n_test)
    else:
        _write_folders(out, seed, k, name, n_train, n_test)
    marker = {"generator": "ferbench.synth", "version": GENERATOR_VERSION, "dataset": name,
              "scale": scale, "seed": seed, "knobs": asdict(k), "sizes": {"train": n_train, "test": n_test},
              "fingerprint": _tree_hash(out)}
    (out / SYNTHETIC_MARKER).write_text(json.dumps(marker, indent=1, sort_keys=True) + "\n")
    return out


def synthetic_root(name: str, *, scale: str = "tiny", seed: int = 0,
                   cache_dir: str | Path | None = None, write_cache: bool = True, **knobs) -> Path:
    """Return the cached synthetic stand-in for ``name``, generating it on first use.

    The directory is ``<cache>/<name>-<scale>-seed<seed>-<hash of knobs>`` under
    ``cache_dir``, else ``$FERBENCH_CACHE/synthetic``, else ``~/.cache/ferbench/synthetic``.
    Generation goes to a temporary directory renamed into place, so concurrent callers
    never see a half-written stand-in; a failed generation leaves nothing behind. With
    ``write_cache=False`` (``reproduce --dry-run``) a stand-in that is not cached yet is
    generated into a scratch directory outside the cache, removed when the process exits.
    """
    k = make_knobs(name, **knobs)
    if cache_dir is None:
        env = os.environ.get(CACHE_ENV)
        cache_dir = Path(env) / "synthetic" if env else Path.home() / ".cache" / "ferbench" / "synthetic"
    params = json.dumps({"v": GENERATOR_VERSION, "dataset": name, "scale": scale, "seed": seed,
                         "knobs": asdict(k)}, sort_keys=True)
    key = hashlib.sha256(params.encode()).hexdigest()[:10]
    root = Path(cache_dir).expanduser() / f"{name}-{scale}-seed{seed}-{key}"
    if (root / SYNTHETIC_MARKER).is_file():
        return root
    if not write_cache:
        scratch = Path(tempfile.mkdtemp(prefix="ferbench-dry-run-"))
        atexit.register(shutil.rmtree, scratch, ignore_errors=True)
        return write_synthetic(name, scratch / root.name, scale=scale, seed=seed, **asdict(k))
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.parent / f".{root.name}.tmp{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        write_synthetic(name, tmp, scale=scale, seed=seed, **asdict(k))
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    try:
        os.rename(tmp, root)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (root / SYNTHETIC_MARKER).is_file():
            raise
    return root

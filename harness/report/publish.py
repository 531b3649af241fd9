"""Publish the report as a self-contained static site, reproducibly; optionally commit it to a
branch of the local git repository and/or pack it into one ``.tar.gz``.

``python -m harness publish --out DIR [--git-branch gh-pages] [--archive]`` (``make publish``):

1. collects the frame of every table spec (or ``--table``) from the results store and reads the
   pytest-benchmark JSON under ``<results>/benchmarks``, as ``report`` does;
2. builds the report (:func:`harness.report.build.build_report`) into a fresh folder beside ``DIR``
   and swaps it in, so a failed build leaves the previous site alone; every page's footer names
   the commit and the command;
3. adds ``data/provenance.json``, ``.nojekyll`` (GitHub Pages serves the folder as it is) and
   ``site.json``: the commit, the command, the tables, a SHA-256 manifest of every other file,
   and ``published_at``.

**Reproducible.** Two runs of the same command on the same results and code give byte-identical
files, except ``published_at`` in ``site.json``: the single timestamp, UTC, taken from
``$SOURCE_DATE_EPOCH`` when it is set (then nothing differs at all). Figures carry no date,
interactive tables have fixed ids, statistics use fixed seeds. The archive (``DIR.tar.gz``)
lists files sorted, with mtime ``$SOURCE_DATE_EPOCH`` (else 0), uid/gid 0 and a gzip header
without a date.

**Git.** ``--git-branch NAME`` commits exactly the site's files (nothing else) to
``refs/heads/NAME`` of the repository holding the current directory (``--repo``), with git's
plumbing on a temporary index: ``hash-object``, ``update-index``, ``write-tree``,
``commit-tree``, ``update-ref``. The working tree, the index and the checked-out branch are never
touched, nothing is pushed; the previous tip of NAME, if any, is the parent. A branch checked out
in any worktree is refused.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import UserError

SITE_RECORD = "site.json"


@dataclass
class Published:
    """Where a publish wrote: the site folder, its record, the archive and the git commit, if any."""

    site: Path
    record: dict[str, Any]
    archive: Path | None = None
    commit: str | None = None


def _git(repo: Path, *args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    res = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, input=stdin, env=env)
    if res.returncode != 0:
        raise UserError(f"git {' '.join(args[:2])} in {repo} failed: {res.stderr.strip() or res.stdout.strip()}")
    return res.stdout.strip()


def repository(path: Path | None = None) -> Path | None:
    """The top of the git repository holding ``path`` (default: the current directory), or None."""
    res = subprocess.run(["git", "-C", str(path or Path.cwd()), "rev-parse", "--show-toplevel"],
                         capture_output=True, text=True)
    return Path(res.stdout.strip()) if res.returncode == 0 else None


def code_state(repo: Path | None) -> dict[str, Any]:
    """The commit and dirty flag of ``repo`` (``unknown`` outside a repository)."""
    if repo is None:
        return {"commit": "unknown", "dirty": None}
    commit = _git(repo, "rev-parse", "HEAD")
    dirty = bool(_git(repo, "status", "--porcelain", "--untracked-files=no"))
    return {"commit": commit, "dirty": dirty}


def timestamp() -> str:
    """The publication time (UTC, ISO 8601): ``$SOURCE_DATE_EPOCH`` when set, else now."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if epoch and not epoch.isdigit():
        raise UserError(f"SOURCE_DATE_EPOCH={epoch!r}: expected whole seconds since 1970-01-01 UTC")
    when = datetime.fromtimestamp(int(epoch), timezone.utc) if epoch else datetime.now(timezone.utc)
    return when.replace(microsecond=0).isoformat()


def manifest(site: Path) -> list[dict[str, Any]]:
    """Every file of the site but ``site.json``: relative path, size and SHA-256, sorted by path."""
    out = []
    for p in sorted(site.rglob("*")):
        rel = p.relative_to(site).as_posix()
        if p.is_file() and rel != SITE_RECORD:
            out.append({"path": rel, "bytes": p.stat().st_size, "sha256": hashlib.sha256(p.read_bytes()).hexdigest()})
    return out


def _is_site(path: Path) -> bool:
    return (path / SITE_RECORD).is_file()


def check_results(results: Path) -> Path:
    """The results folder, which must exist."""
    if not Path(results).is_dir():
        raise UserError(f"results folder {results} does not exist (run `python -m harness reproduce` first, "
                        "or pass --results DIR)")
    return Path(results)


def _collect(results: Path, tables: list[str] | None, scale: str | None,
             configs: dict | None) -> tuple[pd.DataFrame, list]:
    from harness.report.collect import collect_tables, one_scale
    from harness.specs import list_specs, load_spec

    check_results(results)
    specs = [load_spec(t) for t in (tables or list_specs())]
    frame = collect_tables([s.id for s in specs], results, scale=scale, configs=configs)
    return one_scale(frame, scale), specs


def build_site(out: Path, frame: pd.DataFrame, specs: list, *, benchmarks: pd.DataFrame | None = None,
               command: str = "", repo: Path | None = None) -> dict[str, Any]:
    """Write the site into ``out`` (replaced whole; refused if it is a folder that is neither empty
    nor a site this command wrote); return the ``site.json`` record."""
    from harness.report.build import build_report, provenance

    out = Path(out)
    if out.exists() and (not out.is_dir() or (any(out.iterdir()) and not _is_site(out))):
        raise UserError(f"--out {out}: exists and is not a site written by `publish` (no {SITE_RECORD}); "
                        "pass an empty or new folder")
    state = code_state(repo)
    published = {**state, "command": command}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    tmp.chmod(0o755)  # mkdtemp's 0700 would keep a web server out of the published folder
    try:
        build_report(frame, specs, tmp, benchmarks=benchmarks, published=published)
        (tmp / "data" / "provenance.json").write_text(
            json.dumps(provenance(frame), indent=1, sort_keys=True, default=str) + "\n")
        (tmp / ".nojekyll").write_text("")
        record = {"generator": "FERbench (python -m harness publish)", **published,
                  "tables": [s.id for s in specs], "published_at": timestamp(),
                  "timestamp_note": "published_at is the only value that differs between two publications of "
                                    "the same results and code ($SOURCE_DATE_EPOCH fixes it)",
                  "files": manifest(tmp)}
        (tmp / SITE_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return record


def write_archive(site: Path, path: Path | None = None) -> Path:
    """Pack ``site`` into ``<site>.tar.gz`` (entries under ``<site name>/``), reproducibly."""
    site = Path(site)
    path = Path(path) if path else site.with_name(site.name + ".tar.gz")
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "0")
    mtime = int(epoch) if epoch.isdigit() else 0
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for p in [site, *sorted(site.rglob("*"))]:
            info = tarfile.TarInfo(site.name if p == site else f"{site.name}/{p.relative_to(site).as_posix()}")
            info.mtime, info.uid, info.gid, info.uname, info.gname = mtime, 0, 0, "", ""
            if p.is_dir():
                info.type, info.mode = tarfile.DIRTYPE, 0o755
                tar.addfile(info)
            else:
                data = p.read_bytes()
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
    with open(path, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=mtime) as gz:
        gz.write(buf.getvalue())
    return path


def commit_site(site: Path, repo: Path, branch: str, message: str) -> str:
    """Commit exactly the files of ``site`` as the whole tree of ``refs/heads/<branch>`` of
    ``repo`` (parent: the branch's previous tip), through a temporary index; return the commit."""
    site = Path(site).resolve()
    _git(repo, "check-ref-format", "--branch", branch)
    ref = f"refs/heads/{branch}"
    checked_out = [line.split(" ", 1)[1] for line in _git(repo, "worktree", "list", "--porcelain").splitlines()
                   if line.startswith("branch ")]
    if ref in checked_out:
        raise UserError(f"--git-branch {branch}: that branch is checked out in a worktree of {repo}; "
                        "publishing would change files under it. Use another branch (e.g. gh-pages)")
    files = [p for p in sorted(site.rglob("*")) if p.is_file()]
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "GIT_INDEX_FILE": str(Path(tmp) / "index")}
        if not _has_identity(repo):
            env.update(GIT_AUTHOR_NAME="FERbench publish", GIT_AUTHOR_EMAIL="ferbench@localhost",
                       GIT_COMMITTER_NAME="FERbench publish", GIT_COMMITTER_EMAIL="ferbench@localhost")
        blobs = _git(repo, "hash-object", "-w", "--no-filters", "--stdin-paths",
                     stdin="".join(f"{p}\n" for p in files), env=env).splitlines()
        info = "".join(f"100644 {sha}\t{p.relative_to(site).as_posix()}\n" for sha, p in zip(blobs, files))
        _git(repo, "update-index", "--add", "--index-info", stdin=info, env=env)
        tree = _git(repo, "write-tree", env=env)
        parent = subprocess.run(["git", "-C", str(repo), "rev-parse", "--verify", "-q", ref + "^{commit}"],
                                capture_output=True, text=True).stdout.strip()
        commit = _git(repo, "commit-tree", tree, *(["-p", parent] if parent else []), "-m", message, env=env)
    # Compare-and-swap: fails if the branch moved while we were writing.
    _git(repo, "update-ref", "-m", "ferbench publish", ref, commit, parent or "0" * len(commit))
    return commit


def _has_identity(repo: Path) -> bool:
    return all(subprocess.run(["git", "-C", str(repo), "config", key], capture_output=True).returncode == 0
               for key in ("user.name", "user.email"))


def publish(out: Path, results: Path, *, tables: list[str] | None = None, scale: str | None = None,
            benchmarks: Path | None = None, git_branch: str | None = None, archive: bool = False,
            repo: Path | None = None, command: str = "", configs: dict | None = None) -> Published:
    """Collect, build the site into ``out``, then optionally archive it and commit it to ``git_branch``.

    ``configs`` maps a table to the run configuration to show, ``(extra overrides, seeds)``
    (:func:`harness.commands.common.run_configs`: by default what its last ``reproduce`` ran).
    """
    from harness.report.benchmarks import load_benchmark_json

    results = Path(results)
    repo = Path(repo) if repo else repository()
    if git_branch and repo is None:
        raise UserError("--git-branch: the current directory is not inside a git repository (pass --repo DIR)")
    frame, specs = _collect(results, tables, scale, configs)
    bench_dir = Path(benchmarks) if benchmarks else results / "benchmarks"
    bench = load_benchmark_json([bench_dir]) if bench_dir.exists() else None
    record = build_site(Path(out), frame, specs, benchmarks=bench, command=command, repo=repo)
    done = Published(Path(out), record)
    if archive:
        done.archive = write_archive(Path(out))
    if git_branch:
        done.commit = commit_site(Path(out), repo, git_branch,
                                  f"FERbench report from {record['commit'][:12]}\n\n{command}\n"
                                  f"published_at: {record['published_at']}\n")
    return done

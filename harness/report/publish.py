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

**Never deletes what it did not write.** An existing ``DIR`` is replaced only when it is empty, or
when its ``site.json`` says it is a FERbench site and lists every file in it; anything else (a
file, a link, a folder without that record, a site with files added since) is refused before
anything is collected or built. With ``--archive``, a link or a folder at ``DIR.tar.gz`` is refused
too; the archive is written beside it and renamed over it.

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
touched, nothing is pushed; the previous tip of NAME, if any, is the parent. NAME is a branch
name as ``git check-ref-format --branch`` accepts it, and neither a ref (``refs/...``), ``@`` nor
an option (``-...``); a branch checked out in any worktree is refused. Both are checked before
anything is built.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from harness.errors import UserError

SITE_RECORD = "site.json"
GENERATOR = "FERbench (python -m harness publish)"


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


def _folder_entries(folder: Path) -> tuple[set[str], list[str]]:
    """The files under ``folder`` (relative paths), and the entries that are neither a file nor a
    folder (links included: publishing never writes one)."""
    files, odd = set(), []
    for root, dirs, names in os.walk(folder):
        for name in dirs + names:
            p = Path(root, name)
            rel = p.relative_to(folder).as_posix()
            if p.is_symlink() or not (p.is_dir() or p.is_file()):
                odd.append(rel)
            elif p.is_file():
                files.add(rel)
    return files, odd


def _site_record(folder: Path) -> dict[str, Any] | None:
    """The ``site.json`` of ``folder`` when it is one that ``publish`` wrote (its generator, its
    list of files), else None."""
    try:
        record = json.loads((folder / SITE_RECORD).read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("generator") != GENERATOR or not isinstance(record.get("files"), list):
        return None
    if not all(isinstance(f, dict) and isinstance(f.get("path"), str) for f in record["files"]):
        return None
    return record


def check_out(out: Path) -> None:
    """Refuse an ``--out`` that publishing would have to delete something it did not write from:
    ``out`` may be missing, an empty folder, or a site whose ``site.json`` lists every file in it."""
    out = Path(out)
    refuse = f"--out {out}: not a site written by `publish`"
    if out.is_symlink():
        raise UserError(f"{refuse} (a symbolic link); pass an empty or new folder")
    if not out.exists():
        return
    if not out.is_dir():
        raise UserError(f"{refuse} (it exists and is not a folder); pass an empty or new folder")
    if not any(out.iterdir()):
        return
    record = _site_record(out)
    if record is None:
        raise UserError(f"{refuse} (no valid {SITE_RECORD}) and not empty; pass an empty or new folder")
    files, odd = _folder_entries(out)
    unlisted = sorted((files - {f["path"] for f in record["files"]} - {SITE_RECORD}) | set(odd))
    if unlisted:
        shown = ", ".join(unlisted[:5]) + (f" and {len(unlisted) - 5} more" if len(unlisted) > 5 else "")
        raise UserError(f"{refuse} as it stands: its {SITE_RECORD} does not list {shown}, which publishing "
                        "would delete; move them away, or pass an empty or new folder")


def archive_path(site: Path) -> Path:
    """Where ``--archive`` writes: ``<site>.tar.gz`` beside the site."""
    site = Path(site)
    return site.with_name(site.name + ".tar.gz")


def check_archive(path: Path) -> None:
    """Refuse an archive path that is a symbolic link (writing would follow it) or not a file."""
    path = Path(path)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        raise UserError(f"--archive: {path} exists and is {'a symbolic link' if path.is_symlink() else 'not a file'}; "
                        "move it away first")


def check_branch(repo: Path, branch: str) -> None:
    """Refuse a ``--git-branch`` that is not a plain branch name (``git check-ref-format --branch``;
    no ``refs/...``, ``@`` or leading ``-``), or that is checked out in a worktree of ``repo``."""
    if branch.startswith(("-", "refs/")) or branch == "@":
        raise UserError(f"--git-branch {branch}: expected a branch name such as gh-pages, not "
                        f"{'an option' if branch.startswith('-') else 'a ref' if branch != '@' else '@ (HEAD)'}")
    if _git(repo, "check-ref-format", "--branch", branch) != branch:
        raise UserError(f"--git-branch {branch}: expected a branch name such as gh-pages, not an expression git expands")
    checked_out = [line.split(" ", 1)[1] for line in _git(repo, "worktree", "list", "--porcelain").splitlines()
                   if line.startswith("branch ")]
    if f"refs/heads/{branch}" in checked_out:
        raise UserError(f"--git-branch {branch}: that branch is checked out in a worktree of {repo}; "
                        "publishing would change files under it. Use another branch (e.g. gh-pages)")


def check_results(results: Path) -> Path:
    """The results folder, which must exist."""
    if not Path(results).is_dir():
        raise UserError(f"results folder {results} does not exist (run `python -m harness reproduce` first, "
                        "or pass --results DIR)")
    return Path(results)


def _collect(results: Path, tables: list[str] | None, scale: str | None,
             configs: dict | None) -> tuple[pd.DataFrame, list]:
    from harness.report.collect import collect_tables, one_scale, run_spec
    from harness.specs import list_specs

    check_results(results)
    specs = [s for t in (tables or list_specs()) if (s := run_spec(t, (configs or {}).get(t))) is not None]
    frame = collect_tables([s.id for s in specs], results, scale=scale, configs=configs)
    return one_scale(frame, scale), specs


def build_site(out: Path, frame: pd.DataFrame, specs: list, *, benchmarks: pd.DataFrame | None = None,
               command: str = "", repo: Path | None = None,
               pictures: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Write the site into ``out`` (replaced whole once complete; refused, see :func:`check_out`,
    unless it is missing, empty or a site this command wrote); return the ``site.json`` record.
    Of ``pictures`` (:func:`harness.pictures.make_pictures`) only those of synthetic cells go in."""
    from harness.report.build import build_report, provenance, staged

    out = Path(out)
    check_out(out)
    state = code_state(repo)
    published = {**state, "command": command}
    with staged(out) as tmp:
        # Real faces are licence-gated: a picture of one never goes into a site (build_report checks again).
        shown = [p for p in pictures or [] if "note" not in p and p.get("synthetic") is True]
        build_report(frame, specs, tmp, benchmarks=benchmarks, published=published, pictures=shown)
        (tmp / "data" / "provenance.json").write_text(
            json.dumps(provenance(frame), indent=1, sort_keys=True, default=str) + "\n")
        (tmp / ".nojekyll").write_text("")
        record = {"generator": GENERATOR, **published,
                  "tables": [s.id for s in specs], "published_at": timestamp(),
                  "timestamp_note": "published_at is the only value that differs between two publications of "
                                    "the same results and code ($SOURCE_DATE_EPOCH fixes it)",
                  "files": manifest(tmp)}
        (tmp / SITE_RECORD).write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return record


def write_archive(site: Path, path: Path | None = None) -> Path:
    """Pack ``site`` into ``<site>.tar.gz`` (entries under ``<site name>/``), reproducibly; written
    beside ``path`` and renamed over it (a link or folder at ``path`` is refused)."""
    site = Path(site)
    path = Path(path) if path else archive_path(site)
    check_archive(path)
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh, gzip.GzipFile(filename="", mode="wb", fileobj=fh, mtime=mtime) as gz:
            gz.write(buf.getvalue())
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would keep others from downloading it
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def commit_site(site: Path, repo: Path, branch: str, message: str) -> str:
    """Commit exactly the files of ``site`` as the whole tree of ``refs/heads/<branch>`` of
    ``repo`` (parent: the branch's previous tip), through a temporary index; return the commit."""
    site = Path(site).resolve()
    check_branch(repo, branch)
    ref = f"refs/heads/{branch}"
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
            repo: Path | None = None, command: str = "", configs: dict | None = None,
            pictures: Callable[[pd.DataFrame, list, Path], list[dict[str, Any]]] | None = None) -> Published:
    """Collect, build the site into ``out``, then optionally archive it and commit it to ``git_branch``.

    ``pictures(frame, specs, folder)`` makes the table pages' pictures into a temporary folder (the
    command passes :func:`harness.pictures.make_pictures`, which the report may not import: it builds
    models); only synthetic ones are published.

    ``configs`` maps a table to the run configuration to show (a ``RunConfig``: overrides, seeds, columns)
    (:func:`harness.commands.common.run_configs`: by default what its last ``reproduce`` ran).
    """
    from harness.report.benchmarks import load_benchmark_json

    results = Path(results)
    repo = Path(repo) if repo else repository()
    if git_branch and repo is None:
        raise UserError("--git-branch: the current directory is not inside a git repository (pass --repo DIR)")
    check_out(Path(out))  # every refusal before anything is collected or built
    if archive:
        check_archive(archive_path(Path(out)))
    if git_branch:
        check_branch(repo, git_branch)
    frame, specs = _collect(results, tables, scale, configs)
    bench_dir = Path(benchmarks) if benchmarks else results / "benchmarks"
    bench = load_benchmark_json([bench_dir]) if bench_dir.exists() else None
    with tempfile.TemporaryDirectory(prefix="ferbench-pictures.") as folder:
        made = pictures(frame, specs, Path(folder)) if pictures else None
        record = build_site(Path(out), frame, specs, benchmarks=bench, command=command, repo=repo, pictures=made)
    done = Published(Path(out), record)
    if archive:
        done.archive = write_archive(Path(out))
    if git_branch:
        done.commit = commit_site(Path(out), repo, git_branch,
                                  f"FERbench report from {record['commit'][:12]}\n\n{command}\n"
                                  f"published_at: {record['published_at']}\n")
    return done

"""Publishing: a reproducible self-contained site, its archive, and a commit of exactly the site on a branch."""
from __future__ import annotations

import json
import re
import subprocess
import tarfile
from pathlib import Path

import pandas as pd
import pytest

from harness.report import publish
from harness.cli import main
from harness.errors import UserError
from harness.specs import load_spec
from tests.harness.report_frames import frame_for_spec

COMMAND = "python -m harness publish --out site"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=True).stdout.strip()


@pytest.fixture(scope="module")
def inputs():
    specs = [load_spec("apvit_tab13")]  # APViT and TransFER rows: two methods, one small table
    frame = frame_for_spec(specs[0], n_samples=150, synthetic=True)
    bench = pd.DataFrame({"name": ["APViT", "TransFER"], "machine": ["m1", "m1"], "kind": ["latency"] * 2,
                          "preset": ["paper"] * 2, "batch": [1, 1], "threads": [2, 2], "model": ["apvit", "transfer"],
                          "overrides": ["{}", "{}"], "family": ["apvit", "transfer"], "is_baseline": [True, True],
                          "median_ms": [150.0, 230.0], "iqr_ms": [1.0, 2.0], "rounds": [5, 5], "gflops": [12.67, 15.3]})
    return frame, specs, bench


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    r = tmp_path_factory.mktemp("repo")
    _git(r, "init", "-q", "-b", "main")
    _git(r, "config", "user.name", "t")
    _git(r, "config", "user.email", "t@t")
    (r / "code.py").write_text("x = 1\n")
    _git(r, "add", "code.py")
    _git(r, "commit", "-qm", "code")
    return r


def _files(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def two_sites(inputs, repo, tmp_path_factory):
    frame, specs, bench = inputs
    root = tmp_path_factory.mktemp("sites")
    site = root / "site"
    publish.build_site(site, frame, specs, benchmarks=bench, command=COMMAND, repo=repo)
    first = _files(site)
    (site / "index.html").write_text("stale")  # the second run replaces the whole folder
    publish.build_site(site, frame, specs, benchmarks=bench, command=COMMAND, repo=repo)
    return first, _files(site), site


def test_site_has_pages_data_and_its_record(two_sites, repo):
    _, files, site = two_sites
    for f in ("index.html", "claims.html", "apvit_tab13.html", "report.css", ".nojekyll",
              "data/frame.parquet", "data/frame.csv", "data/methods.csv", "data/methods.json", "data/claims.csv",
              "data/claims.json", "data/provenance.json", "figures/comparison/pareto.svg", "tables/apvit_tab13.tex"):
        assert f in files, f
    record = json.loads(files["site.json"])
    assert record["commit"] == _git(repo, "rev-parse", "HEAD") and record["command"] == COMMAND
    assert re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$", record["published_at"])
    assert {f["path"] for f in record["files"]} == set(files) - {"site.json"}
    index = files["index.html"].decode()
    assert record["commit"] in index and COMMAND in index and 'href="site.json"' in index


def test_publishing_twice_is_byte_identical_but_the_timestamp(two_sites):
    first, second, _ = two_sites
    assert set(first) == set(second)
    differ = [f for f in first if first[f] != second[f]]
    assert differ in ([], ["site.json"])
    a, b = json.loads(first["site.json"]), json.loads(second["site.json"])
    a.pop("published_at"), b.pop("published_at")
    assert a == b


def test_source_date_epoch_fixes_the_timestamp(inputs, tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert publish.timestamp() == "2023-11-14T22:13:20+00:00"


def test_archive_is_reproducible_and_holds_the_site(two_sites, tmp_path, monkeypatch):
    _, files, site = two_sites
    a = publish.write_archive(site, tmp_path / "a.tar.gz")
    b = publish.write_archive(site, tmp_path / "b.tar.gz")
    assert a.read_bytes() == b.read_bytes()
    with tarfile.open(a) as tar:
        names = {m.name for m in tar.getmembers() if m.isfile()}
        assert names == {f"site/{f}" for f in files}
        assert tar.extractfile("site/index.html").read() == files["index.html"]
        assert {m.mtime for m in tar.getmembers()} == {0}


def test_git_branch_commits_exactly_the_site_and_touches_nothing_else(two_sites, repo):
    _, files, site = two_sites
    head, status = _git(repo, "rev-parse", "HEAD"), _git(repo, "status", "--porcelain")
    (repo / "untracked.txt").write_text("mine")
    c1 = publish.commit_site(site, repo, "gh-pages", "first")
    assert set(_git(repo, "ls-tree", "-r", "--name-only", "gh-pages").splitlines()) == set(files)
    assert _git(repo, "show", "gh-pages:index.html").encode() == files["index.html"].rstrip(b"\n")
    assert _git(repo, "rev-parse", "HEAD") == head and _git(repo, "symbolic-ref", "HEAD") == "refs/heads/main"
    assert _git(repo, "status", "--porcelain") == (status + "\n?? untracked.txt").strip()
    c2 = publish.commit_site(site, repo, "gh-pages", "second")
    assert _git(repo, "rev-parse", "gh-pages^") == c1 and _git(repo, "rev-parse", "gh-pages") == c2
    with pytest.raises(UserError, match="checked out"):
        publish.commit_site(site, repo, "main", "no")
    with pytest.raises(UserError, match="check-ref-format"):
        publish.commit_site(site, repo, "bad..name", "no")


def test_out_folder_that_is_not_a_site_is_refused(inputs, tmp_path):
    frame, specs, _ = inputs
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "thesis.tex").write_text("keep me")
    with pytest.raises(UserError, match="not a site written by `publish`"):
        publish.build_site(mine, frame, specs)
    assert (mine / "thesis.tex").read_text() == "keep me"


def test_cli_publish_archive_and_branch(inputs, repo, tmp_path, capsys, monkeypatch):
    frame, _, _ = inputs
    import harness.report.collect as collect

    seen = {}

    def fake_collect(ids, results, scale=None, configs=None):
        seen["configs"] = configs
        return frame[frame["table_id"].isin(ids)]

    monkeypatch.setattr(collect, "collect_tables", fake_collect)
    results = tmp_path / "results"
    (results / "benchmarks").mkdir(parents=True)
    out = tmp_path / "site"
    rc = main(["publish", "--out", str(out), "--results", str(results), "--table", "apvit_tab13", "--archive",
               "--git-branch", "pages", "--repo", str(repo), "--set", "train.epochs=1"])
    printed = capsys.readouterr().out.split()
    assert rc == 0 and printed[0] == str(out / "index.html") and printed[1] == str(tmp_path / "site.tar.gz")
    assert printed[2] == "pages" and _git(repo, "rev-parse", "pages") == printed[3]
    record = json.loads((out / "site.json").read_text())
    assert record["command"].startswith("python -m harness publish --out ") and "--archive" in record["command"]
    assert record["tables"] == ["apvit_tab13"]
    assert seen["configs"] == {"apvit_tab13": ({"train.epochs": 1}, None, None)}  # the run configuration shown
    assert main(["publish", "--out", str(out), "--results", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err


def _fake_site(folder: Path, listed: list[str], record: dict | None = None) -> None:
    """A folder holding the files ``listed`` by its site.json (``record`` replaces that record)."""
    folder.mkdir(parents=True)
    for f in listed:
        (folder / f).write_text("old site")
    record = {"generator": publish.GENERATOR, "files": [{"path": f} for f in listed]} if record is None else record
    (folder / "site.json").write_text(json.dumps(record))


def _publish_nothing_built(tmp_path, monkeypatch, capsys, *argv: str) -> str:
    """Run ``publish`` with collecting made to fail: return its error, asserting it was refused (rc 2) first."""
    import harness.report.collect as collect

    def collected(*a, **k):
        raise AssertionError("collected and built before refusing")

    monkeypatch.setattr(collect, "collect_tables", collected)
    (tmp_path / "results").mkdir(exist_ok=True)
    rc = main(["publish", "--results", str(tmp_path / "results"), "--table", "apvit_tab13", *argv])
    err = capsys.readouterr().err
    assert rc == 2, err
    return err


@pytest.mark.parametrize("case", ["unlisted file", "no generator", "site.json not json", "a link"])
def test_publish_replaces_only_a_folder_its_record_lists_whole(tmp_path, monkeypatch, capsys, case):
    out = tmp_path / "site"
    if case == "unlisted file":
        _fake_site(out, ["index.html"])
        (out / "thesis.tex").write_text("keep me")
    elif case == "no generator":
        _fake_site(out, ["index.html", "thesis.tex"], record={"files": [{"path": "index.html"}]})
    elif case == "site.json not json":
        _fake_site(out, ["index.html", "thesis.tex"], record={})
        (out / "site.json").write_text("{not json")
    else:
        _fake_site(out, ["index.html"])
        (tmp_path / "thesis.tex").write_text("keep me")
        (out / "notes.tex").symlink_to(tmp_path / "thesis.tex")
    before = _files(out)
    err = _publish_nothing_built(tmp_path, monkeypatch, capsys, "--out", str(out))
    assert "not a site written by `publish`" in err
    assert _files(out) == before and (case != "unlisted file" or "thesis.tex" in err)


@pytest.mark.parametrize("kind", ["symlink", "folder"])
def test_archive_path_that_is_a_link_or_folder_is_refused_before_building(tmp_path, monkeypatch, capsys, kind):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    archive = tmp_path / "site.tar.gz"
    archive.symlink_to(victim) if kind == "symlink" else archive.mkdir()
    err = _publish_nothing_built(tmp_path, monkeypatch, capsys, "--out", str(tmp_path / "site"), "--archive")
    assert "--archive" in err and not (tmp_path / "site").exists() and victim.read_text() == "keep me"


@pytest.mark.parametrize("branch", ["refs/heads/main", "@", "-x", "main"])
def test_git_branch_must_be_a_branch_name_not_the_checked_out_one(repo, tmp_path, monkeypatch, capsys, branch):
    tip = _git(repo, "rev-parse", "main")
    err = _publish_nothing_built(tmp_path, monkeypatch, capsys, "--out", str(tmp_path / "site"),
                                 f"--git-branch={branch}", "--repo", str(repo))
    assert "--git-branch" in err and not (tmp_path / "site").exists()
    assert _git(repo, "rev-parse", "main") == tip and "refs/heads/refs/heads/main" not in _git(repo, "show-ref")


def test_failed_build_leaves_the_previous_site_whole(inputs, tmp_path, monkeypatch):
    frame, specs, _ = inputs
    site = tmp_path / "site"
    _fake_site(site, ["index.html"])
    import harness.report.build as build

    def full_disk(frame, data_dir):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(build, "export_frame", full_disk)
    with pytest.raises(OSError, match="No space"):
        publish.build_site(site, frame, specs)
    assert _files(site) == {"index.html": b"old site", "site.json": (site / "site.json").read_bytes()}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site"]  # no half-built folder left beside it

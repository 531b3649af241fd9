"""``python -m harness publish --out DIR [--git-branch NAME] [--archive]``: the report as a
self-contained, reproducible static site (see :mod:`harness.report.publish`)."""
from __future__ import annotations

import argparse
import shlex
from functools import partial
from pathlib import Path

from harness.commands.common import add_results_flag, add_run_config_flags, run_configs


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register the ``publish`` command."""
    p = sub.add_parser("publish", help="write the report as a static site; optionally commit it to a branch, or archive it")
    p.add_argument("--out", required=True, metavar="DIR", help="site folder: new, empty, or an earlier site (replaced whole once the new one is complete); "
                        "a folder holding any file its site.json does not list is refused")
    add_results_flag(p)
    p.add_argument("--table", action="append", metavar="ID", help="table id (repeatable); default: every table spec")
    p.add_argument("--scale", default=None, help="only results of this scale preset")
    p.add_argument("--benchmarks", default=None, metavar="DIR",
                   help="pytest-benchmark JSON file or folder (default: <results>/benchmarks)")
    p.add_argument("--git-branch", default=None, metavar="NAME",
                   help="also commit exactly the site to this branch of the local repository (e.g. gh-pages): a "
                        "branch name, not refs/..., @ or the checked-out branch; the working tree and the "
                        "current branch are not touched, nothing is pushed")
    p.add_argument("--repo", default=None, metavar="DIR", help="repository for --git-branch (default: the current one)")
    p.add_argument("--archive", action="store_true", help="also write DIR.tar.gz (replaced if it is a file; a link or folder there is refused)")
    p.add_argument("--no-pictures", action="store_true",
                   help="leave out the pictures rebuilt from stored weights (those of real data always are)")
    add_run_config_flags(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Publish; print the site's index.html, then the archive and the commit when made."""
    from harness.pictures import make_pictures
    from harness.report.publish import check_results, publish
    from harness.specs import list_specs

    results = check_results(Path(args.results))
    configs = run_configs(results, args.table or list_specs(), args)
    command = "python -m harness " + shlex.join(getattr(args, "argv", None) or ["publish", "--out", args.out])
    done = publish(Path(args.out), results, tables=args.table, scale=args.scale, configs=configs,
                   benchmarks=Path(args.benchmarks) if args.benchmarks else None, git_branch=args.git_branch,
                   archive=args.archive, repo=Path(args.repo) if args.repo else None, command=command,
                   pictures=None if args.no_pictures else partial(make_pictures, results, synthetic_only=True))
    print(done.site / "index.html")
    if done.archive:
        print(done.archive)
    if done.commit:
        print(f"{args.git_branch} {done.commit}")
    return 0

"""Face identities: ``train/<identity>/*`` and ``test/<identity>/*``, one folder per person.

The data of a face-recognition pre-training stage (the stand-in for MS-Celeb-1M that APViT's and
TransFER's IR-50 was trained on). It is the layout of CASIA-WebFace, VGGFace2 and MS-Celeb-1M's
cleaned releases, cut into a train and a test folder of the *same* people (recognition of known
identities: the test split measures what the stage learned, it selects nothing). Classes are the
identity folder names, sorted; they are not expressions, so no canonical label map applies.
"""
from __future__ import annotations

from pathlib import Path

from harness.data.base import BadEntries, Entry, RawDataset, RootGuard
from harness.errors import UserError

PROTOCOLS = ("default",)


def read(root: Path, protocol: str, bad: BadEntries) -> RawDataset:
    """Read identity folders of ``train/`` and ``test/``; val is carved from train."""
    return read_named_folders(root, ("train", "test"), bad, kind="identity")


def read_named_folders(root: Path, splits: tuple[str, str], bad: BadEntries, *, kind: str) -> RawDataset:
    """Read ``<train>/<name>/*`` and ``<test>/<name>/*`` (``splits``): one class per folder name, sorted.

    Shared by every layout whose classes are folder names rather than expressions (identities
    here; ImageNet's synsets in :mod:`harness.data.imagenet`). ``kind`` names a class in messages.
    """
    for split in splits:
        if not (root / split).is_dir():
            raise UserError(f"{root / split}: missing split folder (the {kind} layout needs "
                            f"{splits[0]}/<{kind}>/ and {splits[1]}/<{kind}>/)")
    names = sorted(p.name for p in (root / splits[0]).iterdir() if p.is_dir())
    if not names:
        raise UserError(f"{root / splits[0]}: no {kind} folders")
    index = {n: i for i, n in enumerate(names)}
    guard = RootGuard(root)
    official: dict[str, list[Entry]] = {}
    for split, folder_name in zip(("train", "test"), splits):
        entries = []
        for folder in sorted(p for p in (root / folder_name).iterdir() if p.is_dir()):
            if folder.name not in index:
                bad.report(f"{folder}: {kind} {folder.name!r} has no training images")
                continue
            entries += [Entry(name=f"{folder.name}/{img.name}", label=index[folder.name], source=img,
                              where=str(img)) for img in guard.images(folder, bad)]
        official[split] = entries
    # the identity layout's label map as it was (it is part of the dataset fingerprint)
    label_map = {"identities": len(names)} if kind == "identity" else {"classes": names}
    return RawDataset(class_names=names, official=official, annotation_files=[], label_map=label_map)

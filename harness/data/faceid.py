"""Face identities: ``train/<identity>/*`` and ``test/<identity>/*``, one folder per person.

The data of a face-recognition pre-training stage (the stand-in for MS-Celeb-1M that APViT's and
TransFER's IR-50 was trained on). It is the layout of CASIA-WebFace, VGGFace2 and MS-Celeb-1M's
cleaned releases, cut into a train and a test folder of the *same* people (recognition of known
identities: the test split measures what the stage learned, it selects nothing). Classes are the
identity folder names, sorted; they are not expressions, so no canonical label map applies.
"""
from __future__ import annotations

from pathlib import Path

from harness.data.base import BadEntries, Entry, RawDataset, list_images
from harness.errors import UserError

PROTOCOLS = ("default",)


def read(root: Path, protocol: str, bad: BadEntries) -> RawDataset:
    """Read identity folders of ``train/`` and ``test/``; val is carved from train."""
    for split in ("train", "test"):
        if not (root / split).is_dir():
            raise UserError(f"{root / split}: missing split folder (the identity layout needs "
                            "train/<identity>/ and test/<identity>/)")
    names = sorted(p.name for p in (root / "train").iterdir() if p.is_dir())
    if not names:
        raise UserError(f"{root / 'train'}: no identity folders")
    index = {n: i for i, n in enumerate(names)}
    official: dict[str, list[Entry]] = {}
    for split in ("train", "test"):
        entries = []
        for folder in sorted(p for p in (root / split).iterdir() if p.is_dir()):
            if folder.name not in index:
                bad.report(f"{folder}: identity {folder.name!r} has no training images")
                continue
            entries += [Entry(name=f"{folder.name}/{img.name}", label=index[folder.name], source=img,
                              where=str(img)) for img in list_images(folder)]
        official[split] = entries
    return RawDataset(class_names=names, official=official, annotation_files=[],
                      label_map={"identities": len(names)})

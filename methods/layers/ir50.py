"""IR-50 backbone in the face.evoLVe layout, truncated after a configurable stage.

The layout (and therefore the state-dict key names) follows face.evoLVe's ``model_irse.py``
so that its MS-Celeb-1M checkpoints load unchanged:

* ``input_layer``: ``0`` conv 3x3 (3 -> C0, stride 1, no bias), ``1`` BN, ``2`` PReLU;
* ``body.N``: one bottleneck unit per index, numbered consecutively across stages.
  ``res_layer``: ``0`` BN, ``1`` conv 3x3 (stride 1), ``2`` PReLU, ``3`` conv 3x3 (carries the
  stride), ``4`` BN. ``shortcut_layer``: face.evoLVe's ``MaxPool2d(1, stride)`` when the channels
  match -- a max over a 1x1 window is a strided subsample, so it is computed as the slice
  ``x[:, :, ::stride, ::stride]`` (:class:`Subsample`: same numbers, no pooling kernel, no
  parameters, so the checkpoint keys are unchanged) -- else ``0`` conv 1x1 (stride) + ``1`` BN;
* ``output_layer`` (BN, dropout, flatten, linear 512*7*7 -> 512, BN1d) is never built: APViT and
  TransFER use the stage-3 feature map. A checkpoint's ``output_layer.*`` keys and the keys of
  the units past the cut are listed as ignored by :func:`load_ir50_checkpoint`, never silently.

The full IR-50 has stages ``64x3, 128x4, 256x14, 512x3``, each starting with a stride-2 unit, so a
112x112 input gives 256x14x14 after stage 3. Small presets change ``widths``/``depths``.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import torch
import torch.nn as nn

IR50_WIDTHS: tuple[int, ...] = (64, 128, 256, 512)
IR50_DEPTHS: tuple[int, ...] = (3, 4, 14, 3)

# The IR-50 of each preset, all four stages: ``paper`` is face.evoLVe's, ``tiny`` the CPU-sized
# one. A face-ID pre-training stage trains all four; APViT and TransFER cut it after stage 3 (or
# 2 or 4, TransFER's Table 2), and the loader ignores, and reports, the units past their cut.
IR50_PRESETS: dict[str, dict] = {
    "paper": dict(ir50_widths=IR50_WIDTHS, ir50_depths=IR50_DEPTHS, ir50_stem=None),
    "tiny": dict(ir50_widths=(8, 24, 64, 128), ir50_depths=(1, 1, 2, 1), ir50_stem=8),
}


def ir50_cut(preset: str, stages: int = 3) -> dict:
    """ArchConfig fields of a preset's IR-50 cut after ``stages`` stages."""
    p = IR50_PRESETS[preset]
    return dict(ir50_widths=p["ir50_widths"][:stages], ir50_depths=p["ir50_depths"][:stages], ir50_stem=p["ir50_stem"])


class Subsample(nn.Module):
    """``MaxPool2d(kernel_size=1, stride)`` as a strided slice: x [B, C, H, W] -> [B, C, ceil(H/s), ceil(W/s)]."""

    def __init__(self, stride: int) -> None:
        super().__init__()
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.stride
        return x if s == 1 else x[:, :, ::s, ::s]

    def extra_repr(self) -> str:
        return f"stride={self.stride}"


class BottleneckIR(nn.Module):
    """face.evoLVe ``bottleneck_IR``: BN -> conv3x3 -> PReLU -> conv3x3(stride) -> BN, plus shortcut."""

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        if in_chs == out_chs:
            self.shortcut_layer = Subsample(stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_chs, out_chs, 1, stride, bias=False),
                nn.BatchNorm2d(out_chs),
            )
        self.res_layer = nn.Sequential(
            nn.BatchNorm2d(in_chs),
            nn.Conv2d(in_chs, out_chs, 3, 1, 1, bias=False),
            nn.PReLU(out_chs),
            nn.Conv2d(out_chs, out_chs, 3, stride, 1, bias=False),
            nn.BatchNorm2d(out_chs),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, H, W] -> [B, C_out, H/stride, W/stride]."""
        return self.res_layer(x) + self.shortcut_layer(x)


class IR50(nn.Module):
    """IR-50 feature extractor cut after ``num_stages`` stages; ``forward`` returns the feature map.

    ``widths[i]``/``depths[i]`` give the channels and unit count of stage ``i``; only the first
    ``num_stages`` entries are built. ``out_chs`` and ``reduction`` (total stride) describe the output.
    """

    def __init__(
        self,
        widths: Sequence[int] = IR50_WIDTHS,
        depths: Sequence[int] = IR50_DEPTHS,
        num_stages: int = 3,
        in_chans: int = 3,
        stem_chs: int | None = None,
    ) -> None:
        super().__init__()
        if not 1 <= num_stages <= len(widths) or len(widths) != len(depths):
            raise ValueError(f"IR50: num_stages must be in 1..{len(widths)} with len(widths) == len(depths)")
        stem_chs = widths[0] if stem_chs is None else stem_chs
        self.input_layer = nn.Sequential(
            nn.Conv2d(in_chans, stem_chs, 3, 1, 1, bias=False),
            nn.BatchNorm2d(stem_chs),
            nn.PReLU(stem_chs),
        )
        units: list[nn.Module] = []
        in_chs = stem_chs
        for width, depth in zip(widths[:num_stages], depths[:num_stages]):
            for i in range(depth):
                units.append(BottleneckIR(in_chs, width, 2 if i == 0 else 1))
                in_chs = width
        self.body = nn.Sequential(*units)
        self.out_chs = in_chs
        self.reduction = 2 ** num_stages
        self.num_units = len(units)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, 3, H, W] -> [B, out_chs, H / 2**num_stages, W / 2**num_stages]."""
        return self.body(self.input_layer(x))


@dataclass
class LoadReport:
    """What a checkpoint load did: keys loaded, keys deliberately ignored (with why), buffers missing."""

    loaded: list[str] = field(default_factory=list)
    ignored: dict[str, str] = field(default_factory=dict)
    missing_buffers: list[str] = field(default_factory=list)
    resampled: dict[str, str] = field(default_factory=dict)  # key -> how it was fitted to the model

    def summary(self) -> str:
        """One line for logs."""
        fitted = "".join(f"; {k} {how}" for k, how in self.resampled.items())
        return (f"loaded {len(self.loaded)} tensors, ignored {len(self.ignored)}, "
                f"missing buffers {len(self.missing_buffers)}{fitted}")


def read_state_dict(path: str) -> dict[str, torch.Tensor]:
    """Load a local checkpoint file and unwrap the usual ``state_dict``/``model`` containers.

    Only tensors and plain containers are read (``weights_only``): a file that needs anything else
    to unpickle (code, in a planted file) is refused with its name, as is a truncated or empty one.
    """
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise ValueError(f"checkpoint {path}: no such file") from None
    except Exception as err:  # noqa: BLE001 - pickle, zip and EOF errors all mean "not a weights file"
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise ValueError(f"checkpoint {path}: not a file of tensors FERbench can load safely "
                         f"({type(err).__name__}{': ' + first if first else ''})") from None
    for wrapper in ("state_dict", "model"):
        if isinstance(obj, dict) and wrapper in obj and isinstance(obj[wrapper], dict):
            obj = obj[wrapper]
    if not isinstance(obj, dict):
        raise ValueError(f"checkpoint {path}: expected a state dict, got {type(obj).__name__}")
    # DataParallel checkpoints prefix every key with ``module.``
    if obj and all(k.startswith("module.") for k in obj):
        obj = {k[len("module."):]: v for k, v in obj.items()}
    return obj


def strict_load(
    target: dict[str, torch.Tensor],
    state: dict[str, torch.Tensor],
    ignored: dict[str, str],
    source: str,
) -> LoadReport:
    """Copy ``state`` into the ``target`` tensors (a module's ``state_dict()`` or a subset) strictly.

    ``ignored`` maps checkpoint keys that are deliberately skipped to the reason. Missing
    ``num_batches_tracked`` buffers (older PyTorch checkpoints) are tolerated and reported; any
    other missing, unexpected or wrong-shaped key raises ``ValueError`` listing all of them.
    """
    report = LoadReport(ignored=dict(ignored))
    state = {k: v for k, v in state.items() if k not in ignored}
    problems: list[str] = []
    for key, value in state.items():
        if key not in target:
            problems.append(f"unexpected key {key} {tuple(value.shape)}")
        elif tuple(target[key].shape) != tuple(value.shape):
            problems.append(f"shape mismatch {key}: checkpoint {tuple(value.shape)} vs model {tuple(target[key].shape)}")
    for key in target:
        if key not in state:
            if key.endswith("num_batches_tracked"):
                report.missing_buffers.append(key)
            else:
                problems.append(f"missing key {key} {tuple(target[key].shape)}")
    if problems:
        raise ValueError(f"{source}: checkpoint does not match the model:\n  " + "\n  ".join(problems))
    with torch.no_grad():
        for key, value in state.items():
            target[key].copy_(value)
    report.loaded = sorted(state)
    return report


def load_ir50_checkpoint(model: IR50, path: str) -> LoadReport:
    """Load a face.evoLVe IR-50 checkpoint into a (truncated) :class:`IR50`, strictly.

    Keys of units beyond the cut (``body.N`` with ``N >= model.num_units``) and ``output_layer.*``
    are ignored and reported in the returned :class:`LoadReport`; everything else must match.
    """
    state = read_state_dict(path)
    ignored: dict[str, str] = {}
    for key in state:
        if key.startswith("output_layer."):
            ignored[key] = "output layer (not built: features are taken before it)"
        elif key.startswith("body."):
            idx = int(key.split(".")[1])
            if idx >= model.num_units:
                ignored[key] = f"unit {idx} is past the stage cut ({model.num_units} units built)"
    return strict_load(model.state_dict(), state, ignored, f"IR-50 weights {path}")

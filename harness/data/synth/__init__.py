"""A procedural synthetic FER dataset, written in the official layout of a real one.

Faces are drawn with PIL from an identity (face shape, skin tone, feature placement, hair)
and an expression: a point in an 8-d geometry space (mouth curvature, openness and width,
brow raise and tilt, eye openness, mouth asymmetry, nose wrinkle). Each class has a
prototype; a sample moves from neutral towards its prototype by a random intensity and gets
per-sample and per-identity noise, so classes overlap (weak expressions look neutral, fear
and surprise share raised brows and open mouths, anger and disgust lowered brows). Nuisances
are knobs an ablation can turn off: pose, illumination, background clutter, occluders
(sunglasses, hands, blobs), low resolution, class imbalance and label noise.

:func:`synthetic_root` generates a stand-in once into a cache directory named by its
parameters and returns it; :func:`write_synthetic` writes one anywhere. Output is a pure
function of (dataset, scale, seed, knobs): every image has its own seeded generator and
JPEG/PNG parameters are fixed. A ``SYNTHETIC.json`` marker with the parameters and a hash of
every written file lets :func:`harness.data.load_dataset` flag the data as synthetic.

The package is cut by what it writes: :mod:`.knobs`, :mod:`.faces`, :mod:`.generic` (non-face
images), :mod:`.layouts` (each dataset's official layout) and :mod:`.cache`.
"""
from harness.data.synth.knobs import (DATASET_KNOBS, FREQ, GENERATOR_VERSION, SCALES, Knobs,  # noqa: F401
                                      data_problems, make_knobs)
from harness.data.synth.faces import render_face  # noqa: F401
from harness.data.synth.generic import (GENERIC_CLASSES, GENERIC_SCENES, GENERIC_SHAPES,  # noqa: F401
                                        GENERIC_TEXTURES, render_generic)
from harness.data.synth.layouts import FACEID_IDENTITY_OFFSET  # noqa: F401
from harness.data.synth.cache import CACHE_ENV, synthetic_root, write_synthetic  # noqa: F401

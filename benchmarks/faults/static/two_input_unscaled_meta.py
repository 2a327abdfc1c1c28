"""A two-input model, `forward(self, image, meta)`, whose image is standardized but whose three
tabular features are left raw: total ink ~300, width ~6, a 'price' ~1,200. The meta branch's
default-init Linear turns them into activations in the hundreds, which swamp the image branch
and the first logits. Same model and data as healthy/two_input_model, meta not standardized."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from _image_meta import two_input_setup  # noqa: E402

EXPECT = ["inputs-not-normalized"]


def setup():
    return two_input_setup(standardize_meta=False)  # the fault: meta left raw

"""Healthy: a model with two inputs, `forward(self, image, meta)`: a small CNN over the
standardized 8x8 digit image and a linear branch over three standardized tabular features (the
digit's total ink, its width in pixels, a noisy 'price' that depends on the label), concatenated
into the classifier. Samples are dicts {"image", "meta", "label"} named by `inputs=`/`target=`
(_image_meta.py)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))
from _image_meta import two_input_setup  # noqa: E402

EXPECT: list[str] = []


def setup():
    return two_input_setup(standardize_meta=True)

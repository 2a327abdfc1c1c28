"""Compress a trained model (quantize, prune, distill) and measure what each variant costs
and gives on this machine: size, latency, the validation metric. core.py: tw.compress;
methods.py: the method names; quantize.py, narrow.py, variants.py: the methods; measure.py:
size, latency, metric."""

from trainwise.compress.core import CompressResult, compress, compress_run, load_variant

__all__ = ["CompressResult", "compress", "compress_run", "load_variant"]

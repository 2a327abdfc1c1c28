"""Acting: `fit` trains a Setup with a Recipe of the tips, watched by the same watch a user puts
in their own loop, and records one run. Each tip is a small piece here (schedules, clipping,
output-bias init, data sampling), testable alone; loop.py puts them together."""

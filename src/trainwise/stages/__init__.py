"""The preflight stages: one module per stage, run in order by protocol.py."""

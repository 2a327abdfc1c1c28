"""Thin adapters that attach `trainwise.watch` to training frameworks.

    from trainwise.integrations.lightning import TrainwiseCallback          # Lightning
    from trainwise.integrations.transformers import TrainwiseTrainerCallback  # HF Trainer

Each module imports its framework, so import the one you use; neither is a dependency of
trainwise itself.
"""

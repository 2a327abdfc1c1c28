"""Data parallelism on PyTorch's own engine: torchrun launches the processes, torch.distributed
(gloo on CPUs, nccl on GPUs) connects them, DistributedDataParallel keeps the replicas in step.

steps.py:  what the single-process reference and every rank share: the global data order of a
           DistributedSampler, and K training steps recorded the same way.
worker.py: one rank of the multi-device check (`python -m trainwise.distributed.worker`).
launch.py: runs the workers under torchrun, inside a time budget, and reads what they left.
The check's stage is stages/multi_device.py; the rule that judges it, `multi-device-broken`,
is in rules/protocol.py.
"""

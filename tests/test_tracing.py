"""The trace: data flow between module calls and functional calls, wherever they sit."""

import torch
from torch import nn
from torch.nn import functional as F

from trainwise.tracing import FunctionCall, ModuleCall, trace_model


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4))
        self.shortcut = nn.Sequential(nn.Conv2d(4, 4, 1), nn.Dropout(0.2), nn.BatchNorm2d(4))

    def forward(self, x):
        return torch.tanh(self.body(x) + self.shortcut(x))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.block = Block()
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        h = self.block(F.relu(self.stem(x)))
        return F.softmax(self.head(h.mean(dim=(2, 3))), dim=1)


def _by_name(trace, name):
    return next(c for c in trace.leaf_calls if c.name == name)


def test_producers_follow_the_data_through_nested_blocks():
    trace = trace_model(Net().eval(), torch.randn(2, 3, 8, 8))
    assert trace.producer(_by_name(trace, "block.body.1")).name == "block.body.0"
    assert trace.producer(_by_name(trace, "block.shortcut.2")).name == "block.shortcut.1"
    relu = trace.producer(_by_name(trace, "block.body.0"))
    assert isinstance(relu, FunctionCall) and relu.name == "relu"
    assert trace.producer(relu).name == "stem"


def test_functional_calls_inside_forward_are_recorded_with_their_module():
    trace = trace_model(Net().eval(), torch.randn(2, 3, 8, 8))
    names = [(f.name, f.inside) for f in trace.functions]
    assert ("add", "block") in names and ("tanh", "block") in names
    assert names[-1] == ("softmax", "")
    add = next(f for f in trace.functions if f.name == "add")
    assert add.input_shapes == ((2, 4, 8, 8), (2, 4, 8, 8))
    consumers = trace.consumers(_by_name(trace, "head"))
    assert [c.name for c in consumers] == ["softmax"]


def test_ops_inside_leaf_modules_are_not_recorded_and_the_output_is_unchanged():
    model = nn.Sequential(nn.GRU(3, 5, batch_first=True))
    x = torch.randn(2, 4, 3)
    trace = trace_model(model, x)
    assert trace.functions == []
    assert isinstance(trace.calls[0], ModuleCall)
    with torch.no_grad():
        assert torch.equal(trace.output[0], model(x)[0])


def test_a_model_that_rejects_function_modes_is_still_traced_by_hooks():
    from torch.overrides import _get_current_function_mode_stack

    class Picky(nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(3, 2)

        def forward(self, x):
            if _get_current_function_mode_stack():
                raise RuntimeError("cannot run under a TorchFunctionMode")
            return self.fc(x)

    trace = trace_model(Picky(), torch.randn(4, 3))
    assert [c.name for c in trace.leaf_calls] == ["fc"] and trace.functions == []

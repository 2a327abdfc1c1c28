"""Reading the user's samples: a sample that is no tensor is named, with its type, instead of
the layer that fails on it."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import trainwise as tw
from trainwise.stages.static import StaticStage


class Reviews(Dataset):
    """Raw text: (string, label). `broken_from` turns tensors into strings from that index on."""

    def __init__(self, n=40, tensors_until=0):
        self.n, self.tensors_until = n, tensors_until

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        if i < self.tensors_until:
            return torch.full((6,), float(i)), i % 2
        return f"review {i}: a fine film", i % 2


def tokenize(batch):
    """A collate_fn that turns the strings into token ids (B, 6): text models do this."""
    ids = torch.tensor([[ord(c) % 50 for c in text[:6]] for text, _ in batch])
    return ids, torch.tensor([label for _, label in batch])


def check(train, model):
    return tw.check(
        tw.Setup(model=model, train=train, loss=nn.CrossEntropyLoss(), batch_size=8),
        stages=[StaticStage()],
        record=False,
    )


def test_strings_fed_to_a_linear_model_name_the_sample_and_the_type():
    with pytest.raises(tw.SetupError) as raised:
        check(Reviews(), lambda: nn.Linear(6, 2))
    message = str(raised.value)
    assert message.startswith("train sample 0 is not made of tensors: its input is a str")
    assert "'review 0: a fine film'" in message and "the model raised TypeError" in message
    assert "expected a tensor (or a tuple/dict of tensors)" in message
    assert "Linear" not in message and "×" not in message and "\n" not in message


def test_a_string_among_tensors_is_named_by_its_index():
    # Tensors up to sample 4: the default collate fails on the mixture; the sample says why.
    with pytest.raises(tw.SetupError, match=r"train sample 5 is not made of tensors: its input"):
        check(Reviews(tensors_until=5), lambda: nn.Linear(6, 2))


def test_a_string_inside_a_dict_input_is_named_by_its_key():
    class Tagged(Reviews):
        def __getitem__(self, i):
            return {"ids": torch.zeros(6), "text": "a fine film"}, i % 2

    class DictModel(nn.Linear):
        def forward(self, x):
            return super().forward(x["ids"] + x["text"])  # the mistake: text is not a tensor

    with pytest.raises(tw.SetupError, match=r"its input\['text'\] is a str \('a fine film'\)"):
        check(Tagged(), lambda: DictModel(6, 2))


def test_strings_a_collate_fn_tokenizes_pass():
    report = check(DataLoader(Reviews(), batch_size=8, collate_fn=tokenize), lambda: nn.Sequential(
        nn.Embedding(50, 4), nn.Flatten(), nn.Linear(24, 2)
    ))  # fmt: skip
    assert report.stages[0].status != "crashed"


class WordLengths(nn.Module):
    """A model that takes the strings itself: B words -> (B, 2) logits."""

    def __init__(self):
        super().__init__()
        self.emb = nn.Embedding(40, 2)

    def forward(self, words):
        return self.emb(torch.tensor([len(w) for w in words]))


def test_a_model_that_takes_strings_itself_is_checked():
    report = check(Reviews(), WordLengths)
    assert report.stages[0].status != "crashed"


def test_a_batch_that_cannot_be_pinned_is_moved_as_it_is(monkeypatch):
    # Page-locked memory refused (here: no CUDA at all; elsewhere a container's limit):
    # the tensor comes back unchanged and pinning is not tried again.
    from trainwise import data

    if torch.cuda.is_available():
        pytest.skip("pinning works on this machine; the refusal is what is tested")
    monkeypatch.setattr(data, "_pinning", True)
    x = torch.arange(6.0)
    assert data._pinned(x) is x
    assert data._pinning is False

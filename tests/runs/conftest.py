import pytest
import torch


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory):
    """One real record with every kind of signal (made once: it trains for a few seconds)."""
    from runs.sample_record import write_sample_record

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a tiny MLP: extra threads only contend on a shared machine
    try:
        return write_sample_record(tmp_path_factory.mktemp("sample-runs"))
    finally:
        torch.set_num_threads(threads)

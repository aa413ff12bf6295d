"""Shared pytest configuration: the `gpu` marker (tests that need CUDA; `make test` deselects them, `make test-gpu` runs
them), and `tiny_synth`, a toy Synthetic Something (2 / 1 / 1 clips per class) generated once per test process."""
import pytest


def pytest_configure(config):
    config.addinivalue_line('markers', 'gpu: needs a CUDA device; run by `make test-gpu`, deselected by `make test`')


@pytest.fixture(scope='session')
def tiny_synth(tmp_path_factory):
    from actionnb.synth import generate
    root = tmp_path_factory.mktemp('synth') / 'synth-tiny'
    generate(root, preset='mini', seed=0, workers=1, clips=(2, 1, 1), progress=False)
    return root

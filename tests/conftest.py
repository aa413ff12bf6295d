"""Shared pytest configuration: the `gpu` marker (tests that need CUDA; `make test` deselects them, `make test-gpu` runs them)."""


def pytest_configure(config):
    config.addinivalue_line('markers', 'gpu: needs a CUDA device; run by `make test-gpu`, deselected by `make test`')

"""`make test-gpu` (issue 20): the papermill training notebook on CUDA for every paper model at its tiny preset on the
small embedded dataset, each asserted to have learned (pair_acc ≥ LEARNED; TSN, the control, at chance). Without CUDA
the test is skipped with its reason: it is never counted as passed. The CPU wiring is tests/test_gpu_wiring.py."""
import pytest
import torch

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(),
                                 reason='no CUDA device: the GPU training notebooks run only on a GPU (make test-gpu there)')]


def test_every_paper_model_learns_on_the_small_dataset():
    from actionnb.gpu import train_suite
    res = train_suite(device='cuda')
    failed = [f"{r['model']}: {r['why']}" for r in res if not r['ok']]
    assert not failed, '\n'.join(failed)

"""FLOPs and parameter checks of the baselines (nbs/14_baselines.ipynb) against the published figures.

1 multiply-add = 1 FLOP, per view, attention included (actionnb.profile.count_flops). The transformers are counted
with `depth_extrapolated` (exact: every block of a depth costs the same), which keeps this file around a minute on CPU."""
import warnings

import pytest
import torch

from actionnb.core import create_model
from actionnb.models.baselines import BASELINE_FIGURES, depth_extrapolated
from actionnb.profile import count_flops, count_params


def _close(a, b, tol): return abs(a / b - 1) < tol


@pytest.fixture(autouse=True)
def _quiet_one_thread():
    "No fvcore warnings; one thread (on a busy 2-core machine it is several times faster than two for these traces)."
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        yield
    torch.set_num_threads(threads)


def test_tsn_tsm_r50_match_tsm_paper():
    x = torch.randn(1, 3, 8, 224, 224)
    tsn, tsm = (create_model(n, 'paper').eval() for n in ('tsn_r50', 'tsm_r50'))
    f_tsn, f_tsm = count_flops(tsn, x), count_flops(tsm, x)
    assert f_tsm == f_tsn                                  # the shift adds no FLOP
    assert count_params(tsm) == count_params(tsn)          # ... and no parameter
    assert _close(f_tsm / 1e9, 33., 0.05), f_tsm / 1e9     # TSM paper: 33 G (mmaction2: 32.88 G)
    assert _close(count_params(tsm), 24.3e6, 0.05)


def test_i3d_r50_params():
    assert _close(count_params(create_model('i3d_r50', 'paper')), BASELINE_FIGURES['i3d_r50']['params'], 0.05)


def test_timesformer_b_matches_published():
    r = depth_extrapolated('timesformer_b', frames=8)
    assert _close(r['params'], 121.4e6, 0.05), r
    assert _close(r['flops'] / 1e9, 196., 0.05), r
    # the trace drops the last block's patch-token MLP (it does not reach the logits); the official count includes it
    last_mlp = 2 * 4 * 768 ** 2 * 8 * 196
    assert _close((r['flops'] + last_mlp) / 1e9, 196., 0.01), r


def test_vivit_b_factorised_encoder():
    r = depth_extrapolated('vivit_b', frames=32)
    assert _close(r['params'], 115.1e6, 0.05), r           # ViViT Table 2, model 2
    assert _close(r['flops'] / 1e9, 284.4, 0.05), r
    # the thesis's "ViViT-B" 88.9M is ViViT model 1 (12 joint layers, 16x196 position table): hand count
    D, L, N, nt = 768, 12, 196, 16
    layer = 12 * D * D + 13 * D
    model1 = 3 * 2 * 16 * 16 * D + D + L * layer + (nt * N + 1) * D + D + 2 * D + D * 400 + 400
    assert _close(model1, 88.9e6, 0.01), model1


def test_depth_extrapolation_is_exact():
    for name, depths in (('timesformer_b', dict(depth=3)), ('vivit_b', dict(spatial_depth=3, temporal_depth=2))):
        r = depth_extrapolated(name, 'tiny', **depths)
        m = create_model(name, 'tiny', **depths).eval()
        assert r == {'params': count_params(m), 'flops': count_flops(m, torch.randn(1, 3, 8, 64, 64))}, name

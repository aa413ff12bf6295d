"""STASTA acceptance (issue 18): registry and presets, the profiler CLI at paper size against Table 1 (40 / 80 GFLOPs,
24.8 M), the cost decomposition at tiny size, the correlation against an independent shift-and-multiply version at the
paper's window, the displacement map's limiting case, identity at initialisation (every row equals the loaded TSM), a
training step, and bad inputs. The ablation notebook's papermill smoke run is tests/test_stasta_ablation.py."""
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from actionnb.core import create_model, get_model_spec, list_models, model_modules
from actionnb.models.stasta import (STASTA_ABLATIONS, DisplacementMap, STAFSFF, eca_kernel_size, kernel_soft_argmax,
                                    local_correlation)
from actionnb.profile import IGNORED_OPS, count_params, flop_report

ROOT = Path(__file__).resolve().parents[1]


def _profile(preset, frames):
    cmd = [sys.executable, '-m', 'actionnb.profile', '--model', 'stasta_r50', '--preset', preset, '--frames', str(frames),
           '--size', '224', '--json']
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900, env={**os.environ, 'OMP_NUM_THREADS': '2'})
    assert r.returncode == 0, r.stderr[-2000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def test_registry_presets():
    assert 'stasta_r50' in list_models() and 'actionnb.models.stasta' in model_modules()
    assert set(get_model_spec('stasta_r50').presets) == {'paper', 'paper_16f', 'tiny'}
    assert set(STASTA_ABLATIONS) == {'none', 'stafsff', 'dmta', 'both', 'dmta>stafsff'}
    p = create_model('stasta_r50', 'paper')
    assert (p.slow_frames, p.stasta.stafsff.reduced, p.stasta.dmta.dm.radius, p.stasta.dmta.ta.kernel) == (4, 64, 7, 3)
    assert create_model('stasta_r50', 'paper_16f').stasta.dmta.ta.kernel == eca_kernel_size(16) == 5


@pytest.mark.parametrize('preset,frames,paper', [('paper', 8, 40.), ('paper_16f', 16, 80.)])
def test_profile_cli_within_5_percent(preset, frames, paper):
    "Table 1: 40 G at 8 frames and 80 G at 16 frames (±5 %), 24.8 M parameters (±5 %), 174 classes."
    rec = _profile(preset, frames)
    assert abs(rec['gflops'] / paper - 1) < 0.05, rec
    assert abs(rec['params'] / 24.8e6 - 1) < 0.05, rec


def test_cost_decomposes_into_tsm_slow_path_and_modules():
    "At tiny size, exactly: STASTA = TSM + 4 frames of (stem, layer1, layer2) when ST-AFS-FF is in + the modules' MACs."
    x = torch.randn(1, 3, 8, 64, 64)
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        one = flop_report(create_model('tsm_r50', 'tiny', num_classes=24, base_width=32, num_frames=1).eval(),
                          torch.randn(1, 3, 1, 64, 64))['by_module']
        reps = {v: flop_report(create_model('stasta_r50', 'tiny', num_classes=24, **kw).eval(), x)
                for v, (kw, _) in STASTA_ABLATIONS.items()}
    slow = 4 * sum(one.get(k, 0) for k in ('conv1', 'bn1', 'layer1', 'layer2'))
    for v, r in reps.items():
        extra = slow if STASTA_ABLATIONS[v][0]['modules'] in ('stafsff', 'both') else 0
        assert r['flops'] == reps['none']['flops'] + r['by_module'].get('stage_hooks', 0) + extra, v
        assert not set(r['uncounted']) - IGNORED_OPS, (v, r['uncounted'])      # nothing with MACs left uncounted
    assert reps['none']['flops'] == 165552128                                     # tsm_r50 tiny (results/demo.json)


def _correlation_by_shifts(a, b, r):
    "An independent version: for each displacement, shift b by slicing a zero-padded copy and multiply-sum over channels."
    n, c, h, w = a.shape
    bp = F.pad(b, (r, r, r, r))
    out = [(a * bp[:, :, r + dy:r + dy + h, r + dx:r + dx + w]).sum(1) for dy in range(-r, r + 1) for dx in range(-r, r + 1)]
    return torch.stack(out, 1)


def test_correlation_equals_shift_version_at_paper_window():
    torch.manual_seed(0)
    a, b = torch.randn(2, 64, 28, 28), torch.randn(2, 64, 28, 28)
    torch.testing.assert_close(local_correlation(a, b, 7), _correlation_by_shifts(a, b, 7), atol=1e-4, rtol=1e-4)
    a, b = torch.randn(3, 16, 8, 8), torch.randn(3, 16, 8, 8)
    torch.testing.assert_close(local_correlation(a, b, 2), _correlation_by_shifts(a, b, 2), atol=1e-5, rtol=1e-5)


def test_displacement_of_a_translation_and_edge_frame():
    "Frame t+1 = frame t moved by (dy, dx): inside, (u, v) = (dx, dy)/r and conf = 1; the last frame repeats the last pair."
    torch.manual_seed(1)
    base = torch.randn(1, 16, 20, 20)
    clip = torch.cat([base[:, :, 6:14, 6:14], base[:, :, 5:13, 7:15], base[:, :, 5:13, 7:15]])   # moves (dy, dx) = (1, -1), then (0, 0)
    d = DisplacementMap(3, radius=2)(clip)
    inner = d[:, :, 2:6, 2:6]
    torch.testing.assert_close(inner[0, 0], torch.full((4, 4), -0.5), atol=1e-2, rtol=0)
    torch.testing.assert_close(inner[0, 1], torch.full((4, 4), 0.5), atol=1e-2, rtol=0)
    torch.testing.assert_close(inner[0, 2], torch.ones(4, 4), atol=1e-4, rtol=0)
    torch.testing.assert_close(inner[1, :2], torch.zeros(2, 4, 4), atol=1e-2, rtol=0)
    assert torch.equal(d[2], d[1])
    u = kernel_soft_argmax(torch.zeros(1, 25, 2, 2), 2)                          # a flat window: its centre, conf 0
    assert torch.equal(u, torch.zeros(1, 3, 2, 2))


def test_every_row_starts_as_the_loaded_tsm_and_trains():
    torch.manual_seed(0)
    x, y = torch.randn(2, 3, 8, 64, 64), torch.tensor([0, 1])
    tsm = create_model('tsm_r50', 'tiny', num_classes=24, base_width=32).eval()
    sd = tsm.state_dict()
    for v, (kw, _) in STASTA_ABLATIONS.items():
        m = create_model('stasta_r50', 'tiny', num_classes=24, pretrained=sd, **kw).eval()
        assert set(m.load_report.missing) == {k for k in m.state_dict() if k.startswith('stage_hooks.')}, v
        with torch.no_grad(): torch.testing.assert_close(m(x), tsm(x), atol=1e-5, rtol=1e-5)
        m.train()
        F.cross_entropy(m(x), y).backward()
        assert [n for n, p in m.named_parameters() if p.grad is None] == [], v
        if kw['modules'] != 'none':
            assert any(p.grad.abs().sum() > 0 for n, p in m.named_parameters() if n.startswith('stage_hooks.')), v


def test_params_of_the_modules():
    "What the modules add at paper size, against the paper's +0.5 M over its own TSM (24.3 → 24.8 M)."
    tsm = count_params(create_model('tsm_r50', 'paper', num_classes=174))
    both = count_params(create_model('stasta_r50', 'paper'))
    assert 0.2e6 < both - tsm < 0.3e6, both - tsm
    assert count_params(create_model('stasta_r50', 'paper', modules='none')) == tsm


def test_bad_inputs_name_the_problem():
    m = create_model('stasta_r50', 'tiny').eval()
    with pytest.raises(ValueError, match='num_frames=8'):
        m(torch.randn(1, 3, 6, 64, 64))
    with pytest.raises(ValueError, match='3 channels'):
        m(torch.randn(1, 1, 8, 64, 64))
    with pytest.raises(ValueError, match='divisible by slow_stride'):
        create_model('stasta_r50', 'tiny', num_frames=9)
    with pytest.raises(ValueError, match='modules must be one of'):
        create_model('stasta_r50', 'tiny', modules='all')
    with pytest.raises(ValueError, match='order must be one of'):
        create_model('stasta_r50', 'tiny', order='parallel')
    with pytest.raises(ValueError, match='needs the slow path'):
        STAFSFF(32, 8, 4)(torch.randn(8, 32, 4, 4))
    with pytest.raises(ValueError, match='do not match'):
        STAFSFF(32, 8, 4)(torch.randn(8, 32, 4, 4), slow=torch.randn(4, 32, 2, 2))
    with pytest.raises(ValueError, match='radius'):
        DisplacementMap(8, radius=0)

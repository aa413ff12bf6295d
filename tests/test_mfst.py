"""MFST acceptance (issue 16): registry and presets, both streams, the profiler CLI at paper size against Table 2.3's
parameter figures, and bad inputs. The ablation notebook's papermill smoke run is tests/test_mfst_ablation.py."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from actionnb.core import create_model, get_model_spec, input_spec, list_models, model_modules
from actionnb.profile import count_params

ROOT = Path(__file__).resolve().parents[1]


def test_registry_presets_and_streams():
    assert 'mfst' in list_models() and 'actionnb.models.mfst' in model_modules()
    spec = get_model_spec('mfst')
    assert set(spec.presets) == {'paper', 'paper_base', 'tiny'}
    assert len(spec.config('paper')['widths']) == 4 and len(spec.config('paper_base')['widths']) == 3   # Large / Base
    m = create_model('mfst', 'tiny', num_classes=7).eval()
    assert m.model_name == 'mfst' and input_spec(m).modalities == ('rgb',) and m.stem_kind == 'cdc_st'
    d = create_model('mfst', 'tiny', modality='depth', num_classes=7).eval()
    assert input_spec(d).modalities == ('depth',) and d.stem_kind == 'cdc_t' and d.in_chans == 1
    with torch.no_grad():
        assert m(torch.randn(2, 3, 8, 64, 64)).shape == (2, 7)
        assert d(torch.randn(2, 1, 8, 64, 64)).shape == (2, 7)
    p = create_model('mfst', 'paper')
    blk = p.stages[0].spatial[0]
    assert len(p.stages) == 4 and len(p.stages[0].spatial) == 4 and len(p.stages[0].temporal.blocks_for(0)) == 4
    assert blk.attn.num_heads == 8 and p.stages[0].temporal.scales == (1, 2, 4)
    assert count_params(create_model('mfst', 'paper', wms='vanilla')) == count_params(p)      # V-Trans: same parameters
    assert count_params(create_model('mfst', 'paper', wms='unshared')) > count_params(p)


@pytest.mark.parametrize('preset,paper', [('paper_base', 32.6e6), ('paper', 49.7e6)])
def test_profile_cli_params_within_5_percent(preset, paper):
    "Table 2.3's '#params' (32.6 / 49.7 'MB', read as millions) through the profiler CLI at 32x224^2; FLOPs reported."
    r = subprocess.run([sys.executable, '-m', 'actionnb.profile', '--model', 'mfst', '--preset', preset, '--frames', '32',
                        '--size', '224', '--json'], cwd=ROOT, capture_output=True, text=True, timeout=600,
                       env={**os.environ, 'OMP_NUM_THREADS': '1'})
    assert r.returncode == 0, r.stderr[-2000:]
    rec = json.loads(r.stdout.strip().splitlines()[-1])
    assert abs(rec['params'] / paper - 1) < 0.05, rec['params']
    assert rec['gflops'] > 50, rec          # no thesis figure; the notebook prints the per-stage split


def test_bad_inputs_name_the_problem():
    m = create_model('mfst', 'tiny').eval()
    with pytest.raises(ValueError, match='channel'):
        m(torch.randn(1, 1, 8, 64, 64))                     # a depth clip into the RGB stream
    with pytest.raises(ValueError, match='10 frames'):
        m(torch.randn(1, 3, 10, 64, 64))                    # 10 frames cannot be cut into T/4 windows
    with pytest.raises(ValueError, match='modality'):
        create_model('mfst', 'tiny', modality='flow')
    with pytest.raises(ValueError, match='wms'):
        create_model('mfst', 'tiny', wms='multi')
    with pytest.raises(ValueError, match='time_stride'):
        create_model('mfst', 'tiny', time_stride=3)

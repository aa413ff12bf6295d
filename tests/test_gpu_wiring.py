"""The GPU scripts at toy size on CPU (issue 20): `python -m actionnb.gpu check` passes at tiny size for every
registered model with the demo on a toy dataset, and the training suite runs train.ipynb for every paper model (wiring
only: a one-epoch toy run is not asserted to learn; tests/test_gpu.py does that on CUDA)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_cli_at_tiny_size(tiny_synth, tmp_path):
    out = tmp_path / 'gpu.md'
    env = {**os.environ, 'OMP_NUM_THREADS': '1', 'ACTIONNB_PROGRESS': '0'}
    r = subprocess.run([sys.executable, '-m', 'actionnb.gpu', 'check', '--preset', 'tiny', '--frames', '8', '--size', '64',
                        '--batch', '2', '--steps', '1', '--device', 'cpu', '--demo-epochs', '1', '--demo-root', str(tiny_synth),
                        '--out', str(out)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    res = json.loads(out.with_suffix('.json').read_text())
    # every model a fresh process registers (this one's registry may hold other tests' toy models)
    registered = subprocess.run([sys.executable, '-c', 'from actionnb.core import list_models; print(list_models())'],
                                capture_output=True, text=True, check=True).stdout.strip()
    assert str([row['model'] for row in res['throughput']]) == registered
    for row in res['throughput']:
        assert 'error' not in row and row['clips_per_s'] > 0 and row['gmacs'] > 0 and row['mfu'] is None, row
    assert 0 <= res['demo']['pair_acc'] <= 1 and res['demo']['epochs'] == 1
    assert '| stdformer_clip_b16 | 8 × 64² |' in out.read_text()


def test_gpu_check_refuses_half_a_clip():
    r = subprocess.run([sys.executable, '-m', 'actionnb.gpu', 'check', '--frames', '8'], capture_output=True, text=True)
    assert r.returncode == 2 and '--frames and --size go together' in r.stderr


def test_train_suite_wiring_for_every_paper_model(tiny_synth, tmp_path):
    from actionnb.gpu import CONTROL, PAPER_MODELS, train_suite
    res = train_suite(data_root=tiny_synth, epochs=1, device='cpu', out_dir=tmp_path / 'runs', check=False,
                      batch_size=8, workers=0, cache='none')
    assert [r['model'] for r in res] == list(PAPER_MODELS) + [CONTROL]
    bad = [f"{r['model']}: {r['why']}" for r in res if not r['ok']]
    assert not bad, '\n'.join(bad)
    assert all(r['epochs'] == 1 and 0 <= r['pair_acc'] <= 1 for r in res)

"""papermill smoke runs of the experiment notebooks at tiny size (the real runs are `make demo` and the ablations)."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TRAIN = ROOT / 'nbs' / 'experiments' / 'train.ipynb'


def papermill(nb: Path, out: Path, **params):
    args = [sys.executable, '-m', 'papermill', '--kernel', 'python3', '--no-progress-bar', str(nb), str(out)]
    for k, v in params.items(): args += ['-p', k, str(v)]
    env = {**os.environ, 'ACTIONNB_PROGRESS': '0', 'OMP_NUM_THREADS': '1'}
    return subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.parametrize('model', ['tsm_r50', 'tsn_r50'])
def test_train_notebook_smoke(tiny_synth, tmp_path, model):
    r = papermill(TRAIN, tmp_path / 'train.ipynb', model=model, name='smoke', data_root=tiny_synth, out_dir=tmp_path / 'runs',
                  epochs=1, batch_size=8, frames=4, workers=0)
    assert r.returncode == 0, r.stderr[-3000:]
    m = json.loads((tmp_path / 'runs' / 'smoke' / 'metrics.json').read_text())
    for k in ('top1', 'top5', 'mean_class_acc', 'pair_acc', 'epochs', 'wall_s', 'params', 'gflops'):
        assert k in m, k
    assert m['params_used']['model'] == model and m['epochs'] == 1 and 0 <= m['pair_acc'] <= 1
    assert (tmp_path / 'runs' / 'smoke' / 'last.pt').exists() and (tmp_path / 'train.ipynb').exists()


def test_train_notebook_rejects_unknown_parameter(tiny_synth, tmp_path):
    r = papermill(TRAIN, tmp_path / 'bad.ipynb', epoch=3, data_root=tiny_synth, out_dir=tmp_path / 'runs')
    assert r.returncode != 0
    out = json.loads((tmp_path / 'bad.ipynb').read_text())
    text = json.dumps(out)
    assert "unknown experiment parameter" in text and "did you mean 'epochs'" in text
    assert not (tmp_path / 'runs').exists(), 'nothing may be trained before the parameters are checked'


def test_stw_ablation_notebook_smoke(tiny_synth, tmp_path):
    nb = ROOT / 'nbs' / 'experiments' / 'stw_ablation.ipynb'
    r = papermill(nb, tmp_path / 'abl.ipynb', tables='8', seeds=2, epochs=1, frames=4, batch_size=8, workers=0,
                  protocol='scratch', data_root=tiny_synth, out_dir=tmp_path / 'runs', results_dir=tmp_path / 'results',
                  label='smoke')
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / 'results' / 'stw_ablation.json').read_text())
    # the record's command spells out every parameter, so it reruns this table whatever the notebook's defaults become
    assert all(f'-p {k} ' in rec['command'] for k in rec['parameters']) and '-p protocol scratch' in rec['command']
    assert set(rec['summary']) == {'stw', 'stfm>twm', 'twm>stfm'}
    assert all(len(v) == 2 for v in rec['runs'].values())
    md = (tmp_path / 'results' / 'stw_ablation.md').read_text()
    assert 'Table 8' in md and '46.3%' in md and 'Orderings of the paper' in md
    # a second call finds every run done and repeats none of them
    r2 = papermill(nb, tmp_path / 'abl2.ipynb', tables='8', protocol='scratch', seeds=2, epochs=1, frames=4, batch_size=8, workers=0,
                   data_root=tiny_synth, out_dir=tmp_path / 'runs', results_dir=tmp_path / 'results2', label='smoke')
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert json.loads((tmp_path / 'results2' / 'stw_ablation.json').read_text())['runs'] == rec['runs']
    # variants= keeps some rows of the tables (the runs above are found done); only the claims whose rows ran are judged
    r3 = papermill(nb, tmp_path / 'abl3.ipynb', tables='8', variants='stw,stfm>twm', protocol='scratch', seeds=2, epochs=1, frames=4,
                   batch_size=8, workers=0, data_root=tiny_synth, out_dir=tmp_path / 'runs', results_dir=tmp_path / 'results3',
                   label='smoke')
    assert r3.returncode == 0, r3.stderr[-3000:]
    rec3 = json.loads((tmp_path / 'results3' / 'stw_ablation.json').read_text())
    assert set(rec3['summary']) == {'stw', 'stfm>twm'} and list(rec3['orderings']) == ['parallel > STFM ⇒ TWM']
    assert rec3['runs'] == {v: rec['runs'][v] for v in ('stw', 'stfm>twm')}


def test_stw_ablation_frames_protocol_smoke(tiny_synth, tmp_path):
    """protocol='frames': one frame backbone is pre-trained (notebook 36), cached under out_dir, and every row starts from it."""
    nb = ROOT / 'nbs' / 'experiments' / 'stw_ablation.ipynb'
    kw = dict(tables='6', variants='tsn,stw', seeds=1, epochs=1, frames=4, batch_size=8, workers=0, protocol='frames',
              pretrain_epochs=1, pretrain_per_class=4, data_root=tiny_synth, out_dir=tmp_path / 'runs', label='smoke')
    r = papermill(nb, tmp_path / 'abl.ipynb', results_dir=tmp_path / 'results', **kw)
    assert r.returncode == 0, r.stderr[-3000:]
    backbones = list((tmp_path / 'runs' / 'pretrain-frames').glob('*/backbone.pt'))
    assert len(backbones) == 1
    for v in ('tsn', 'stw'):
        used = json.loads((tmp_path / 'runs' / 'frames' / v / 'seed0' / 'metrics.json').read_text())['params_used']
        assert used['pretrained'] == str(backbones[0])
    rec = json.loads((tmp_path / 'results' / 'stw_ablation.json').read_text())
    assert rec['protocol'] == 'frames' and set(rec['summary']) == {'tsn', 'stw'}
    assert 'from the frame backbone of notebook 36' in (tmp_path / 'results' / 'stw_ablation.md').read_text()
    stamp = backbones[0].stat().st_mtime_ns                      # a second call pre-trains nothing and repeats no run
    r2 = papermill(nb, tmp_path / 'abl2.ipynb', results_dir=tmp_path / 'results2', **kw)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert backbones[0].stat().st_mtime_ns == stamp
    assert json.loads((tmp_path / 'results2' / 'stw_ablation.json').read_text())['runs'] == rec['runs']
    bad = papermill(nb, tmp_path / 'bad.ipynb', results_dir=None, **{**kw, 'protocol': 'imagenet'})
    assert bad.returncode != 0 and "protocol must be 'scratch' or 'frames'" in (tmp_path / 'bad.ipynb').read_text()

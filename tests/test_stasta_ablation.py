"""A papermill smoke run of STASTA's ablation notebook (nbs/experiments/stasta_ablation.ipynb) on a tiny synthetic
dataset, one epoch, one seed: Table 3 (four variants), the same again with Table 4 (only its new variant trained),
the 'frames' protocol (notebook 36's frame backbone at the rows' width, loaded into every row), and a bad parameter."""
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_stasta_ablation_notebook_smoke(tmp_path):
    from actionnb.synth import generate
    sys.path.insert(0, str(ROOT / 'tests'))
    from test_experiments import papermill
    data = tmp_path / 'synth-tiny'
    generate(data, preset='mini', seed=0, workers=1, clips=(2, 1, 1), progress=False)
    nb = ROOT / 'nbs' / 'experiments' / 'stasta_ablation.ipynb'
    kw = dict(tables='3', seeds=1, epochs=1, batch_size=8, workers=0, max_train=16, max_valid=24, data_root=data,
              out_dir=tmp_path / 'runs', label='smoke')
    r = papermill(nb, tmp_path / 'abl.ipynb', results_dir=tmp_path / 'results', **kw)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / 'results' / 'stasta_ablation.json').read_text())
    assert set(rec['summary']) == {'none', 'stafsff', 'dmta', 'both'} and rec['protocol'] == 'scratch'
    assert rec['recipe']['optimizer'] == 'adamw' and rec['reused'] == [] and len(rec['orderings']) == 7
    for v in rec['summary'].values():
        assert {'top1', 'pair_acc', 'tempo_acc', 'order_acc', 'params', 'gflops'} <= set(v) and 0 <= v['top1'][0] <= 100
    run0 = rec['runs']['both'][0]
    assert run0['tempo_n'] == 2 and run0['order_n'] == 2              # one validation clip per class, two per pair
    assert 0 <= run0['tempo_acc'] <= 1
    for v, kwargs in (('none', {'modules': 'none'}), ('both', {'modules': 'both'})):
        m = json.loads((tmp_path / 'runs' / 'scratch' / v / 'seed0' / 'metrics.json').read_text())
        assert m['params_used']['model'] == 'stasta_r50' and m['params_used']['model_kwargs'] == kwargs
        assert m['epochs'] == 1 and m['num_train'] <= 16
    g = {v: s['gflops'] for v, s in rec['summary'].items()}
    assert g['none'] < g['dmta'] < g['stafsff'] < g['both']            # the slow path costs more than DM-TA
    md = (tmp_path / 'results' / 'stasta_ablation.md').read_text()
    for s in ('Table 3: the modules', '52.2%', '53.4%', '52.6%', '53.8%', 'tempo_acc', 'Orderings of the paper',
              'Wall time per run', 'from scratch', 'adamw'):
        assert s in md, s
    assert '### Table 4' not in md
    r2 = papermill(nb, tmp_path / 'abl2.ipynb', results_dir=tmp_path / 'results2', **{**kw, 'tables': '3,4'})
    assert r2.returncode == 0, r2.stderr[-3000:]
    rec2 = json.loads((tmp_path / 'results2' / 'stasta_ablation.json').read_text())
    assert set(rec2['summary']) == set(rec['summary']) | {'dmta>stafsff'} and len(rec2['reused']) == 4
    assert all(rec2['runs'][v] == rec['runs'][v] for v in rec['runs']) and len(rec2['orderings']) == 9
    m = json.loads((tmp_path / 'runs' / 'scratch' / 'dmta>stafsff' / 'seed0' / 'metrics.json').read_text())
    assert m['params_used']['model_kwargs'] == {'modules': 'both', 'order': 'dmta>stafsff'}
    assert '### Table 4: the order' in (tmp_path / 'results2' / 'stasta_ablation.md').read_text()
    r3 = papermill(nb, tmp_path / 'fr.ipynb', results_dir=tmp_path / 'results3',
                   **{**kw, 'tables': '4', 'protocol': 'frames', 'pretrain_epochs': 1, 'pretrain_per_class': 3})   # 3 variants
    assert r3.returncode == 0, r3.stderr[-3000:]
    rec3 = json.loads((tmp_path / 'results3' / 'stasta_ablation_frames.json').read_text())
    run = tmp_path / 'runs' / 'pretrain-frames' / 'tsn-tiny-w32-64px-3x25-e1-seed0'     # notebook 36's cache, the rows' width
    pre = json.loads((run / 'pretrain.json').read_text())
    assert pre['params']['base_width'] == 32 and pre['frames']['train'] == 75
    assert rec3['pretrain']['valid_top1'] == pre['valid_top1'] and rec3['pretrain']['path'].endswith('backbone.pt')
    resnet = torch.load(run / 'backbone.pt', weights_only=True)
    assert 'conv1.weight' in resnet and not any(k.startswith('fc.') for k in resnet)
    for v in ('none', 'both', 'dmta>stafsff'):                      # every row and seed starts from the same file
        m = json.loads((tmp_path / 'runs' / 'frames' / v / 'seed0' / 'metrics.json').read_text())
        assert m['params_used']['pretrained'] == rec3['pretrain']['path']
    md3 = (tmp_path / 'results3' / 'stasta_ablation_frames.md').read_text()
    assert 'the frame backbone of notebook 36' in md3 and 'pretrain_per_class' in md3
    r4 = papermill(nb, tmp_path / 'bad.ipynb', results_dir=tmp_path / 'results4', **{**kw, 'tables': '3,5'})
    out = r4.stderr + r4.stdout
    assert r4.returncode != 0 and 'ParameterError' in out and 'tables must be' in out
    assert not (tmp_path / 'results4').exists()

"""A papermill smoke run of MFST's ablation notebook (nbs/experiments/mfst_ablation.ipynb): Table 2.6 and Table 2.1's
late fusion, both streams (RGB and depth) on a tiny synthetic dataset, one epoch."""
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_mfst_ablation_notebook_smoke(tmp_path):
    from actionnb.synth import generate
    sys.path.insert(0, str(ROOT / 'tests'))
    from test_experiments import papermill
    data = tmp_path / 'synth-tiny'
    generate(data, preset='mini', seed=0, workers=1, clips=(2, 1, 1), progress=False)
    assert any((data / 'depth').iterdir())                                        # the depth stream has videos to read
    nb = ROOT / 'nbs' / 'experiments' / 'mfst_ablation.ipynb'
    kw = dict(tables='2.6,2.1', modalities='rgb,depth', seeds=1, epochs=1, batch_size=8, workers=0, max_train=16,
              max_valid=8, data_root=data, out_dir=tmp_path / 'runs', label='smoke')
    r = papermill(nb, tmp_path / 'abl.ipynb', results_dir=tmp_path / 'results', **kw)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / 'results' / 'mfst_ablation.json').read_text())
    assert set(rec['summary']) == {'rgb/cdc-st', 'rgb/v-trans', 'depth/cdc-t', 'depth/v-trans', 'rgb+depth'}
    assert rec['protocol'] == 'scratch' and all(len(v) == 1 for v in rec['runs'].values())
    assert len(rec['orderings']) == 4                                             # 2 of Table 2.6, 2 of Table 2.1
    top1 = rec['runs']['rgb+depth'][0]['top1']
    assert 0 <= top1 <= 1 and rec['summary']['rgb+depth']['fused_from'] == ['rgb/cdc-st', 'depth/cdc-t']
    md = (tmp_path / 'results' / 'mfst_ablation.md').read_text()
    for s in ('Table 2.6', 'Table 2.1', '92.1', '94.6', 'RGB+DEP', 'Orderings of the paper', 'pair_acc', 'Wall time per run'):
        assert s in md, s
    ck = torch.load(tmp_path / 'runs' / 'depth' / 'cdc-t' / 'seed0' / 'last.pt', weights_only=True)
    assert ck['meta']['run_config']['modalities'] == ['depth']                   # the depth stream read batch['depth']
    ck = torch.load(tmp_path / 'runs' / 'rgb' / 'cdc-st' / 'seed0' / 'last.pt', weights_only=True)
    assert ck['meta']['run_config']['modalities'] == ['rgb']
    r2 = papermill(nb, tmp_path / 'abl2.ipynb', results_dir=tmp_path / 'results2', **kw)   # every run found done
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert json.loads((tmp_path / 'results2' / 'mfst_ablation.json').read_text())['runs'] == rec['runs']
    r3 = papermill(nb, tmp_path / 'bad.ipynb', results_dir=tmp_path / 'results3', **{**kw, 'protocol': 'frames'})
    assert r3.returncode != 0 and 'ParameterError' in r3.stderr + r3.stdout

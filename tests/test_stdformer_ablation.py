"""A papermill smoke run of STD-Former's ablation notebook (nbs/experiments/stdformer_ablation.ipynb) on a tiny synthetic
dataset, one epoch, one seed: Table 2 under the default 'frames' protocol (the image model pre-trained first, its
weights loaded into every row), the same again with Tables 4 and 5 (only their new variants trained), a bad parameter, and
Table 4 with the hybrid stem (notebook 36's frame backbone under the image model)."""
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]


def test_stdformer_ablation_notebook_smoke(tmp_path):
    from actionnb.synth import generate
    sys.path.insert(0, str(ROOT / 'tests'))
    from test_experiments import papermill
    data = tmp_path / 'synth-tiny'
    generate(data, preset='mini', seed=0, workers=1, clips=(2, 1, 1), progress=False)
    nb = ROOT / 'nbs' / 'experiments' / 'stdformer_ablation.ipynb'
    kw = dict(tables='2', seeds=1, epochs=1, pretrain_epochs=1, batch_size=8, workers=0, max_train=16, max_valid=24,
              data_root=data, out_dir=tmp_path / 'runs', label='smoke')
    r = papermill(nb, tmp_path / 'abl.ipynb', results_dir=tmp_path / 'results', **kw)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / 'results' / 'stdformer_ablation.json').read_text())
    assert set(rec['summary']) == {'ctm', 'ctm+ptm', 'ctm+stdm', 'ctm+smem', 'all', 'pretrain-frames'}
    assert rec['protocol'] == 'frames' and rec['recipe']['optimizer'] == 'adamw' and rec['reused'] == []
    assert len(rec['orderings']) == 7                                   # 6 of Table 2 and the pair_acc control
    for v in rec['summary'].values():
        assert {'top1', 'pair_acc', 'params', 'gflops'} <= set(v) and 0 <= v['top1'][0] <= 100
    runs = tmp_path / 'runs' / 'frames'
    pre = json.loads((runs / 'pretrain-frames' / 'seed0' / 'metrics.json').read_text())
    assert pre['params_used']['model_kwargs']['temporal_branch'] is False
    init = torch.load(runs / 'pretrain-frames' / 'seed0' / 'image_model.pt', weights_only=True)
    assert 'patch_embed.proj.weight' in init and not any(k.startswith('head.') for k in init)
    assert init['patch_embed.proj.weight'].shape[2] == 1                 # a 1-frame stem, inflated when loaded
    m = json.loads((runs / 'ctm' / 'seed0' / 'metrics.json').read_text())
    assert m['params_used']['pretrained'].endswith('image_model.pt')
    assert m['params_used']['model_kwargs'] == {'ptm_layers': [], 'stdm_layers': [], 'smem_position': None}
    g = {v: s['gflops'] for v, s in rec['summary'].items()}
    assert g['pretrain-frames'] < g['ctm'] < g['ctm+ptm'] < g['all'] and g['ctm'] < g['ctm+stdm'] < g['all']
    md = (tmp_path / 'results' / 'stdformer_ablation.md').read_text()
    for s in ('Table 2: components', '56.8%', '57.2%', '57.0%', '57.1%', '57.3%', 'Orderings of the paper',
              'The image model alone', 'Wall time per run', 'protocol=frames', 'adamw'):
        assert s in md, s
    assert '### Table 4' not in md
    r2 = papermill(nb, tmp_path / 'abl2.ipynb', results_dir=tmp_path / 'results2', **{**kw, 'tables': '2,4,5'})
    assert r2.returncode == 0, r2.stderr[-3000:]
    rec2 = json.loads((tmp_path / 'results2' / 'stdformer_ablation.json').read_text())
    assert set(rec2['summary']) == set(rec['summary']) | {'smem-add', 'smem-mul+add', 'ptm-all', 'ptm-middle'}
    assert len(rec2['reused']) == 6 and all(rec2['runs'][v] == rec['runs'][v] for v in rec['runs'])
    assert len(rec2['orderings']) == 12                                 # + 2 of Table 4, + 3 of Table 5
    m = json.loads((runs / 'smem-add' / 'seed0' / 'metrics.json').read_text())
    assert m['params_used']['model_kwargs']['smem_fusion'] == 'add'
    md2 = (tmp_path / 'results2' / 'stdformer_ablation.md').read_text()
    assert '### Table 4: SMEM fusion' in md2 and '### Table 5: PTM positions' in md2 and '55.2%' in md2
    for v, layers in (('ptm-all', [0, 1, 2, 3]), ('ptm-middle', [1, 2])):
        assert json.loads((runs / v / 'seed0' / 'metrics.json').read_text())['params_used']['model_kwargs']['ptm_layers'] == layers
    r3 = papermill(nb, tmp_path / 'bad.ipynb', results_dir=tmp_path / 'results3', **{**kw, 'protocol': 'clip'})
    out = r3.stderr + r3.stdout
    assert r3.returncode != 0 and 'ParameterError' in out and "protocol must be 'frames' or 'scratch'" in out
    assert not (tmp_path / 'results3').exists()
    # stem='hybrid': notebook 36's frame backbone (toy size) → the image model's hybrid stem → every row (Table 4: 3 rows)
    r4 = papermill(nb, tmp_path / 'hyb.ipynb', results_dir=tmp_path / 'results4',
                   **{**kw, 'tables': '4', 'stem': 'hybrid', 'frame_epochs': 1, 'frame_per_class': 3})
    assert r4.returncode == 0, r4.stderr[-3000:]
    rec4 = json.loads((tmp_path / 'results4' / 'stdformer_ablation_hybrid.json').read_text())
    fb = tmp_path / 'runs' / 'pretrain-frames' / 'tsn-tiny-w32-64px-3x25-e1-seed0' / 'backbone.pt'
    assert rec4['frame_backbone']['path'] == str(fb) and rec4['reused'] == []          # nothing of the tubelet runs reused
    hyb = tmp_path / 'runs' / 'frames-hybrid'
    pre4 = json.loads((hyb / 'pretrain-frames' / 'seed0' / 'metrics.json').read_text())['params_used']
    assert pre4['pretrained'] == str(fb) and pre4['model_kwargs']['stem'] == 'hybrid'
    init4 = torch.load(hyb / 'pretrain-frames' / 'seed0' / 'image_model.pt', weights_only=True)
    assert 'patch_embed.proj.layer3.0.conv1.weight' in init4
    for v in ('ctm', 'smem-add', 'smem-mul+add', 'ctm+smem'):
        u = json.loads((hyb / v / 'seed0' / 'metrics.json').read_text())['params_used']
        assert u['pretrained'].endswith('image_model.pt') and u['model_kwargs']['stem'] == 'hybrid' and u['model_kwargs']['patch_size'] == 16
    md4 = (tmp_path / 'results4' / 'stdformer_ablation_hybrid.md').read_text()
    assert 'ViT-hybrid stem' in md4 and '-p stem hybrid' in md4 and '### Table 4: SMEM fusion' in md4

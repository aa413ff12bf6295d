"""A papermill smoke run of STAT's ablation notebook (nbs/experiments/stat_ablation.ipynb) on a tiny synthetic dataset,
one epoch, one seed: Tables 1 and 3 (five variants, the full model shared by both), the same again (every run found
done), then all four tables (only Table 2's and Table 4's three new variants trained), a bad protocol, and the
'frames' protocol (a ViT-hybrid stem from notebook 36's frame backbone) on Table 3."""
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_stat_ablation_notebook_smoke(tmp_path):
    from actionnb.synth import generate
    sys.path.insert(0, str(ROOT / 'tests'))
    from test_experiments import papermill
    data = tmp_path / 'synth-tiny'
    generate(data, preset='mini', seed=0, workers=1, clips=(2, 1, 1), progress=False)
    nb = ROOT / 'nbs' / 'experiments' / 'stat_ablation.ipynb'
    kw = dict(tables='1,3', seeds=1, epochs=1, batch_size=8, workers=0, max_train=16, max_valid=8, data_root=data,
              out_dir=tmp_path / 'runs', label='smoke')
    r = papermill(nb, tmp_path / 'abl.ipynb', results_dir=tmp_path / 'results', **kw)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads((tmp_path / 'results' / 'stat_ablation.json').read_text())
    assert set(rec['summary']) == {'ca', 'ca+sa', 'ca+la', 'ca+sa+la', 'avgpool'}      # ca+sa+la once, for both tables
    assert rec['protocol'] == 'scratch' and all(len(v) == 1 for v in rec['runs'].values())
    assert rec['recipe']['optimizer'] == 'adamw' and rec['token_frames'] == 8 and rec['reused'] == []
    assert len(rec['orderings']) == 6                                                  # 5 of Table 1, 1 of Table 3
    for v in rec['summary'].values():
        assert {'top1', 'pair_acc', 'params', 'gflops'} <= set(v) and 0 <= v['top1'][0] <= 100
    for v, kwargs in (('ca', {'attention': 'ca'}), ('avgpool', {'global_embed': 'avgpool'})):
        m = json.loads((tmp_path / 'runs' / v / 'seed0' / 'metrics.json').read_text())
        assert m['params_used']['model'] == 'stat' and m['params_used']['model_kwargs'] == kwargs   # never the default
        assert m['epochs'] == 1 and m['num_train'] <= 16
    md = (tmp_path / 'results' / 'stat_ablation.md').read_text()
    for s in ('Table 1: attention components', 'Table 3: global spatial embedding', '77.3%', '78.3%', '78.6%', '77.4%',
              'CA + SA + LA', 'spatial avg-pooling', 'Orderings of the paper', 'pair_acc', 'Wall time per run',
              'stem time stride 1', 'adamw'):
        assert s in md, s
    assert '### Table 2' not in md and '### Table 4' not in md
    r2 = papermill(nb, tmp_path / 'abl2.ipynb', results_dir=tmp_path / 'results2', **kw)    # every run found done
    assert r2.returncode == 0, r2.stderr[-3000:]
    rec2 = json.loads((tmp_path / 'results2' / 'stat_ablation.json').read_text())
    assert rec2['runs'] == rec['runs'] and len(rec2['reused']) == 5
    r3 = papermill(nb, tmp_path / 'all.ipynb', results_dir=tmp_path / 'results3', **{**kw, 'tables': '1,2,3,4'})
    assert r3.returncode == 0, r3.stderr[-3000:]
    rec3 = json.loads((tmp_path / 'results3' / 'stat_ablation.json').read_text())
    assert set(rec3['summary']) == set(rec['summary']) | {'t_o=5', 't_o=7', 'ta=0'}
    assert sorted(rec3['reused']) == sorted(f'{v}/seed0' for v in rec['summary'])        # only the 3 new variants trained
    assert all(rec3['runs'][v] == rec['runs'][v] for v in rec['runs'])
    assert len(rec3['orderings']) == 9 and 'Table 2: t_o = 5 ≈ t_o = 7 (flat)' in rec3['orderings']
    m = json.loads((tmp_path / 'runs' / 't_o=7' / 'seed0' / 'metrics.json').read_text())
    assert m['params_used']['model_kwargs'] == {'t_o': 7}
    md3 = (tmp_path / 'results3' / 'stat_ablation.md').read_text()
    for s in ('### Table 2: short-term window', '### Table 4: temporal aggregation', '79.9%', '80.4%', '75.7%',
              'covers 6 of the 7 other frames', 'l_ta = 0'):
        assert s in md3, s
    r4 = papermill(nb, tmp_path / 'bad.ipynb', results_dir=tmp_path / 'results4', **{**kw, 'protocol': 'imagenet'})
    out = r4.stderr + r4.stdout
    assert r4.returncode != 0 and 'ParameterError' in out and "protocol must be 'scratch'" in out
    assert not (tmp_path / 'results4').exists()
    # protocol='frames': notebook 36's frame backbone (toy size) into the hybrid stem of every row; the scratch runs untouched
    r5 = papermill(nb, tmp_path / 'frames.ipynb', results_dir=tmp_path / 'results5',
                   **{**kw, 'tables': '3', 'protocol': 'frames', 'pretrain_epochs': 1, 'pretrain_per_class': 3, 'ta_layers': 0})
    assert r5.returncode == 0, r5.stderr[-3000:]
    rec5 = json.loads((tmp_path / 'results5' / 'stat_ablation_frames.json').read_text())
    pre = tmp_path / 'runs' / 'pretrain-frames' / 'tsn-tiny-w32-64px-3x25-e1-seed0'
    assert rec5['protocol'] == 'frames' and rec5['pretrain']['path'] == str(pre / 'backbone.pt') and rec5['reused'] == []
    for v, kwargs in (('ca+sa+la', {'attention': 'ca+sa+la'}), ('avgpool', {'global_embed': 'avgpool'})):
        m = json.loads((tmp_path / 'runs' / 'frames' / v / 'seed0' / 'metrics.json').read_text())['params_used']
        assert m['model_kwargs'] == {**kwargs, 'stem': 'hybrid', 'ta_layers': 0} and m['pretrained'] == rec5['pretrain']['path']
    md5 = (tmp_path / 'results5' / 'stat_ablation_frames.md').read_text()
    assert 'ViT-hybrid stem' in md5 and '-p protocol frames' in md5 and 'declared deviation' in md5
    assert '-p ta_layers 0' in md5 and 'built with l_ta = 0' in md5
    assert not (tmp_path / 'results5' / 'stat_ablation.md').exists()

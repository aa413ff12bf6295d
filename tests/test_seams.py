"""The training-loop seams of issue 10: multi-modal batches, one batch-mix API, one evaluation path, stored per-clip
scores, persistent loaders and one host sync per optimiser step. The model seams are proved in notebooks 12-14."""
import json

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import Dataset

from actionnb.core import InputSpec, register_model
from actionnb.learner import Learner, TrainConfig


class DepthOnly(nn.Module):
    "A toy depth model: it refuses anything but a 1-channel clip, so feeding it RGB would fail the run."
    def __init__(self, num_classes):
        super().__init__(); self.conv = nn.Conv3d(1, 4, 3, padding=1); self.fc = nn.Linear(4, num_classes)
    def forward(self, depth):
        assert depth.shape[1] == 1, f'DepthOnly got {tuple(depth.shape)}'
        return self.fc(self.conv(depth).relu().mean((2, 3, 4)))


@register_model('toy_depth_net', presets={'paper': {}, 'tiny': {}}, input=InputSpec(modalities=('depth',)))
def toy_depth_net(num_classes: int = 10, num_frames: int = 8, img_size: int = 64):
    return DepthOnly(num_classes)


def test_depth_model_trains_by_run_experiment_and_fuses_late(tiny_synth, tmp_path):
    from actionnb.evaluate import late_fusion, load_predictions
    from actionnb.experiment import run_experiment
    common = dict(data_root=str(tiny_synth), out_dir=str(tmp_path), epochs=1, batch_size=8, frames=4, workers=0,
                  test_clips=2, progress=False, threads=1)
    rec = run_experiment(name='depth', model='toy_depth_net', model_kwargs={}, **common)
    assert rec['params_used']['model'] == 'toy_depth_net' and 0 <= rec['top1'] <= 1
    run = tmp_path / 'depth'
    assert json.loads((run / 'metrics.json').read_text())['history'][-1]['valid_views'] == 2
    p = load_predictions(run)
    n = rec['num_valid']
    assert p['logits'].shape == (n, 2, 24) and p['labels'].shape == (n,) and len(p['ids']) == n
    ck = torch.load(run / 'last.pt', weights_only=True)
    assert ck['meta']['run_config']['modalities'] == ['depth']
    # an RGB run on the same clips, then late fusion of the two stored score files: no third training run
    run_experiment(name='rgb', model='tsn_r50', model_kwargs={'base_width': 8}, **common)
    fused = late_fusion([run, tmp_path / 'rgb'])
    rgb = load_predictions(tmp_path / 'rgb')
    torch.testing.assert_close(fused['scores'], (p['logits'].mean(1) + rgb['logits'].mean(1)) / 2)
    # asking for a modality set that does not feed the model is refused before training
    from actionnb.experiment import ParameterError
    with pytest.raises(ParameterError, match="takes \\('depth',\\)"):
        run_experiment(name='bad', model='toy_depth_net', model_kwargs={}, modalities='rgb', **common)


class Clips(Dataset):
    def __init__(self, n=32, k=3, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.randn(n, 3, 2, 8, 8, generator=g), torch.randint(0, k, (n,), generator=g)
    def __len__(self): return len(self.y)
    def __getitem__(self, i): return {'video': self.x[i], 'label': int(self.y[i]), 'index': i}


def tiny_net(k=3): torch.manual_seed(0); return nn.Sequential(nn.Flatten(), nn.Linear(3 * 2 * 8 * 8, k))


def test_cutmix_in_collate_is_not_read_as_multi_hot():
    from torch.utils.data import default_collate
    from actionnb.transforms import CutMix
    mix = CutMix(num_classes=3, seed=0)
    collate = lambda items: mix(default_collate(items))              # soft (B, 3) labels leave the loader
    lrn = Learner(tiny_net(), Clips(), cfg=TrainConfig(epochs=1, batch_size=8, progress=False), collate_fn=collate)
    hist = lrn.fit()
    assert 0 <= hist[0]['train_top1'] <= 1
    batch = lrn._to_device(collate([Clips()[i] for i in range(8)]))
    assert batch['label'].ndim == 2                                   # the soft target a multi-hot reader would misread
    z = torch.randn(8, 3)
    loss, y_acc = lrn._loss(z, batch)
    lam = batch['lam']
    torch.testing.assert_close(loss, lam * F.cross_entropy(z, batch['label_a']) + (1 - lam) * F.cross_entropy(z, batch['label_b']))
    assert y_acc.ndim == 1 and y_acc.dtype == torch.long               # accuracy against class indices, not multi-hot


def test_mixup_and_cutmix_reachable_and_checkpointed(tmp_path):
    cfg = TrainConfig(epochs=1, batch_size=8, mixup_alpha=0.4, cutmix_alpha=1.0, out_dir=str(tmp_path), progress=False)
    lrn = Learner(tiny_net(), Clips(), cfg=cfg)
    lrn.fit()
    assert type(lrn.mix).__name__ == 'MixUpOrCutMix'
    ck = torch.load(tmp_path / 'last.pt', weights_only=True)
    assert ck['mix'][0] == lrn.mix.state_dict()                       # the mixer's generator is in the checkpoint


def test_one_host_sync_per_optimiser_step(monkeypatch):
    "`Tensor.item` is the host sync: the training loop calls it once per optimiser step (the finiteness check)."
    lrn = Learner(tiny_net(), Clips(), cfg=TrainConfig(epochs=1, batch_size=4, accum_steps=2, progress=False))
    lrn._setup(); lrn._last_ckpt_step = None
    calls = []
    orig = torch.Tensor.item
    monkeypatch.setattr(torch.Tensor, 'item', lambda self: calls.append(1) or orig(self))
    lrn._train_epoch(0, 0, torch.zeros(3, dtype=torch.float64))
    # 8 micro-batches, 4 steps, 4 syncs; plus the DataLoader drawing its base seed once as the epoch's iterator starts
    assert lrn.step == 4 and len(calls) == 4 + 1, (lrn.step, len(calls))


def test_loader_and_workers_persist_across_epochs():
    lrn = Learner(tiny_net(), Clips(), Clips(12, seed=1), cfg=TrainConfig(epochs=3, batch_size=8, num_workers=1, progress=False))
    lrn.fit()
    train = [l for (i, tr, _), l in lrn._loaders.items() if tr]
    assert len(train) == 1 and train[0].persistent_workers            # one loader, its workers kept for every epoch
    assert train[0]._iterator is not None                              # the persistent iterator lives on
    assert lrn.predictions['logits'].shape == (12, 1, 3)              # the last epoch's validation, kept


def test_block_with_score_and_value_bias_equals_the_literal_formula():
    """Thesis eq. 3.5 through the public seams: a `Block` whose attention has a score bias (`rel_pos`) and a value bias
    (`value_rel`) equals x + W^O[Σ_j A_ij (v_j + r^V_ij)] + MLP(...), A = softmax(q·k/√d + r^K), written as loops."""
    from actionnb.attention import Block
    torch.manual_seed(0)
    B, N, D, h = 2, 5, 32, 4
    d = D // h
    rel_pos, value_rel = torch.randn(h, N, N), torch.randn(N, N, d)
    blk = Block(D, h, rel_pos=rel_pos, value_rel=value_rel).eval()
    x = torch.randn(B, N, D)
    a = blk.attn
    z = blk.norm1(x)
    qkv = a.qkv(z).reshape(B, N, 3, h, d)
    out = torch.zeros(B, N, h, d)
    for b in range(B):
        for hh in range(h):
            for i in range(N):
                s = torch.stack([qkv[b, i, 0, hh] @ qkv[b, j, 1, hh] / d ** 0.5 + rel_pos[hh, i, j] for j in range(N)])
                A = s.softmax(0)
                out[b, i, hh] = sum(A[j] * (qkv[b, j, 2, hh] + value_rel[i, j]) for j in range(N))
    x1 = x + a.proj(out.reshape(B, N, D))
    want = x1 + blk.mlp(blk.norm2(x1))
    torch.testing.assert_close(blk(x), want, atol=1e-5, rtol=1e-5)
    # and the bias is really used: without it the output differs
    plain = Block(D, h).eval(); plain.load_state_dict(blk.state_dict())
    assert (plain(x) - want).abs().max() > 1e-2

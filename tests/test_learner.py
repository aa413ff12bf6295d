"""Learner acceptance tests that need separate processes: SIGKILL-resume equality and 2-process DDP (gloo, CPU).

The notebook nbs/30_learner.ipynb tests the rest in-process (interrupt + resume, mismatch, non-finite loss); the two
in-process checks are repeated here so that pytest alone covers the acceptance list."""
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = r'''
import json, os, signal, sys
from pathlib import Path
import torch, torch.nn as nn
torch.set_num_threads(1)
from torch.utils.data import Dataset
from actionnb.core import seed_everything
from actionnb.learner import Learner, TrainConfig, TIMING_KEYS

class Clips(Dataset):
    "Random clips; the label is the direction a bright column moves. Records the indices this process loaded."
    def __init__(self, n, seed):
        g = torch.Generator().manual_seed(seed)
        self.x, self.y = torch.randn(n, 3, 4, 8, 8, generator=g) * 0.3, torch.randint(0, 2, (n,), generator=g)
        for i in range(n):
            for f in range(4): self.x[i, :, f, :, f if self.y[i] else 3 - f] += 1.0
        self.seen = []
    def __len__(self): return len(self.y)
    def __getitem__(self, i):
        self.seen.append(int(i)); return {'video': self.x[i], 'label': int(self.y[i]), 'index': i}

class Net(nn.Module):
    def __init__(self, p_drop):
        super().__init__()
        self.conv, self.norm = nn.Conv3d(3, 8, (1, 3, 3), padding=(0, 1, 1)), nn.LayerNorm(8)
        self.drop, self.head = nn.Dropout(p_drop), nn.Linear(32, 2)
    def forward(self, x):
        h = self.norm(self.conv(x).relu().mean((-2, -1)).transpose(1, 2))
        return self.head(self.drop(h.flatten(1)))

mode, out = sys.argv[1], Path(sys.argv[2])
kill_at = int(os.environ.get('ACTIONNB_TEST_KILL_AT_STEP', '0'))      # used only by this test script
def killer(learner, event):
    if event == 'after_step' and learner.step == kill_at: os.kill(os.getpid(), signal.SIGKILL)
if mode == 'resume':   # dropout, mixup, label smoothing, warm-up + cosine: every RNG and state must be restored
    cfg = TrainConfig(epochs=3, batch_size=8, lr=0.05, warmup_epochs=1, label_smoothing=0.1, mixup_alpha=0.2,
                      ckpt_every=3, out_dir=str(out), progress=False, seed=1, resume=True)
    p_drop = 0.1
else:                  # ddp: nothing random per rank (no dropout, no mixup), no BatchNorm
    cfg = TrainConfig(epochs=2, batch_size=8, lr=0.05, momentum=0.9, schedule='cosine', out_dir=str(out),
                      progress=False, seed=1)
    p_drop = 0.0
train, valid = Clips(64, 0), Clips(30, 1)
seed_everything(1); model = Net(p_drop)
learner = Learner(model, train, valid, cfg, callbacks=[killer] if kill_at else [])
hist = learner.fit()
(out / f'seen_{learner.rank}.json').write_text(json.dumps(train.seen))
if learner.rank == 0:
    torch.save(model.state_dict(), out / 'final.pt')
    (out / 'hist.json').write_text(json.dumps([{k: v for k, v in r.items() if k not in TIMING_KEYS} for r in hist]))
'''


@pytest.fixture
def script(tmp_path):
    p = tmp_path / 'train_script.py'
    p.write_text(SCRIPT)
    return p


def run(args, env=None, **kw):
    e = {**os.environ, 'OMP_NUM_THREADS': '1', 'PYTHONHASHSEED': '0', **(env or {})}
    return subprocess.run(args, cwd=ROOT, env=e, capture_output=True, text=True, timeout=120, **kw)


def test_sigkill_resume_is_exact(script, tmp_path):
    ref, killed = tmp_path / 'ref', tmp_path / 'killed'
    r = run([sys.executable, str(script), 'resume', str(ref)])
    assert r.returncode == 0, r.stderr
    # 8 steps per epoch, a checkpoint every 3 steps: killed at step 20, the last checkpoint is step 18, mid-epoch 3
    r = run([sys.executable, str(script), 'resume', str(killed)], env={'ACTIONNB_TEST_KILL_AT_STEP': '20'})
    assert r.returncode == -signal.SIGKILL, (r.returncode, r.stderr)
    ck = torch.load(killed / 'last.pt', weights_only=True)
    assert (ck['step'], ck['epoch'], ck['batch_in_epoch']) == (18, 2, 2)
    assert not (killed / 'hist.json').exists()
    r = run([sys.executable, str(script), 'resume', str(killed)])
    assert r.returncode == 0, r.stderr
    assert 'resumed from' in r.stdout
    assert json.loads((killed / 'hist.json').read_text()) == json.loads((ref / 'hist.json').read_text())
    a, b = torch.load(ref / 'final.pt', weights_only=True), torch.load(killed / 'final.pt', weights_only=True)
    for k in a: assert torch.equal(a[k], b[k]), k
    strip = lambda p: [{k: v for k, v in json.loads(l).items() if k not in ('epoch_s', 'clips_per_s')}
                       for l in p.read_text().splitlines()]
    assert strip(killed / 'metrics.jsonl') == strip(ref / 'metrics.jsonl')
    # the per-epoch lines printed by both runs agree to the printed precision (timings aside)
    assert len(strip(ref / 'metrics.jsonl')) == 3


def test_ddp_matches_one_process(script, tmp_path):
    one, two = tmp_path / 'one', tmp_path / 'two'
    r = run([sys.executable, str(script), 'ddp', str(one)])
    assert r.returncode == 0, r.stderr
    r = run([sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', str(script), 'ddp', str(two)])
    assert r.returncode == 0, r.stdout + r.stderr
    # every rank saw a distinct shard, and together they saw the whole training set in each epoch
    s0, s1 = (json.loads((two / f'seen_{i}.json').read_text()) for i in (0, 1))
    for e in range(2):
        e0, e1 = set(s0[32 * e:32 * (e + 1)]), set(s1[32 * e:32 * (e + 1)])
        assert not e0 & e1 and e0 | e1 == set(range(64))
    # the same weights and metrics, up to float32 summation order (DDP averages two half-batch gradients)
    a, b = torch.load(one / 'final.pt', weights_only=True), torch.load(two / 'final.pt', weights_only=True)
    for k in a: torch.testing.assert_close(a[k], b[k], atol=1e-5, rtol=1e-5)
    h1, h2 = json.loads((one / 'hist.json').read_text()), json.loads((two / 'hist.json').read_text())
    assert [r['step'] for r in h1] == [r['step'] for r in h2]
    for r1, r2 in zip(h1, h2):
        for k in ('train_loss', 'train_top1', 'valid_loss', 'valid_top1', 'valid_top5', 'lr'):
            assert abs(r1[k] - r2[k]) < 1e-5, (k, r1[k], r2[k])


# ---- in-process: clear errors --------------------------------------------------------------------------------------
def _tiny(width=4):
    import torch.nn as nn
    return nn.Sequential(nn.Conv3d(3, width, 1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(width, 2))


class _DS(torch.utils.data.Dataset):
    def __init__(self, n=16): self.x, self.y = torch.randn(n, 3, 2, 4, 4), torch.arange(n) % 2
    def __len__(self): return len(self.y)
    def __getitem__(self, i): return {'video': self.x[i], 'label': int(self.y[i]), 'index': i}


def test_mismatched_checkpoint_is_a_clear_error(tmp_path):
    from actionnb.learner import CheckpointMismatchError, Learner, TrainConfig
    cfg = TrainConfig(epochs=1, batch_size=4, out_dir=str(tmp_path), progress=False)
    Learner(_tiny(4), _DS(), cfg=cfg, run_config={'dataset': 'a', 'frames': 2}).fit()
    with pytest.raises(CheckpointMismatchError) as e:
        Learner(_tiny(8), _DS(), cfg=cfg, resume=True, run_config={'dataset': 'b', 'frames': 2}).fit()
    msg = str(e.value)
    assert str(tmp_path / 'last.pt') in msg and 'shapes differ' in msg and '0.weight [4, 3, 1, 1, 1] vs [8, 3, 1, 1, 1]' in msg
    assert "run_config.dataset: checkpoint has 'a', this run has 'b'" in msg
    with pytest.raises(CheckpointMismatchError, match="config.batch_size: checkpoint has 4, this run has 8"):
        Learner(_tiny(4), _DS(), cfg=cfg, resume=True, batch_size=8, run_config={'dataset': 'a', 'frames': 2}).fit()


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tmp_path):
    from actionnb.learner import Learner, NonFiniteLossError, TrainConfig, load_checkpoint
    model = _tiny()
    calls = []
    def poison(mod, inp, out):
        calls.append(1)
        return out * float('nan') if len(calls) >= 3 and mod.training else out
    model.register_forward_hook(poison)
    cfg = TrainConfig(epochs=2, batch_size=4, ckpt_every=1, out_dir=str(tmp_path), progress=False)
    with pytest.raises(NonFiniteLossError, match=r'non-finite loss \(nan\) at step 3 \(epoch 1, batch 3/4\)') as e:
        Learner(model, _DS(), cfg=cfg).fit()
    assert 'last good checkpoint' in str(e.value) and '(step 2)' in str(e.value)
    ck = load_checkpoint(tmp_path / 'last.pt')
    assert ck['step'] == 2 and all(torch.isfinite(v).all() for v in ck['model'].values())


def test_channels_last_changes_the_layout_not_the_logits():
    """`channels_last=True` (the experiment default) as the Learner applies it (`to_channels_last` on the weights,
    `clip_channels_last` on the clip): every registered model must accept it and give the contiguous logits up to rounding."""
    import copy
    import warnings
    from actionnb.core import list_models
    from actionnb.gpu import paper_clip
    from actionnb.learner import clip_channels_last, to_channels_last
    from actionnb.profile import clip_model
    bad = []
    for name in list_models():
        if name.startswith('_'): continue
        frames, size = paper_clip(name, 'tiny')
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')
            model, xs = clip_model(name, 'tiny', frames, min(size, 64))
            model.eval()
            with torch.no_grad():
                want = model(*xs)
                cl = to_channels_last(copy.deepcopy(model))
                got = cl(*[clip_channels_last(x) for x in xs])
        assert all(p.is_contiguous(memory_format=torch.channels_last) for p in cl.parameters() if p.ndim == 4), name
        err = (got - want).abs().max().item()
        if not err <= 1e-4 * (1 + want.abs().max().item()): bad.append(f'{name}: max |diff| {err:.2e}')
    assert not bad, bad

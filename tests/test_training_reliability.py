"""Reliability of the training loop: non-finite weights are never saved and the error points to a checkpoint that is
good, resume compares (or reports) every `TrainConfig` field, and a plain state dict is not a checkpoint."""
import math
from dataclasses import fields

import pytest
import torch
import torch.nn as nn


def _tiny(width=4):
    return nn.Sequential(nn.Conv3d(3, width, 1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(width, 2))


class _DS(torch.utils.data.Dataset):
    def __init__(self, n=16):
        g = torch.Generator().manual_seed(0)
        self.x, self.y = torch.randn(n, 3, 2, 4, 4, generator=g), torch.arange(n) % 2
    def __len__(self): return len(self.y)
    def __getitem__(self, i): return {'video': self.x[i], 'label': int(self.y[i]), 'index': i}


def _scale_weights_at(step, scale):
    "A callback that multiplies every weight by `scale` right after optimiser step `step` (a diverging update)."
    def cb(learner, event):
        if event == 'after_step' and learner.step == step:
            with torch.no_grad():
                for p in learner.model.parameters(): p.mul_(scale)
    return cb


class _Stop(Exception): pass

def _stop_after_epoch(n):
    def cb(learner, event):
        if event == 'after_epoch' and learner.epoch + 1 == n: raise _Stop
    return cb


def _finite(ck): return all(torch.isfinite(v).all() for v in ck['model'].values() if v.is_floating_point())


# ---- 6. a non-finite state is never saved, and the error names a checkpoint that is good --------------------------
def test_non_finite_weights_are_never_saved(tmp_path):
    "Step 4 (the last of epoch 1) writes inf weights with a finite loss; the epoch-end save must refuse them."
    from actionnb.learner import Learner, NonFiniteLossError, TrainConfig, load_checkpoint
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=2, batch_size=4, ckpt_every=2, out_dir=str(tmp_path), progress=False)
    with pytest.raises(NonFiniteLossError) as e:
        Learner(_tiny(), _DS(), cfg=cfg, callbacks=[_scale_weights_at(4, float('inf'))]).fit()
    msg = str(e.value)
    assert 'after step 4' in msg and 'not finite' in msg and 'not saved' in msg, msg
    assert str(tmp_path / 'last.pt') in msg and '(step 2)' in msg, msg
    ck = load_checkpoint(tmp_path / 'last.pt')
    assert ck['step'] == 2 and _finite(ck)


def test_huge_weights_checkpoint_is_not_called_good_and_weights_resume_allows_a_new_lr(tmp_path, capsys):
    """Step 4 makes the weights 1e29 (finite, so saved at the epoch end); step 5's loss is then non-finite. last.pt
    (step 4) holds the weights that loss came from: the error must name the checkpoint before it, prev.pt (step 2),
    and the resume path that takes a lower lr on purpose, which must then work."""
    from actionnb.learner import CheckpointMismatchError, Learner, NonFiniteLossError, TrainConfig, load_checkpoint
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=2, batch_size=4, ckpt_every=2, lr=0.05, out_dir=str(tmp_path), progress=False)
    with pytest.raises(NonFiniteLossError) as e:
        Learner(_tiny(), _DS(), cfg=cfg, callbacks=[_scale_weights_at(4, 1e29)]).fit()
    msg = str(e.value)
    assert 'at step 5' in msg and 'may be ruined' in msg, msg
    prev = tmp_path / 'prev.pt'
    assert f'the last good checkpoint (its weights gave finite losses) is {prev} (step 2)' in msg, msg
    assert "resume='weights'" in msg and f"resume_from='{prev}'" in msg, msg
    assert load_checkpoint(tmp_path / 'last.pt')['step'] == 4
    ck = load_checkpoint(prev)
    assert ck['step'] == 2 and _finite(ck)
    # the plain resume refuses a changed lr, and says how to change it on purpose
    with pytest.raises(CheckpointMismatchError) as e2:
        Learner(_tiny(), _DS(), cfg=cfg, resume=True, resume_from=str(prev), lr=0.01).fit()
    assert 'config.lr: checkpoint has 0.05, this run has 0.01' in str(e2.value) and "resume='weights'" in str(e2.value)
    # resume='weights': the checkpoint's weights, step and history; a fresh optimiser and schedule at the new lr
    capsys.readouterr()
    lrs = {}
    rec = lambda lrn, ev: lrs.__setitem__(lrn.step, lrn.lr) if ev == 'after_step' else None
    lrn = Learner(_tiny(), _DS(), cfg=cfg, resume='weights', resume_from=str(prev), lr=0.01, callbacks=[rec])
    hist = lrn.fit()
    out = capsys.readouterr().out
    assert 'resumed the weights from' in out and 'lr: checkpoint has 0.05, this run has 0.01 (overridden)' in out, out
    assert lrn.step == 8 and [r['epoch'] for r in hist] == [1, 2]
    assert min(lrs) == 3                                                # went on from step 2, not from 0
    assert math.isclose(lrs[3], 0.01 * lrn.sched.factor(2), rel_tol=1e-12)   # the new lr, at the schedule's position
    assert _finite(load_checkpoint(tmp_path / 'last.pt'))


# ---- 7. every TrainConfig field is compared on resume, or allowed to differ and reported -------------------------
def test_every_train_config_field_is_classified():
    from actionnb.learner import RESUME_FREE_KEYS, RESUME_KEYS, TrainConfig
    names = {f.name for f in fields(TrainConfig)}
    assert set(RESUME_KEYS) | set(RESUME_FREE_KEYS) == names
    assert not set(RESUME_KEYS) & set(RESUME_FREE_KEYS)
    assert {'grad_clip', 'precision'} <= set(RESUME_KEYS) and {'num_workers', 'device', 'progress'} <= set(RESUME_FREE_KEYS)


def test_changed_hyper_parameters_refuse_to_resume_and_free_ones_are_reported(tmp_path, capsys):
    from actionnb.learner import CheckpointMismatchError, Learner, TrainConfig
    torch.manual_seed(0)
    cfg = TrainConfig(epochs=2, batch_size=4, grad_clip=5.0, out_dir=str(tmp_path), progress=False)
    with pytest.raises(_Stop):
        Learner(_tiny(), _DS(), cfg=cfg, callbacks=[_stop_after_epoch(1)]).fit()
    with pytest.raises(CheckpointMismatchError) as e:
        Learner(_tiny(), _DS(), cfg=cfg, resume=True, grad_clip=1.0, precision='bf16').fit()
    msg = str(e.value)
    assert 'config.grad_clip: checkpoint has 5.0, this run has 1.0' in msg, msg
    assert "config.precision: checkpoint has 'fp32', this run has 'bf16'" in msg, msg
    capsys.readouterr()
    hist = Learner(_tiny(), _DS(), cfg=cfg, resume=True, num_workers=1).fit()
    out = capsys.readouterr().out
    assert 'resumed from' in out and 'num_workers: checkpoint has 0, this run has 1 (allowed to differ)' in out, out
    assert [r['epoch'] for r in hist] == [1, 2]


# ---- 12b. a plain state dict is not a Learner checkpoint ----------------------------------------------------------
def test_plain_state_dict_as_last_pt_is_a_clear_error(tmp_path):
    from actionnb.learner import Learner, TrainConfig
    torch.save(_tiny().state_dict(), tmp_path / 'last.pt')
    with pytest.raises(ValueError) as e:
        Learner(_tiny(), _DS(), cfg=TrainConfig(epochs=1, batch_size=4, out_dir=str(tmp_path), progress=False,
                                                resume=True)).fit()
    msg = str(e.value)
    assert str(tmp_path / 'last.pt') in msg and 'not a checkpoint written by Learner' in msg, msg
    assert "'meta'" in msg and "'optimizer'" in msg and 'load_pretrained' in msg and 'pretrained=' in msg, msg

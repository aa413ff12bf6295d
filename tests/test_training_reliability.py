"""Reliability of the training loop and the experiment runner: non-finite weights are never saved and the error points
to a checkpoint that is good, resume compares (or reports) every `TrainConfig` field, a plain state dict is not a
checkpoint, a typo in `data_root` does not generate a dataset, and `check_params` checks types and ranges."""
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


# ---- 8. a typo in data_root does not generate a dataset there -----------------------------------------------------
@pytest.fixture
def no_generate(monkeypatch):
    import actionnb.synth
    calls = []
    monkeypatch.setattr(actionnb.synth, 'generate', lambda root, **kw: calls.append((root, kw.get('preset'))))
    return calls


def test_typo_data_root_is_not_generated(tmp_path, no_generate):
    from actionnb.experiment import build_annotations, check_params
    typo = tmp_path / 'data' / 'synth-sht-mini'
    with pytest.raises(FileNotFoundError) as e:
        build_annotations(check_params({'data_root': str(typo)}))
    msg = str(e.value)
    assert no_generate == [] and not typo.exists()
    assert f'{typo} does not exist' in msg and 'generate_data=True' in msg, msg
    assert f'python -m actionnb.synth --preset mini --out {typo}' in msg and 'make data' in msg, msg
    # a folder that exists but holds no generated dataset is not generated into either
    typo.mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match='dataset_info.json'):
        build_annotations(check_params({'data_root': str(typo)}))
    assert no_generate == []


def test_generation_happens_at_the_default_path_or_when_asked(tmp_path, monkeypatch, no_generate):
    import actionnb.experiment as ex
    monkeypatch.setattr(ex, 'project_root', lambda start=None: tmp_path)
    other = tmp_path / 'elsewhere'
    for p in ({}, {'data_root': 'data/synth-sth-mini'}, {'data_root': str(other), 'generate_data': True}):
        with pytest.raises(Exception): ex.build_annotations(ex.check_params(p))   # the stub generates nothing to read
    # the default folder gets the demo preset, mini's folder the mini preset, any other folder (asked for) mini
    assert no_generate == [(tmp_path / 'data' / 'synth-sth-demo', 'demo'), (tmp_path / 'data' / 'synth-sth-mini', 'mini'),
                           (other, 'mini')]
    with pytest.raises(FileNotFoundError):
        ex.build_annotations(ex.check_params({'generate_data': False}))
    assert len(no_generate) == 3


# ---- 11. check_params checks types and ranges ---------------------------------------------------------------------
@pytest.mark.parametrize('key,value,words', [
    ('lr', 'fast', 'lr must be a number'), ('lr', 0.0, 'lr must be > 0'), ('lr', float('inf'), 'lr must be finite'),
    ('workers', -3, 'workers must be >= 0'), ('workers', 1.5, 'workers must be an integer'),
    ('name', float('nan'), 'name must be a string'), ('epochs', 0, 'epochs must be a positive integer'),
    ('epochs', True, 'epochs must be a positive integer'), ('weight_decay', -0.1, 'weight_decay must be >= 0'),
    ('label_smoothing', 1.0, 'label_smoothing must be in [0, 1)'), ('mixup_alpha', -1, 'mixup_alpha must be >= 0'),
    ('cutmix_alpha', float('nan'), 'cutmix_alpha must be finite'), ('max_train', 0, 'max_train must be None or >= 1'),
    ('max_valid', 'all', 'max_valid must be None or an integer'), ('seed', -1, 'seed must be >= 0'),
    ('threads', 0, 'threads must be None or >= 1'), ('device', 3, 'device must be None or a string'),
    ('resume', 'yes', 'resume must be one of'), ('generate_data', 'maybe', 'generate_data must be one of'),
    ('optimizer', 'adam', 'optimizer must be one of'), ('precision', 'fp8', 'precision must be one of'),
    ('grad_clip', -1.0, 'grad_clip must be None or >= 0'), ('warmup_epochs', -1, 'warmup_epochs must be >= 0'),
    ('pretrained', 1, 'pretrained must be None or a string'), ('dense_stride', 0, 'dense_stride must be a positive integer'),
])
def test_check_params_rejects_bad_types_and_ranges(key, value, words):
    from actionnb.experiment import ParameterError, check_params
    with pytest.raises(ParameterError, match=r'^' + words.replace('[', r'\[').replace('(', r'\(').replace(')', r'\)')):
        check_params({key: value})


def test_check_params_coerces_what_papermill_turns_into_numbers():
    from actionnb.experiment import check_params
    p = check_params({'name': 1, 'out_dir': 2024, 'lr': 1, 'warmup_epochs': 0, 'grad_clip': None, 'max_train': 8,
                      'resume': 'weights'})
    assert p['name'] == '1' and p['out_dir'] == '2024' and p['max_train'] == 8 and p['grad_clip'] is None
    assert p['lr'] == 1.0 and isinstance(p['lr'], float) and isinstance(p['warmup_epochs'], float)
    assert check_params({})['generate_data'] == 'auto'

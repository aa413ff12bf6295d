"""The `python -m actionnb.profile` command line, run in subprocesses (the notebook tests the functions in-process)."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

TOY = '''
import sys, torch.nn as nn
from actionnb.core import register_model
@register_model('cli_toy', presets={'paper': dict(width=8), 'tiny': dict(width=2)})
def cli_toy(num_classes=5, width=8, num_frames=8):
    return nn.Sequential(nn.Conv3d(3, width, 3, padding=1), nn.AdaptiveAvgPool3d(1), nn.Flatten(), nn.Linear(width, num_classes))
from actionnb.profile import _cli
sys.argv = ['actionnb.profile'] + sys.argv[1:]
_cli()
'''


def run(args, toy=True):
    cmd = [sys.executable, '-c', TOY, *args] if toy else [sys.executable, '-m', 'actionnb.profile', *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=120)


def test_cli_json_is_one_object():
    r = run(['--model', 'cli_toy', '--preset', 'paper', '--frames', '4', '--size', '16', '--json'])
    assert r.returncode == 0, r.stderr
    js = json.loads(r.stdout)                      # fails if anything else is printed on stdout
    assert {k: js[k] for k in ('model', 'preset', 'frames', 'size')} == dict(model='cli_toy', preset='paper', frames=4, size=16)
    assert js['params'] == 3 * 8 * 27 + 8 + 8 * 5 + 5
    assert abs(js['gflops'] * 1e9 - (4 * 16 * 16 * 8 * 81 + 8 * 5)) < 1


def test_cli_unknown_model_is_a_clear_error():
    r = run(['--model', 'no_such_model', '--json'], toy=False)
    assert r.returncode == 2
    assert "unknown model 'no_such_model'" in r.stderr and 'Registered models' in r.stderr
    assert r.stdout == ''


def test_cli_bad_preset_and_frames():
    r = run(['--model', 'cli_toy', '--preset', 'huge', '--json'])
    assert r.returncode == 2 and "no preset 'huge'" in r.stderr
    r = run(['--model', 'cli_toy', '--frames', '0'])
    assert r.returncode == 2 and '--frames must be a positive integer' in r.stderr

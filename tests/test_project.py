"""Project-level checks that do not belong to any one notebook."""
import configparser
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def settings():
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(ROOT / 'settings.ini')
    return cfg['DEFAULT']


def test_settings_keys():
    cfg = settings()
    assert cfg['update_pyproject'] == 'False'
    assert cfg['allowed_cell_metadata_keys'] == 'tags'
    assert cfg['tst_flags'].split() == ['notest', 'slow', 'gpu']
    dev = cfg['dev_requirements'].split()
    for pin in ['nbdev==2.4.14', 'execnb==0.1.16', 'fastcore==1.12.47', 'ghapi==1.0.6']:
        assert pin in dev, pin


def test_setup_py_has_no_pkg_resources():
    assert 'pkg_resources' not in (ROOT / 'setup.py').read_text().replace('`pkg_resources`', '')


def test_readme_is_generated_from_index():
    out = subprocess.run([sys.executable, '-m', 'jupyter', 'nbconvert', '--to', 'markdown', '--stdout',
                          str(ROOT / 'nbs' / 'index.ipynb')], capture_output=True, text=True, check=True).stdout
    out = re.sub(r'\]\(([0-9e][^)]*\.ipynb)\)', r'](nbs/\1)', out)      # the same rewrites as `make readme`
    out = out.replace('](../', '](')
    assert out.strip() == (ROOT / 'README.md').read_text().strip(), 'README.md is out of date: run `make readme`'


def test_readme_gives_the_ci_command():
    assert 'make test' in (ROOT / 'README.md').read_text()
    assert 'make test' in (ROOT / '.ci' / 'run').read_text()


def test_version_and_unknown_model():
    import actionnb
    from actionnb.core import UnknownModelError, create_model
    assert actionnb.__version__ == settings()['version']
    with pytest.raises(UnknownModelError, match="unknown model 'nope'"):
        create_model('nope')

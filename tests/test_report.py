"""The reproduction report (issue 20): `make report`'s notebook, run on the committed records, writes the committed
results/REPRODUCTION.md byte for byte and the README's summary cell as committed; the CLI's --check agrees."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _index_cell(path):
    from actionnb.report import INDEX_MARK
    nb = json.loads(Path(path).read_text())
    cells = [''.join(c['source']) for c in nb['cells'] if INDEX_MARK in ''.join(c['source'])]
    assert len(cells) == 1, f'{path}: {len(cells)} summary cells'
    return cells[0]


def test_make_report_reproduces_the_committed_report(tmp_path):
    shutil.copy(ROOT / 'nbs' / 'index.ipynb', tmp_path / 'index.ipynb')
    out = tmp_path / 'REPRODUCTION.md'
    cmd = [str(ROOT / '.venv' / 'bin' / 'papermill') if (ROOT / '.venv' / 'bin' / 'papermill').exists() else 'papermill',
           '--kernel', 'python3', '--no-progress-bar', str(ROOT / 'nbs' / 'experiments' / 'reproduction.ipynb'),
           str(tmp_path / 'executed.ipynb'), '-p', 'out', str(out), '-p', 'index', str(tmp_path / 'index.ipynb'),
           '-p', 'results_dir', str(ROOT / 'results')]
    r = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env={**os.environ, 'MPLBACKEND': 'Agg'})
    assert r.returncode == 0, r.stderr[-3000:]
    committed = (ROOT / 'results' / 'REPRODUCTION.md').read_text()
    assert out.read_text() == committed, 'results/REPRODUCTION.md is out of date: run `make report` and commit it'
    assert (tmp_path / 'reproduction.png').stat().st_size > 10_000
    # the README's front page: the index cell make report writes is the committed one, and README carries it
    assert _index_cell(tmp_path / 'index.ipynb') == _index_cell(ROOT / 'nbs' / 'index.ipynb')
    readme = (ROOT / 'README.md').read_text()
    summary = committed[committed.index('| paper |'):committed.index('\n\n', committed.index('| paper |'))]
    assert summary.replace('](../nbs/', '](nbs/') in readme, 'README.md lacks the report summary: run `make report`'


def test_every_paper_row_comes_from_a_record_or_says_so():
    from actionnb.report import PAPERS
    md = (ROOT / 'results' / 'REPRODUCTION.md').read_text()
    rows = [l for l in md[md.index('| paper |'):].splitlines()[2:9]]
    assert len(rows) == len(PAPERS) == 7
    for p, row in zip(PAPERS, rows):
        assert f'[{p.title}]' in row
        has = (ROOT / 'results' / f'{p.record}.json').exists()
        assert ('no record' in row) != has, (p.title, row)


def test_cli_check(tmp_path, monkeypatch, capsys):
    "--check exits 1 on a stale report and 0 on a fresh one (costs faked: the papermill test counts the real ones)."
    import actionnb.report as R
    fake = [{**e, 'costs': [{'params': 1.0, 'gflops': 1.0} for _ in e['paper'].costs]}
            for e in [{'paper': p, 'record': R.load_record(ROOT / 'results', p)} for p in R.PAPERS]]
    fake = [{**e, 'cost_verdict': R.cost_verdict(e['paper'], e['costs']), 'claims': R.judged(e['paper'], e['record']),
             'temporal': 'x'} for e in fake]
    monkeypatch.setattr(R, 'build_report', lambda results_dir='results': fake)
    out = tmp_path / 'REPRODUCTION.md'
    out.write_text('# stale\n')
    assert R.main(['--results', str(ROOT / 'results'), '--out', str(out), '--check']) == 1
    assert 'out of date' in capsys.readouterr().err
    out.write_text(R.render_report(fake))
    assert R.main(['--results', str(ROOT / 'results'), '--out', str(out), '--check']) == 0

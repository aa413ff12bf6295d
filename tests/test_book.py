"""The book: figures reach readers, stored outputs are fresh and rerun-stable, the HTML book renders and links.

tools/book.py implements `make outputs`, `make check-outputs` and `make docs`; these tests run it on tiny notebooks
built here (so the mechanism is tested whatever nbs/ holds), then check the real notebooks' stored outputs.
"""
import base64
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

ROOT = Path(__file__).resolve().parents[1]
BOOK = ROOT / 'tools' / 'book.py'
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / 'tools'))
import book  # noqa: E402

PLOT = ("import matplotlib.pyplot as plt\n"
        "plt.plot([0, 1, 4, 9]); plt.title('a figure'); plt.show()")


def notebook(*cells, md=()):
    nb = new_notebook(cells=[*(new_markdown_cell(m) for m in md), *(new_code_cell(c) for c in cells)])
    nb.metadata['kernelspec'] = {'name': 'python3', 'display_name': 'python3', 'language': 'python'}
    return nb


def env(**kw):
    "The environment `make test` gives pytest: Agg included, so the tool must undo it itself."
    return {**os.environ, 'MPLBACKEND': 'Agg', 'OMP_NUM_THREADS': '1', 'PYTHONPATH': str(ROOT), **kw}


def run_book(*args, cwd=ROOT, check=True):
    r = subprocess.run([sys.executable, str(BOOK), *map(str, args)], cwd=cwd, env=env(), capture_output=True,
                       text=True, timeout=300)
    if check: assert r.returncode == 0, r.stdout + r.stderr
    return r


def pngs(nb):
    return [o['data']['image/png'] for c in nb['cells'] if c['cell_type'] == 'code'
            for o in c.get('outputs', []) if 'image/png' in o.get('data', {})]


@pytest.fixture
def project(tmp_path):
    "A project of its own (settings.ini, nbs/), so that nbdev_clean reads this project's settings."
    shutil.copy(ROOT / 'settings.ini', tmp_path / 'settings.ini')
    (tmp_path / 'nbs').mkdir()
    return tmp_path


# ---- 1. figures reach readers ------------------------------------------------------------------------------------
def test_figures_under_agg_environment(tmp_path):
    "Executed as `make outputs` / `make docs` execute (here with MPLBACKEND=Agg set, as make test sets it): a PNG."
    nb = tmp_path / 'fig.ipynb'
    nbformat.write(notebook(PLOT), nb)
    # the failure being fixed: a kernel that inherits Agg shows nothing
    agg = tmp_path / 'agg.ipynb'
    subprocess.run([str(BIN / 'jupyter'), 'nbconvert', '--to', 'notebook', '--execute', str(nb), '--output', agg.name],
                   cwd=tmp_path, env=env(), check=True, capture_output=True, timeout=300)
    assert pngs(book.read(agg)) == []
    run_book('outputs', nb, '--jobs', '1', '--root', tmp_path)
    imgs = pngs(book.read(nb))
    assert len(imgs) == 1
    from PIL import Image
    w, h = Image.open(io.BytesIO(base64.b64decode(imgs[0]))).size
    assert 200 < w <= 461 and h <= 346, (w, h)      # 72 dpi: 6.4 x 4.8 in is at most 461 x 346 px (100 dpi: 640 x 480)


def test_makefile_keeps_agg_from_reader_targets():
    lines = subprocess.run(['make', '-n', '--no-print-directory', 'lab', 'docs', 'outputs'], cwd=ROOT, text=True,
                           capture_output=True, check=True).stdout.splitlines()
    runs = [l for l in lines if 'jupyter lab' in l or 'book.py docs' in l or 'book.py outputs' in l]
    assert len(runs) == 3, lines
    assert all('env -u MPLBACKEND' in l for l in runs), runs
    assert ('--allow-root' in runs[0]) == (os.getuid() == 0), runs[0]
    text = (ROOT / 'Makefile').read_text()
    assert not re.search(r'^export MPLBACKEND', text, re.M), 'MPLBACKEND must not be exported to every target'


# ---- 2. stored outputs -------------------------------------------------------------------------------------------
VOLATILE_NB = [
    "import time, tempfile; t0 = time.time()",
    PLOT,
    "class Thing: pass\nThing()",                                           # <__main__.Thing at 0x…>
    "print(tempfile.mkdtemp())",                                            # /tmp/tmpab12cd34
    "import warnings; warnings.warn('from a cell')",                        # /tmp/ipykernel_<pid>/…
    "import random\nx = [random.random() for _ in range(3)]\n"
    "plt.bar(range(3), x); plt.ylabel('time (s)'); plt.show()\n"
    "print(f'took {x[0]:.4f} s, {1 / x[1]:.1f} clips/s')",                  # a measurement, figure included
    "#| slow\nprint('not run: slow, as under nbdev_test')",
    "print(f'notebook ran in {time.time() - t0:.3f} s')",
]


def test_stored_outputs_are_clean_stable_and_checked(project):
    nb_path = project / 'nbs' / '10_demo.ipynb'
    nbformat.write(notebook(*VOLATILE_NB, md=['# Demo']), nb_path)
    assert any('no stored outputs' in m for m in book.problems(nb_path))

    def outputs_then_clean():
        run_book('outputs', nb_path, '--jobs', '1', '--root', project)
        subprocess.run([str(BIN / 'nbdev_clean')], cwd=project, check=True, capture_output=True, timeout=120)
        return nb_path.read_bytes()

    first = outputs_then_clean()
    nb = book.read(nb_path)
    assert nb.metadata['actionnb']['code_hash'] == book.code_hash(nb)               # nbdev_clean kept the hash
    assert len(pngs(nb)) == 2                                                        # and the outputs
    assert nb.cells[7].outputs == []                                                 # the slow cell was not run
    text = json.dumps(nb.cells[3:6], ensure_ascii=False)
    assert ' at 0x' not in text and 'ipykernel_…' in text and '/tmp/tmp…' in text, text
    assert book.problems(nb_path) == []
    subprocess.run([str(BIN / 'nbdev_clean')], cwd=project, check=True, capture_output=True, timeout=120)
    assert nb_path.read_bytes() == first, 'a second nbdev_clean changed the notebook'
    assert outputs_then_clean() == first, 'a rerun of the outputs step changed the notebook'

    # outputs from another version of the code
    nb.cells[2].source = PLOT.replace('a figure', 'another title')
    nbformat.write(nb, nb_path)
    assert any('another version of its code' in m for m in book.problems(nb_path))
    assert run_book('check', nb_path, '--root', project, check=False).returncode == 1
    # with changed code, every output is stored anew: the measurement's figure is new
    outputs_then_clean()
    assert pngs(book.read(nb_path))[1] != pngs(nb)[1]
    assert book.problems(nb_path) == []
    # no outputs at all (e.g. after nbdev_clean --clear_all), and a hash with the outputs stripped
    nb = book.read(nb_path)
    for c in nb.cells:
        if c.cell_type == 'code': c.outputs = []
    nbformat.write(nb, nb_path)
    assert any('no stored outputs' in m for m in book.problems(nb_path))


def test_size_limit(tmp_path):
    nb = notebook('print(1)')
    nb.cells[0].outputs = [new_output('stream', name='stdout', text='x' * (book.MAX_NB_BYTES + 1))]
    nb.metadata['actionnb'] = {'code_hash': book.code_hash(nb)}
    nbformat.write(nb, tmp_path / 'big.ipynb')
    assert any('over the 1.5 MB limit' in m for m in book.problems(tmp_path / 'big.ipynb'))


def test_rerun_rule_equivalence():
    def out(t): return [new_output('stream', name='stdout', text=t)]
    sig = book.signature
    assert sig(out('a 12.5 ms\nb 3 clips/s\n')) == sig(out('b 1017 clips/s\na  9.1 ms\n'))   # numbers, line order
    assert sig(out('train 50.00%\n')) != sig(out('valid 50.00%\n'))                            # words are content
    assert sig(out('x\n')) != sig(out('x\n') + out('y\n'))                                     # so is structure


TEACHING = book.teaching_notebooks()


@pytest.mark.parametrize('nb', TEACHING, ids=[p.stem for p in TEACHING])
def test_teaching_notebook_has_fresh_outputs(nb):
    "Fails until `make outputs` has been run and committed, and whenever a notebook's code changed since."
    assert book.problems(nb) == [], 'run `make outputs NBS=nbs/' + nb.name + '` and commit it'


def test_size_budget():
    total = sum(p.stat().st_size for p in (ROOT / 'nbs').rglob('*.ipynb'))
    assert total <= book.MAX_NBS_BYTES, f'nbs/ holds {total / 1e6:.1f} MB, over the {book.MAX_NBS_BYTES / 1e6:.0f} MB budget'


# ---- 4. the HTML book --------------------------------------------------------------------------------------------
def links(html_text):
    return [h for h in re.findall(r'href="([^"]+)"', html_text) if not re.match(r'(https?:|#|mailto:|data:)', h)]


def test_docs_mini_book(project):
    nbs, out = project / 'nbs', project / '_docs'
    index = new_notebook(cells=[new_markdown_cell('# Mini book\n\n> two notebooks'), new_markdown_cell(
        '## The learning path\n\n| notebook | what |\n|---|---|\n| **Part one** | |\n| [b first](b.ipynb) | b |\n'
        '| **Part two** | |\n| [a second](a.ipynb) | a |\n| [the experiment](experiments/e.ipynb) | e |')])
    nbformat.write(index, nbs / 'index.ipynb')
    nbformat.write(notebook(PLOT, md=['# A\n\nSee [b](b.ipynb), [its section](b.ipynb#Results) and [index](index.ipynb).']),
                   nbs / 'a.ipynb')
    b = notebook("print('executed')", md=['# B'])                  # fresh stored outputs that the code would not print
    b.cells[1].outputs = [new_output('stream', name='stdout', text='STORED OUTPUT\n')]
    b.metadata['actionnb'] = {'code_hash': book.code_hash(b)}
    nbformat.write(b, nbs / 'b.ipynb')
    (nbs / 'experiments').mkdir()
    nbformat.write(notebook("raise SystemExit('an experiment must not run in docs')", md=['# E']),
                   nbs / 'experiments' / 'e.ipynb')
    log = run_book('docs', '--nbs', nbs, '--out', out, '--jobs', '2', '--root', project).stdout
    pages = sorted(p.relative_to(out).as_posix() for p in out.rglob('*.html'))
    assert pages == ['a.html', 'b.html', 'experiments/e.html', 'index.html'], (pages, log)
    a = (out / 'a.html').read_text()
    assert '<img' in a and 'data:image/png;base64,' in a                           # a was executed: its figure
    assert 'STORED OUTPUT' in (out / 'b.html').read_text()                          # b was rendered as stored
    assert '<pre>executed' not in (out / 'b.html').read_text()
    assert 'papermill' in (out / 'experiments' / 'e.html').read_text()
    for page in pages:                                                               # every link resolves
        text = (out / page).read_text()
        assert '.ipynb"' not in text and '.ipynb#' not in text, page
        for h in links(text):
            target = (out / page).parent / h.split('#')[0]
            assert target.exists(), (page, h)
        nav = re.search(r'<nav class="book-nav">(.*?)</nav>', text, re.S).group(1)   # the sidebar, in index order
        names = [Path(h).stem for h in re.findall(r'href="([^"]+)"', nav)]
        assert names == ['index', 'b', 'a', 'e'], (page, names)
        assert nav.index('Part one') < nav.index('b first') < nav.index('Part two') < nav.index('a second')


def test_docs_page_of_a_real_notebook(tmp_path):
    "20_stw as `make docs` renders it from its stored outputs: its figures, and links to notebooks that exist."
    nbs = ROOT / 'nbs'
    nb = book.read(nbs / '20_stw.ipynb')
    assert book.fresh(nb), 'nbs/20_stw.ipynb has no fresh stored outputs: run `make outputs`'
    rows = book.learning_path(nbs / 'index.ipynb')
    assert [r[2] for r in rows][:3] == ['00_core.ipynb', '01_video.ipynb', '02_sampling.ipynb']
    assert book.build_page(nbs / '20_stw.ipynb', nbs, tmp_path, rows, 'actionnb', ROOT) == 'stored outputs'
    page = (tmp_path / '20_stw.html').read_text()
    assert re.search(r'<img[^>]+src="data:image/png;base64,', page)
    hrefs = [h.split('#')[0] for h in links(page) if h.split('#')[0].endswith('.html')]
    assert '13_backbones.html' in hrefs or 'index.html' in hrefs
    for h in hrefs: assert (nbs / h).with_suffix('.ipynb').exists(), h

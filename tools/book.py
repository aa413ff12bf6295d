"""The book's build steps: stored outputs of the teaching notebooks, their freshness check, and the HTML book.

    python tools/book.py outputs [NB ...] [--jobs N]   execute notebooks in fresh kernels and store their outputs
    python tools/book.py check   [NB ...]              fail if stored outputs are missing, stale or too large
    python tools/book.py docs    [--nbs DIR] [--out DIR] [--jobs N]   render every notebook to HTML with a sidebar

`make outputs`, `make docs` and `tests/test_book.py` call these; the rules they follow:

* **Figures.** Every kernel started here runs without `$MPLBACKEND` (the Makefile sets `Agg` for headless jobs, and
  ipykernel only installs its inline backend when the variable is unset), with PNG figures at `FIGURE_DPI` dpi
  (`InlineBackend.rc`, given on the kernel's command line; notebooks are not edited).
* **Same cells as nbdev_test.** Cells whose `#|` directives carry a flag of settings.ini's `tst_flags` (`slow`, `gpu`,
  `notest`) or `eval: false` are not executed; they are stored without outputs.
* **Deterministic outputs.** A rerun must not change the stored form. Two rules, by pattern (no notebook is edited):
  1. `RUN_SPECIFIC`: text naming the run rather than its result is rewritten in every text output: memory addresses
     (`<… at 0x7f…>`, as nbdev_clean does), the kernel's pid in `/tmp/ipykernel_<pid>/…`, `tempfile.mkdtemp` names
     (`/tmp/tmp…`, `/tmp/actionnb_ds_…`), the repository's absolute path (`<repo>`).
  Adjacent stream outputs of one name are merged (the kernel chunks streams differently from run to run).
  2. Rerun stability: if the stored notebook has the same code hash, a cell keeps its stored outputs, figures
     included, when the new ones are equivalent: the same output types in order and the same text once every number
     is masked and each stream's lines are sorted. So timings, rates, memory sizes, encoder noise, the order in which
     DataLoader workers print, and figures of such measurements do not churn; readers see the numbers of the run
     where the code (or a non-numeric output) last changed. `--refresh` (`make outputs REFRESH=1`) stores all anew.
* **Freshness.** After execution the notebook's metadata gets `actionnb.code_hash`, the SHA-256 of its code cells'
  sources in order. `check` fails when it is missing (no stored outputs), differs from the code (outputs from another
  version of the code), or the notebook is over `MAX_NB_BYTES`. It hashes only the notebook's own code: a change in
  another notebook's library code that alters this one's outputs is not detected.
* **Docs.** A notebook whose stored outputs are fresh is rendered as stored (no execution); a stale teaching
  notebook is executed into the HTML (never into `nbs/`); the papermill notebooks in `experiments/` are rendered
  unexecuted (they train models; `make demo` runs them). `.ipynb` links become `.html` links, and a sidebar lists
  the notebooks in the learning-path order of `index.ipynb`.
"""
from __future__ import annotations

import argparse
import concurrent.futures as cf
import configparser
import copy
import hashlib
import html
import json
import multiprocessing as mp
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
KEY = 'actionnb'                       # notebook metadata key; settings.ini allowed_metadata_keys keeps it
FIGURE_DPI = 72
MAX_NB_BYTES = 1_500_000               # one notebook with its outputs
MAX_NBS_BYTES = 20_000_000             # all of nbs/ (the size budget)
KERNEL = 'python3'
TIMEOUT = 1200                         # seconds per cell


def teaching_notebooks(nbs: Path = ROOT / 'nbs') -> list[Path]:
    "The numbered notebooks of the book (not index, not experiments/)."
    return sorted(p for p in nbs.glob('[0-9]*.ipynb'))


def read(path) -> nbformat.NotebookNode: return nbformat.read(str(path), as_version=4)


def _src(cell) -> str: return cell['source'] if isinstance(cell['source'], str) else ''.join(cell['source'])


def code_hash(nb) -> str:
    "SHA-256 of the code cells' sources, in order (outputs, ids and metadata excluded)."
    srcs = [_src(c) for c in nb['cells'] if c['cell_type'] == 'code']
    return hashlib.sha256(json.dumps(srcs, ensure_ascii=False).encode()).hexdigest()


def skip_flags(root: Path = ROOT) -> set[str]:
    cfg = configparser.ConfigParser(delimiters=['='])
    cfg.read(root / 'settings.ini')
    return set(cfg['DEFAULT'].get('tst_flags', '').split()) if 'DEFAULT' in cfg else set()


_DIRECTIVE = re.compile(r'^\s*#\|\s*(.*?)\s*$')


def skipped(cell, flags) -> bool:
    "True for the cells nbdev_test does not run: a `tst_flags` flag, or `eval: false`."
    for line in _src(cell).splitlines():
        m = _DIRECTIVE.match(line)
        if not m:
            if line.strip(): break                       # directives come first
            continue
        words = m.group(1).replace(':', ' ').split()
        if words and (words[0] in flags or (words[0] == 'eval' and words[1:2] == ['false'])): return True
    return False


# ---- determinism -------------------------------------------------------------------------------------------------
# Rule 1, always: text that names this run rather than the notebook's result is rewritten.
_TMP = re.escape(tempfile.gettempdir())
RUN_SPECIFIC = [  # (pattern, replacement), applied in order to every text output
    (re.compile(r'(<[^<>]*?) at 0x[0-9a-fA-F]+'), r'\1'),                      # memory addresses (as nbdev_clean)
    (re.compile(r'ipykernel_\d+'), 'ipykernel_…'),                             # the kernel's pid in cell file names
    (re.compile(_TMP + r'/([A-Za-z_.-]*?)[a-z0-9_]{8}(?=[/\'"\s:),]|$)', re.M), # tempfile.mkdtemp(prefix=…) names
     tempfile.gettempdir().replace('\\', '/') + r'/\1…'),
]
# Rule 2: when the code hash is unchanged, a cell whose new outputs are *equivalent* to its stored ones keeps the
# stored ones, figures included: same output types in order, same text once every number is masked and the lines of
# each stream are sorted (timings, rates, memory sizes, encoder noise, the order in which worker processes print).
_NUMBER = re.compile(r'[ \t]*\d+(?:[.,]\d+)*(?:e[-+]?\d+)?')             # with its padding


def _text(v) -> str: return v if isinstance(v, str) else ''.join(v)


def normalise_text(text: str, root: Path = ROOT) -> str:
    text = text.replace(str(root.resolve()), '<repo>')
    for pat, rep in RUN_SPECIFIC: text = pat.sub(rep, text)
    return text


def coalesce_streams(outputs):
    "Adjacent stream outputs of one name as one (how the kernel chunks a stream varies from run to run)."
    out = []
    for o in outputs:
        if out and o.get('output_type') == 'stream' and out[-1].get('output_type') == 'stream' \
                and out[-1].get('name') == o.get('name'):
            out[-1]['text'] = _text(out[-1]['text']) + _text(o['text'])
        else: out.append(o)
    return out


def signature(outputs):
    "What rule 2 compares: outputs without figures, numbers masked, stream lines sorted."
    sig = []
    for o in outputs:
        texts = {k: _NUMBER.sub('#', _text(v)) for k, v in o.get('data', {}).items() if k.startswith('text/')}
        if 'text' in o: texts['text'] = '\n'.join(sorted(_NUMBER.sub('#', _text(o['text'])).splitlines()))
        if 'traceback' in o: texts['traceback'] = _NUMBER.sub('#', '\n'.join(o['traceback']))
        sig.append((o.get('output_type'), o.get('name'), sorted(o.get('data', {})), texts))
    return sig


def normalise_outputs(nb, root: Path = ROOT):
    "Apply the `RUN_SPECIFIC` rules to stream, text/* and error outputs, in place."
    def norm(v): return normalise_text(_text(v), root)
    for cell in nb['cells']:
        for o in cell.get('outputs', []):
            if 'text' in o: o['text'] = norm(o['text'])
            for k in list(o.get('data', {})):
                if k.startswith('text/'): o['data'][k] = norm(o['data'][k])
            if 'traceback' in o: o['traceback'] = [norm(t) for t in o['traceback']]
        if 'outputs' in cell: cell['outputs'] = coalesce_streams(cell['outputs'])
    return nb


def keep_equivalent(new, old) -> int:
    "Rule 2: if `old` (the stored notebook) has `new`'s code hash, equivalent cells keep `old`'s outputs."
    if old['metadata'].get(KEY, {}).get('code_hash') != code_hash(new): return 0
    kept = 0
    code = lambda nb: [c for c in nb['cells'] if c['cell_type'] == 'code']
    for n, o in zip(code(new), code(old)):
        if o.get('outputs') and n['outputs'] != o['outputs'] and signature(n['outputs']) == signature(o['outputs']):
            n['outputs'] = copy.deepcopy(o['outputs']); kept += 1
    return kept


# ---- execution ---------------------------------------------------------------------------------------------------
def kernel_environment():
    "The environment of the kernels started here: no `$MPLBACKEND`, one torch thread (as `make test`), no bars."
    os.environ.pop('MPLBACKEND', None)
    os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.environ.setdefault('PYTHONHASHSEED', '0')
    os.environ.setdefault('ACTIONNB_PROGRESS', '0')


def execute(nb, cwd: Path, flags=frozenset(), kernel=KERNEL, timeout=TIMEOUT):
    "Run `nb` in a fresh kernel with cwd `cwd`; return an executed copy (cells in `flags` kept unexecuted)."
    from nbclient import NotebookClient
    kernel_environment()
    work = copy.deepcopy(nb)
    for c in work['cells']:
        if c['cell_type'] == 'code':
            c['outputs'], c['execution_count'] = [], None
            if skipped(c, flags): c.setdefault('metadata', {}).setdefault('tags', []).append('skip-execution')
    client = NotebookClient(work, kernel_name=kernel, timeout=timeout, resources={'metadata': {'path': str(cwd)}},
                            skip_cells_with_tag='skip-execution', record_timing=False,
                            extra_arguments=[f'--InlineBackend.rc={{"figure.dpi": {FIGURE_DPI}}}',
                                             "--InlineBackend.figure_formats={'png'}"])
    client.execute()
    out = copy.deepcopy(nb)
    for c, w in zip(out['cells'], work['cells']):
        if c['cell_type'] == 'code': c['outputs'], c['execution_count'] = w['outputs'], w.get('execution_count')
    return out


def store_outputs(path: Path, root: Path = ROOT, refresh: bool = False) -> float:
    "Execute the notebook at `path`, normalise its outputs, record its code hash, write it back; return seconds."
    t0 = time.perf_counter()
    old = read(path)
    nb = normalise_outputs(execute(old, path.parent, skip_flags(root)), root)
    if not refresh: keep_equivalent(nb, old)
    nb['metadata'][KEY] = {'code_hash': code_hash(nb)}
    nbformat.write(nb, str(path))
    return time.perf_counter() - t0


def _pool(jobs):
    return cf.ProcessPoolExecutor(max_workers=jobs, mp_context=mp.get_context('spawn'))


def cmd_outputs(paths, jobs, root, refresh=False):
    failed = []
    with _pool(jobs) as pool:
        futs = {pool.submit(store_outputs, p, root, refresh): p for p in paths}
        for f in cf.as_completed(futs):
            try: print(f'outputs stored: {futs[f].relative_to(root) if futs[f].is_relative_to(root) else futs[f]} '
                       f'in {f.result():.0f} s', flush=True)
            except Exception as e:
                failed.append(futs[f]); print(f'FAILED {futs[f]}: {type(e).__name__}: {str(e)[-3000:]}', flush=True)
    return 1 if failed else 0


# ---- the check ---------------------------------------------------------------------------------------------------
def problems(path: Path) -> list[str]:
    "Why the stored outputs of `path` cannot be shown to readers; empty when they can."
    out, size = [], path.stat().st_size
    if size > MAX_NB_BYTES: out.append(f'{path.name}: {size / 1e6:.2f} MB, over the {MAX_NB_BYTES / 1e6:.1f} MB limit')
    nb = read(path)
    stored = nb['metadata'].get(KEY, {}).get('code_hash')
    n_out = sum(len(c.get('outputs', [])) for c in nb['cells'] if c['cell_type'] == 'code')
    if stored is None or n_out == 0: out.append(f'{path.name}: no stored outputs')
    elif stored != code_hash(nb): out.append(f'{path.name}: stored outputs come from another version of its code')
    return out


def fresh(nb) -> bool:
    return (nb['metadata'].get(KEY, {}).get('code_hash') == code_hash(nb)
            and any(c.get('outputs') for c in nb['cells'] if c['cell_type'] == 'code'))


# ---- the HTML book -----------------------------------------------------------------------------------------------
_LINK = re.compile(r'\[([^\]]+)\]\(([^)\s]+\.ipynb)\)')


def learning_path(index: Path) -> list[tuple[str | None, str, str]]:
    """(section, label, notebook path relative to nbs/) in the order of the learning-path table of `index`, the
    table rows like `| **Data** | | |` starting sections; notebooks linked elsewhere in the index (the report's summary
    above it, say) follow."""
    nb, rows, seen, section = read(index), [], set(), None
    md = [c for c in nb['cells'] if c['cell_type'] == 'markdown']
    path = [c for c in md if _src(c).lstrip().startswith('## The learning path')]
    for cell in path + [c for c in md if c not in path]:
        for line in _src(cell).splitlines():
            head = re.match(r'^\|\s*\*\*(.+?)\*\*\s*\|', line)
            if head: section = head.group(1); continue
            if line.startswith('#'): section = None
            for label, target in _LINK.findall(line):
                if target not in seen and (index.parent / target).exists():
                    seen.add(target); rows.append((section, label, target))
            if line.startswith('|') and _LINK.search(line): continue
    return rows


def _nav(rows, here: str, title: str) -> str:
    "The sidebar for the page of notebook `here` (a path relative to nbs/)."
    def href(target): return html.escape(os.path.relpath(target[:-6] + '.html', os.path.dirname(here) or '.'))
    parts = [f'<nav class="book-nav"><a class="book-title" href="{href("index.ipynb")}">{html.escape(title)}</a><ul>']
    section = None
    for sec, label, target in rows:
        if sec != section and sec: parts.append(f'<li class="book-section">{html.escape(sec)}</li>')
        section = sec
        cur = ' class="current"' if target == here else ''
        parts.append(f'<li><a{cur} href="{href(target)}">{html.escape(label)}</a></li>')
    parts.append('</ul></nav>')
    return ''.join(parts)


_CSS = """<style>
nav.book-nav{position:fixed;top:0;left:0;bottom:0;width:15rem;overflow-y:auto;padding:1rem;box-sizing:border-box;
  background:#f5f5f5;border-right:1px solid #ddd;font:14px/1.5 system-ui,sans-serif;z-index:100}
nav.book-nav ul{list-style:none;margin:0;padding:0}
nav.book-nav a{color:#1a5fb4;text-decoration:none}
nav.book-nav a.current{font-weight:bold;color:#000}
nav.book-nav .book-title{display:block;font-weight:bold;font-size:1.2em;margin-bottom:.5rem}
nav.book-nav .book-section{margin-top:.7rem;font-weight:bold;color:#555;text-transform:uppercase;font-size:.8em}
body{margin-left:15rem!important}
.book-note{margin:1rem 0;padding:.5rem 1rem;background:#fff8e1;border-left:4px solid #f0b400}
</style>"""


def _ipynb_links_to_html(body: str) -> str:
    "Relative `.ipynb` links (optionally with an #anchor) point at the rendered pages."
    return re.sub(r'href="(?!https?:|/)([^"#]+)\.ipynb(#[^"]*)?"', lambda m: f'href="{m[1]}.html{m[2] or ""}"', body)


def render_page(nb, rel: str, rows, title: str, note: str | None = None) -> str:
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter(template_name='lab').from_notebook_node(nb)
    body = _ipynb_links_to_html(body)
    body = body.replace('</head>', _CSS + '</head>', 1)
    extra = _nav(rows, rel, title) + (f'<div class="book-note">{html.escape(note)}</div>' if note else '')
    return re.sub(r'(<body[^>]*>)', lambda m: m[1] + extra, body, count=1)


def build_page(path: Path, nbs: Path, out: Path, rows, title: str, root: Path) -> str:
    "Render one notebook of `nbs` into `out`; return how its outputs were obtained."
    rel = path.relative_to(nbs).as_posix()
    nb, note = read(path), None
    has_code = any(c['cell_type'] == 'code' and _src(c).strip() for c in nb['cells'])
    if not has_code or fresh(nb): how = 'stored outputs' if has_code else 'no code'
    elif rel.startswith('experiments/'):
        how, note = 'not executed', ('A papermill experiment: rendered without running it. `make demo` or papermill '
                                     'runs it and writes its outputs under runs/.')
    else:
        how = 'executed (stored outputs missing or stale)'
        nb = normalise_outputs(execute(nb, path.parent, skip_flags(root)), root)
    dest = out / (rel[:-6] + '.html')
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(render_page(nb, rel, rows, title, note), encoding='utf-8')
    return how


def cmd_docs(nbs: Path, out: Path, jobs: int, root: Path) -> int:
    t0 = time.perf_counter()
    index = nbs / 'index.ipynb'
    rows = learning_path(index)
    listed = {r[2] for r in rows}
    others = sorted(p.relative_to(nbs).as_posix() for p in nbs.rglob('*.ipynb')
                    if '.ipynb_checkpoints' not in p.parts and p.name != 'index.ipynb')
    rows += [('Other notebooks', Path(o).stem, o) for o in others if o not in listed]
    title = next((_src(c).splitlines()[0].lstrip('# ').strip() for c in read(index)['cells']
                  if c['cell_type'] == 'markdown' and _src(c).startswith('# ')), 'Notebooks')
    pages = [index] + [nbs / r[2] for r in rows]
    failed = 0
    with _pool(jobs) as pool:
        futs = {pool.submit(build_page, p, nbs, out, rows, title, root): p for p in pages}
        for f in cf.as_completed(futs):
            try: print(f'docs: {futs[f].relative_to(nbs)}: {f.result()}', flush=True)
            except Exception as e: failed += 1; print(f'FAILED {futs[f]}: {type(e).__name__}: {str(e)[-3000:]}')
    print(f'docs: {len(pages) - failed} pages in {out} in {time.perf_counter() - t0:.0f} s')
    return 1 if failed else 0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('command', choices=['outputs', 'check', 'docs'])
    ap.add_argument('notebooks', nargs='*', type=Path, help='default: the teaching notebooks nbs/[0-9]*.ipynb')
    ap.add_argument('--jobs', type=int, default=2)
    ap.add_argument('--refresh', action='store_true', help='outputs: store every new output (no rule 2)')
    ap.add_argument('--root', type=Path, default=ROOT, help='the project (settings.ini, the path to normalise)')
    ap.add_argument('--nbs', type=Path, default=None, help='docs: the notebook folder (default ROOT/nbs)')
    ap.add_argument('--out', type=Path, default=None, help='docs: the output folder (default ROOT/_docs)')
    a = ap.parse_args(argv)
    root = a.root.resolve()
    paths = [p.resolve() for p in a.notebooks] or teaching_notebooks(root / 'nbs')
    if a.command == 'outputs': return cmd_outputs(paths, a.jobs, root, a.refresh)
    if a.command == 'check':
        found = [m for p in paths for m in problems(p)]
        total = sum(p.stat().st_size for p in (root / 'nbs').rglob('*.ipynb'))
        if not a.notebooks and total > MAX_NBS_BYTES: found.append(f'nbs/ is {total / 1e6:.1f} MB, over the budget')
        for m in found: print(m)
        if found: print('run `make outputs` (or `make outputs NBS=nbs/<notebook>.ipynb`) and commit nbs/')
        return 1 if found else 0
    return cmd_docs((a.nbs or root / 'nbs').resolve(), (a.out or root / '_docs').resolve(), a.jobs, root)


if __name__ == '__main__':
    sys.exit(main())

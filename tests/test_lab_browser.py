"""JupyterLab as a reader uses it, in headless Chromium: `make lab`, open 20_stw, Run All, see a figure.

What this proves: `make lab` starts (as root too), the notebook opens in JupyterLab's UI with the `python3` kernel,
JupyterLab's own "Run All Cells" command (`notebook:run-all-cells`, called through the app object that
`--LabApp.expose_app_in_browser` exposes, as JupyterLab's UI tests do) executes every cell without an error output,
the figures arrive as loaded `<img>` elements, and the screenshot's pixels where the first figure sits are not blank.
Chromium is driven through its DevTools protocol (websocket-client, a jupyter_server dependency), so no browser
automation package is needed. The server serves a copy of nbs/ so that nothing it saves lands in nbs/.
Skipped, with the reason, where Chromium is not installed (`apt-get install chromium`).
"""
import base64
import io
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BROWSERS = ('chromium', 'chromium-browser', 'google-chrome')
LAB_TIMEOUT = 60          # server and page start
RUN_TIMEOUT = 420         # Run All of 20_stw (its `#| slow` cells included, as a reader's Run All runs them)


def free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0)); return s.getsockname()[1]


def wait_for(fn, timeout, what, every=0.5):
    t0, last = time.monotonic(), None
    while time.monotonic() - t0 < timeout:
        try:
            last = fn()
            if last: return last
        except Exception as e: last = e
        time.sleep(every)
    raise TimeoutError(f'{what}: not within {timeout} s (last: {last!r})')


class DevTools:
    "The least of the Chrome DevTools protocol: evaluate JS in a page and take a screenshot."
    def __init__(self, ws_url):
        import websocket
        self.ws, self.n = websocket.create_connection(ws_url, timeout=120, suppress_origin=True), 0

    def call(self, method, **params):
        self.n += 1
        self.ws.send(json.dumps({'id': self.n, 'method': method, 'params': params}))
        while True:
            msg = json.loads(self.ws.recv())
            if msg.get('id') == self.n:
                if 'error' in msg: raise RuntimeError(msg['error'])
                return msg['result']

    def js(self, expr):
        r = self.call('Runtime.evaluate', expression=expr, returnByValue=True, awaitPromise=True)
        if 'exceptionDetails' in r: raise RuntimeError(r['exceptionDetails'].get('text'))
        return r['result'].get('value')


def kill_group(proc):
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try: proc.wait(15)
        except subprocess.TimeoutExpired: os.killpg(proc.pid, signal.SIGKILL); proc.wait(5)


KERNEL = """(() => { const app = window.jupyterapp; if (!app) return null;
  const w = [...app.shell.widgets('main')].find(w => w.sessionContext && w.context);
  const k = w && w.sessionContext.session && w.sessionContext.session.kernel;
  return k ? k.name + ':' + k.status + ':' + w.context.path : null; })()"""
RUN_ALL = """(() => { const app = window.jupyterapp;
  const w = [...app.shell.widgets('main')].find(w => w.sessionContext && w.context);
  app.shell.activateById(w.id); app.commands.execute('notebook:run-all-cells'); return w.id; })()"""
STATE = """(() => { const cells = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell')];
  const prompts = cells.map(c => (c.querySelector('.jp-InputPrompt') || {}).textContent || '');
  const imgs = [...document.querySelectorAll('.jp-OutputArea-output img')];
  return {cells: cells.length, busy: prompts.filter(p => p.includes('*')).length,
          done: prompts.filter(p => /\\[\\d+\\]/.test(p)).length,
          errors: document.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.error"]').length,
          imgs: imgs.length, loaded: imgs.filter(i => i.complete && i.naturalWidth > 0).length}; })()"""


def test_lab_runs_20_stw_and_shows_a_figure(tmp_path):
    browser = next((shutil.which(b) for b in BROWSERS if shutil.which(b)), None)
    if browser is None: pytest.skip('Chromium is not installed (apt-get install chromium): the browser check cannot run')
    try: import websocket  # noqa: F401
    except ImportError: pytest.skip('websocket-client is not installed: the DevTools protocol cannot be spoken')
    shutil.copytree(ROOT / 'nbs', tmp_path / 'nbs', ignore=shutil.ignore_patterns('.ipynb_checkpoints'))
    for d in ('settings', 'workspaces', 'profile', 'runtime'): (tmp_path / d).mkdir()
    # no news toast over the notebook
    ns = tmp_path / 'settings' / '@jupyterlab' / 'apputils-extension'; ns.mkdir(parents=True)
    (ns / 'notification.jupyterlab-settings').write_text('{"fetchNews": "false", "checkForUpdates": false}')
    port, token = free_port(), secrets.token_hex(16)
    args = (f'--no-browser --ServerApp.ip=127.0.0.1 --ServerApp.port={port} --ServerApp.port_retries=0 '
            f'--IdentityProvider.token={token} --LabApp.expose_app_in_browser=True '
            f'--LabApp.user_settings_dir={tmp_path / "settings"} --LabApp.workspaces_dir={tmp_path / "workspaces"}')
    env = {**os.environ, 'MPLBACKEND': 'Agg', 'PYTHONPATH': str(ROOT), 'JUPYTER_RUNTIME_DIR': str(tmp_path / 'runtime')}
    log = open(tmp_path / 'lab.log', 'w')
    lab = subprocess.Popen(['make', '-s', '--no-print-directory', 'lab', f'LAB_DIR={tmp_path / "nbs"}',
                            f'LAB_ARGS={args}'], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                           start_new_session=True)
    chrome = None
    try:
        base = f'http://127.0.0.1:{port}'
        wait_for(lambda: urllib.request.urlopen(f'{base}/api/status?token={token}', timeout=2).status == 200,
                 LAB_TIMEOUT, 'JupyterLab to answer')
        chrome = subprocess.Popen([browser, '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
                                   '--remote-debugging-port=0', f'--user-data-dir={tmp_path / "profile"}',
                                   '--window-size=1400,1000', 'about:blank'],
                                  stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
        port_file = tmp_path / 'profile' / 'DevToolsActivePort'
        dport = wait_for(lambda: port_file.exists() and port_file.read_text().split()[0], 20, 'Chromium DevTools')
        pages = json.load(urllib.request.urlopen(f'http://127.0.0.1:{dport}/json', timeout=5))
        dt = DevTools(next(p for p in pages if p['type'] == 'page')['webSocketDebuggerUrl'])
        dt.call('Page.enable')
        dt.call('Page.navigate', url=f'{base}/lab/tree/20_stw.ipynb?token={token}')
        seen = []
        def kernel_ready():
            seen.append(dt.js(KERNEL))
            return seen[-1] if (seen[-1] or '').startswith('python3:idle') else None
        try: kernel = wait_for(kernel_ready, LAB_TIMEOUT, 'the notebook to open with an idle python3 kernel')
        except TimeoutError:
            (tmp_path / 'failed.png').write_bytes(base64.b64decode(dt.call('Page.captureScreenshot')['data']))
            raise AssertionError(f'kernel state {seen[-3:]}, screenshot {tmp_path / "failed.png"}')
        assert kernel.endswith('20_stw.ipynb'), kernel
        dt.js(RUN_ALL)
        t0 = time.monotonic()
        state = wait_for(lambda: (s := dt.js(STATE))['cells'] and s['done'] == s['cells'] and not s['busy']
                         and 'idle' in dt.js(KERNEL) and s, RUN_TIMEOUT, 'Run All to finish', every=2)
        run_s = time.monotonic() - t0
        assert state['errors'] == 0, state
        assert state['imgs'] >= 1 and state['loaded'] == state['imgs'], state
        box = dt.js("""(() => { const i = document.querySelector('.jp-OutputArea-output img');
          i.scrollIntoView({block: 'center'}); const r = i.getBoundingClientRect();
          return [r.left, r.top, r.width, r.height, window.devicePixelRatio]; })()""")
        time.sleep(1)
        box = dt.js("""(() => { const r = document.querySelector('.jp-OutputArea-output img').getBoundingClientRect();
          return [r.left, r.top, r.width, r.height, window.devicePixelRatio]; })()""")
        png = base64.b64decode(dt.call('Page.captureScreenshot', format='png')['data'])
        shot = tmp_path / 'lab_20_stw.png'
        shot.write_bytes(png)
        if os.environ.get('ACTIONNB_SCREENSHOTS'):
            Path(os.environ['ACTIONNB_SCREENSHOTS']).mkdir(parents=True, exist_ok=True)
            shutil.copy(shot, Path(os.environ['ACTIONNB_SCREENSHOTS']) / shot.name)
        from PIL import Image, ImageStat
        img = Image.open(io.BytesIO(png)).convert('L')
        x, y, w, h, dpr = box
        assert w > 100 and h > 50, box
        fig = img.crop(tuple(int(v * dpr) for v in (max(x, 0), max(y, 0), x + w, y + h)))
        st = ImageStat.Stat(fig)
        dark = sum(fig.histogram()[:128]) / (fig.width * fig.height)
        assert st.stddev[0] > 20 and 0.01 < dark < 0.9, (st.stddev, dark)   # lines, text and fill, not a blank box
        print(f'Run All of 20_stw in JupyterLab: {run_s:.0f} s, {state}; screenshot {shot}')
    finally:
        if chrome is not None: kill_group(chrome)
        kill_group(lab)
        log.close()
    assert not re.search(r'Running as root is not recommended', (tmp_path / 'lab.log').read_text())

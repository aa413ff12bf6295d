"""Wheels for a GPU machine that cannot reach the package registries (the device tool's nvidia-h200 image: CPython
3.12 with torch, torchvision, timm, matplotlib ... already installed). Downloads, for CPython 3.12 on manylinux x86-64,
what `make gpu-check` and `make test-gpu` need and that image lacks, into .whl/ (git-ignored), and builds the pure-Python
packages that PyPI has only as sources (fvcore, iopath). About 45 MB: with the repository it fits the 64 MiB a device
call carries.

    python3 tools/gpu_wheels.py          # here, where pip reaches PyPI  ->  .whl/*.whl

then, on the GPU machine, from the repository root (carry: [".whl"]):

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site:$PWD
    python3 -m actionnb.gpu check --out results/gpu.md      # make gpu-check, without make's virtual environment
    python3 -m pytest -q -rs tests/test_gpu.py               # make test-gpu
"""
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

# What the project imports at run time and the image lacks (settings.ini's requirements, less what the image has),
# and papermill with a kernel for the training notebooks. Their dependencies are resolved by pip for the target.
NEEDED = ['av>=18.1', 'fvcore==0.1.5.post20221221', 'torchinfo>=1.8', 'papermill>=2.7', 'ipykernel>=7.0']
SOURCE_ONLY = ['fvcore==0.1.5.post20221221', 'iopath==0.1.10']      # no wheels on PyPI: built here (pure Python)
# The image's packages (the device tool's KINDS.md, read 2026-11-17): never carried, so no package exists twice there.
PRESENT = set("""
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build certifi
    charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
    cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
    flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
    huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin
    jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax
    llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
    multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro nvidia-cublas
    nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile
    nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13
    nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax
    opt-einsum opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
    portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
    pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist
    python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
    scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
    sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
    tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision
    tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug
    wheel wrapt xarray xxhash yarl zipp
""".split())
TARGET = ['--python-version', '3.12', '--implementation', 'cp', '--only-binary=:all:'] + \
         [a for p in ('manylinux_2_28_x86_64', 'manylinux_2_17_x86_64', 'manylinux2014_x86_64', 'manylinux1_x86_64')
          for a in ('--platform', p)]


def canon(name: str) -> str:
    return re.sub(r'[-_.]+', '-', name).lower()


def main(out: str = '.whl') -> int:
    out = Path(out)
    out.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / 'src'
        # the source-only packages first, as wheels, so that the resolver below finds them in --find-links
        subprocess.run([sys.executable, '-m', 'pip', 'wheel', '-q', '--no-deps', '-w', str(src), *SOURCE_ONLY], check=True)
        dl = Path(tmp) / 'dl'
        subprocess.run([sys.executable, '-m', 'pip', 'download', '-q', '-d', str(dl), '--find-links', str(src), *TARGET,
                        *NEEDED], check=True)
        kept, skipped = [], []
        for w in sorted(dl.glob('*.whl')):
            name = canon(w.name.split('-')[0])
            if name in {canon(p) for p in PRESENT}: skipped.append(name); continue
            shutil.copy(w, out / w.name); kept.append(w.name)
    size = sum((out / k).stat().st_size for k in kept) / 2**20
    print(f'{len(kept)} wheels, {size:.1f} MiB, in {out}/; already in the image, not carried: {", ".join(skipped)}')
    return 0


if __name__ == '__main__':
    sys.exit(main(*sys.argv[1:]))

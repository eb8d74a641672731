# serbench on CPUs: a small image that runs jobs under the container's CPU and memory limits.
#
#   docker build -t serbench .                                  # runtime image (ENTRYPOINT serbench)
#   docker build -t serbench:test --target test .               # + dev extras, tests, chromium
#   docker build --build-arg PREFETCH_SPEECHBRAIN=1 -t serbench .   # + the paper's checkpoint in /cache
#
# Build arguments:
#   BASE                  any image with Python 3.11 as `python3` (default: the official slim image;
#                         CI builds a Debian bookworm base with debootstrap)
#   TORCH_INDEX           where the CPU build of torch comes from (PyTorch's CPU wheel index); empty:
#                         pip's default index, plus PIP_FIND_LINKS / PIP_EXTRA_INDEX_URL
#   TORCH_SPEC            the torch requirement (the pin of pyproject.toml)
#   PIP_INDEX_URL, PIP_FIND_LINKS, PIP_EXTRA_INDEX_URL, PIP_CONSTRAINT
#                         seen by every pip call of the build when set (e.g. a local wheel folder
#                         served over HTTP); build-time only (docker history shows them, ENV does not)
#   PREFETCH_SPEECHBRAIN  1: fetch speechbrain/emotion-recognition-wav2vec2-IEMOCAP (and the
#                         facebook/wav2vec2-base config it names) into /cache with serbench's own loader
#
# Volumes: /data (corpora, $SERBENCH_DATA), /models (local model folders, $SERBENCH_MODELS),
# /results (serbench run --out /results), /cache (hub downloads: HF_HOME, SpeechBrain's files).
# compose.yaml mounts them; see the README's "Containers" section.

ARG BASE=python:3.11-slim

FROM ${BASE} AS runtime

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ARG TORCH_SPEC="torch>=2.9,<2.14"
ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_EXTRA_INDEX_URL
ARG PIP_CONSTRAINT

# A virtual environment works the same on the official image and on Debian's python3, whose
# pip refuses to install into the system (PEP 668).
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN python3 -m venv /opt/venv \
 && pip install --no-cache-dir --upgrade pip

# torch alone first: the largest layer, and the one that changes least.
# Its C++ headers and test binaries (~150 MB) are not needed to run it.
RUN pip install --no-cache-dir ${TORCH_INDEX:+--index-url "$TORCH_INDEX"} "$TORCH_SPEC" \
 && rm -rf /opt/venv/lib/python3*/site-packages/torch/include /opt/venv/lib/python3*/site-packages/torch/test \
 && python -c "import torch; print('torch', torch.__version__)"

# The dependencies from pyproject.toml (reinstalled only when pyproject.toml changes). torch is
# already there and inside the pin, so pip keeps it. The test suites of the large scientific
# packages (~150 MB; never imported by them) are left out; the imports serbench needs are checked.
COPY pyproject.toml /tmp/serbench/pyproject.toml
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('/tmp/serbench/pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/serbench/requirements.txt \
 && pip install --no-cache-dir -r /tmp/serbench/requirements.txt "$TORCH_SPEC" \
 && rm -rf /tmp/serbench \
 && for p in matplotlib networkx numpy pandas scipy sklearn sympy; do \
        find /opt/venv/lib/python3*/site-packages/$p -type d -name tests -prune -exec rm -rf {} + ; done \
 && python -c "import ax, hyperopt, matplotlib.figure, optuna, sklearn.metrics, soundfile, transformers"

WORKDIR /app
COPY pyproject.toml README.md ./
COPY serbench ./serbench
COPY jobs ./jobs
# The package itself. `serbench doctor --fix` then removes torchaudio's compiled extension, which
# cannot load beside the CPU build of torch (serbench uses only torchaudio's Python parts), and
# fails the build if torchaudio still does not import.
RUN pip install --no-cache-dir --no-deps . \
 && rm -rf build serbench.egg-info \
 && serbench doctor --fix \
 && python -c "import speechbrain.inference.classifiers"

# /tmp/ray is Ray's temporary folder (sessions, logs, the nodes' sockets); compose.yaml shares it
# between the ray-head, ray-worker and ray-job containers as the volume ray-tmp, which takes
# this folder's owner and mode when it is created.
RUN useradd --create-home --uid 1000 --shell /bin/bash serbench \
 && mkdir -p /data /models /results /cache/huggingface /cache/wav2vec2_checkpoints /tmp/ray \
 && chown -R serbench:serbench /results /cache /tmp/ray \
 && chmod 1777 /results /cache /cache/huggingface /cache/wav2vec2_checkpoints /tmp/ray \
 && ln -s /cache/wav2vec2_checkpoints /app/wav2vec2_checkpoints

# Hub downloads go to /cache (a volume in compose.yaml). SpeechBrain's published
# hyperparams.yaml caches facebook/wav2vec2-base under ./wav2vec2_checkpoints, relative to the
# working directory: /app/wav2vec2_checkpoints links it into /cache as well.
ENV SERBENCH_DATA=/data \
    SERBENCH_MODELS=/models \
    HF_HOME=/cache/huggingface \
    XDG_CACHE_HOME=/cache \
    MPLCONFIGDIR=/cache/matplotlib

USER serbench

ARG PREFETCH_SPEECHBRAIN=0
RUN if [ "$PREFETCH_SPEECHBRAIN" = 1 ]; then \
        python -c "from serbench.backbones.speechbrain_wav2vec2_model import load_checkpoint; \
load_checkpoint('speechbrain/emotion-recognition-wav2vec2-IEMOCAP'); print('prefetched into /cache')"; \
    fi

VOLUME ["/data", "/models", "/results", "/cache"]
ENTRYPOINT ["serbench"]
CMD ["--help"]


# The test suite: dev extras, the repository's tests and Debian's chromium (the HTML report's
# screenshot tests). Runs as root: a test installs the example plugin into /opt/venv.
FROM runtime AS test

ARG PIP_INDEX_URL
ARG PIP_FIND_LINKS
ARG PIP_EXTRA_INDEX_URL
ARG PIP_CONSTRAINT
USER root
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends chromium \
 && rm -rf /var/lib/apt/lists/*
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['dev']))" \
        > /tmp/dev-requirements.txt \
 && pip install --no-cache-dir -r /tmp/dev-requirements.txt \
 && rm /tmp/dev-requirements.txt
COPY . .
# tests/execution/test_compose.py checks compose.yaml with docker-compose on the host, not in here.
ENV PYTEST_ADDOPTS="--ignore=tests/execution/test_compose.py" \
    HF_HUB_OFFLINE=1
ENTRYPOINT ["python", "-m", "pytest"]
CMD ["-q"]


# The default target (the last stage): the runtime image. BuildKit builds only what it needs;
# the classic builder (DOCKER_BUILDKIT=0) builds every stage before it, so pass --target runtime.
FROM runtime

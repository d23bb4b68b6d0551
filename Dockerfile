# EquiLab: the dashboard on the shipped default (target `app`, the default) or the engine CLI on a GPU host
# (target `engine`). PyPI's Linux torch wheels bundle CUDA, so the same venv runs on CPU and, with
# `docker run --gpus all`, on an NVIDIA GPU; only the host driver is needed.
#
#   docker build -t equilab .                      && docker run --rm -p 8501:8501 equilab
#   docker build -t equilab-engine --target engine . && docker run --rm --gpus all -v $PWD/runs:/app/runs \
#       equilab-engine train --method equimod --dataset cifar10 --data-root /data/cifar10-jpeg
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS deps
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /app
COPY requirements.txt .
RUN python -m venv /venv && /venv/bin/pip install -r requirements.txt

FROM ${PYTHON_IMAGE} AS runtime
ENV PATH=/venv/bin:$PATH PYTHONUNBUFFERED=1 NUMBA_CACHE_DIR=/app/.cache/numba EQUILAB_CACHE=/app/.cache/equilab
RUN useradd --create-home --uid 1000 equilab
WORKDIR /app
# What the non-root user writes: numba's and the engine's caches, stores the app builds on first open, runs.
RUN install -d -o equilab -g equilab /app/.cache /app/stores /app/runs
COPY --from=deps /venv /venv
COPY --chown=equilab:equilab engine/ engine/
COPY --chown=equilab:equilab app/ app/
COPY --chown=equilab:equilab checkpoints/ checkpoints/
COPY --chown=equilab:equilab .streamlit/ .streamlit/
# The About page shows the study figures (docs/study-*/*.png).
COPY --chown=equilab:equilab docs/ docs/
USER 1000
# Same as `make install`: compile UMAP's numba kernels into the image.
RUN python -m engine precompile

FROM runtime AS engine
ENTRYPOINT ["python", "-m", "engine"]
CMD ["--help"]

FROM runtime AS app
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health')"]
# Inside a container the server must listen on all interfaces for `-p 8501:8501` to reach it; outside
# Docker, `make run` binds 127.0.0.1 and opening it up is an explicit `make run ADDRESS=0.0.0.0`.
CMD ["streamlit", "run", "app/serve.py", "--server.address=0.0.0.0", "--server.port=8501", \
     "--server.headless=true", "--browser.gatherUsageStats=false"]

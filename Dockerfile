# syntax=docker/dockerfile:1.7
# Ensemble app image: Chainlit + the supervisor + the documents room (`docs` extra: unstructured's
# partitioners, spaCy's English model, PDFium), without the `local` extra (no torch, no llama.cpp: in the
# cluster every model sits behind its own server). Build: docker build -t ensemble:<tag> .
# BASE: any Debian bookworm image with Python 3.11 and venv (tests/container builds FROM a local one).
ARG BASE=python:3.11.11-slim-bookworm

FROM ${BASE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml ./
# Dependencies first, in a layer of their own that only pyproject.toml invalidates: the project's own
# requirements, the `docs` extra, and the socket.io client the PostSync smoke test (deploy/smoke_chat.py) speaks.
RUN python3 -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['docs']))" > /tmp/requirements.txt \
 && pip install -r /tmp/requirements.txt "python-socketio[asyncio_client]>=5.11,<6"
COPY README.md ./
COPY core ./core
COPY agents ./agents
COPY rag ./rag
COPY memory ./memory
COPY accounts ./accounts
COPY chainlit_app ./chainlit_app
# unstructured requires numba and llvmlite (208 MB) only for PDF image layout, which Ensemble never runs (it
# reads PDFs with PDFium, rag/pdf.py): removed after the dependency check, as scripts/dev does.
RUN pip install ".[docs]" && pip check && pip uninstall -y numba llvmlite

FROM ${BASE} AS runtime
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    ENSEMBLE_DATA_DIR=/data \
    ENSEMBLE_LOCAL_LLM__ENABLED=off \
    DO_NOT_TRACK=1 \
    SCARF_NO_ANALYTICS=1
RUN groupadd --system --gid 10001 ensemble \
 && useradd --system --uid 10001 --gid ensemble --home-dir /app --shell /usr/sbin/nologin ensemble \
 && mkdir -p /data /app && chown ensemble:ensemble /data /app
COPY --from=build /opt/venv /opt/venv
WORKDIR /app
COPY --chown=ensemble:ensemble chainlit_app ./chainlit_app
COPY --chown=ensemble:ensemble .chainlit ./.chainlit
COPY --chown=ensemble:ensemble deploy/migrate.py deploy/smoke_chat.py ./deploy/
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
CMD ["python", "-m", "chainlit_app.serve", "--host", "0.0.0.0", "--port", "8000"]

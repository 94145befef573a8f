# semsearch API image: `docker compose up` (compose.yaml) or
#   docker build -t semsearch . && docker run -v semsearch-index:/data/index -e SEMSEARCH_API_KEY=... semsearch
# Build the index first (the server opens an existing one):
#   docker compose run --rm semsearch semsearch index --input /data/input/corpus.jsonl --index /data/index
# EXTRAS=es,api,gpu builds the FAISS-GPU variant (compose profile "gpu"). A CPU-only torch
# can be had by passing a PIP_EXTRA_INDEX_URL build arg that serves CPU wheels.
FROM python:3.11-slim

ARG EXTRAS=es,api
ARG PIP_EXTRA_INDEX_URL=
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HF_HUB_OFFLINE=1 \
    TOKENIZERS_PARALLELISM=false \
    SEMSEARCH_NO_PROGRESS=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-cache-dir ".[${EXTRAS}]" \
 && case ",${EXTRAS}," in *,gpu,*) pip uninstall -y faiss-cpu \
      && pip install --no-cache-dir --force-reinstall --no-deps "faiss-gpu>=1.15.1" ;; esac

RUN useradd --create-home --uid 10001 semsearch \
 && mkdir -p /data/index /data/input \
 && chown -R semsearch:semsearch /data
USER semsearch
VOLUME ["/data/index"]
EXPOSE 8000

HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=5 \
  CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/readyz', timeout=4)"]
CMD ["semsearch", "serve", "--index", "/data/index", "--host", "0.0.0.0"]

# AiKore in one container: supervisord runs nginx, daphne, the huey worker and every instance.
FROM python:3.11-slim-bookworm

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    AIKORE_DATA_DIR=/config \
    AIKORE_BIND=0.0.0.0 \
    AIKORE_PORT=9000 \
    AIKORE_APPS_PORT=9001 \
    AIKORE_PUBLIC_PORT_RANGE=9002-9020

RUN apt-get update \
 && apt-get install -y --no-install-recommends nginx tmux git curl ca-certificates nodejs npm procps tigervnc-standalone-server openbox chromium x11-utils fonts-dejavu-core libgl1 libegl1 libxkbcommon-x11-0 libxcb-cursor0 libdbus-1-3 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --create-home --uid 1000 abc

WORKDIR /app
COPY requirements.txt ./
RUN python -m venv /app/.venv && /app/.venv/bin/pip install --no-cache-dir -r requirements.txt
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY . .
RUN if [ -x scripts/build-frontend.sh ]; then scripts/build-frontend.sh; fi \
 && mkdir -p /config && chown -R abc:abc /config

# nginx, AiKore and the instances all run as this unprivileged user: no sudo, no chown at runtime.
USER abc
VOLUME ["/config"]
EXPOSE 9000 9001 9002-9020
HEALTHCHECK --interval=30s --timeout=5s CMD curl -fsS http://127.0.0.1:9000/api/health || exit 1
CMD ["/app/docker/entry.sh"]

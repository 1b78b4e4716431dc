# AiKore in one container: supervisord runs nginx, daphne, the Huey worker and every instance.
# Started as root (the default), docker/entry.sh gives AiKore's files in /config to PUID:PGID, runs
# AiKore as that user ("aikore") and every instance as a second one ("aikore-app", uid AIKORE_APP_UID,
# group PGID) that can't read AiKore's database or secrets (README: Docker).
#
# BASE: a Debian bookworm image with Debian's Python 3.11 (the test suite builds this file on a
# bookworm made with mmdebstrap: aikore_site/tests/test_docker_image.py).
ARG BASE=debian:bookworm-slim

# --- build: AiKore's venv and the dashboard's front-end bundle. Node.js, npm and esbuild stay here.
FROM ${BASE} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv nodejs npm ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# Behind a TLS-inspecting proxy, pass its CA bundle as a build secret (id=ca_bundle); without one
# the system's certificates are used.
# The venv, byte-compiled (AiKore's user can't write to /app: it would compile every module at every
# start otherwise), in a layer of its own that an app change leaves alone.
COPY requirements.txt /tmp/
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export PIP_CERT=/run/secrets/ca_bundle; fi \
 && python3 -m venv /app/.venv \
 && /app/.venv/bin/pip install --no-cache-dir --disable-pip-version-check --no-compile -q -r /tmp/requirements.txt \
 && /app/.venv/bin/python -m compileall -q -j 0 /app/.venv
WORKDIR /src
COPY package.json package-lock.json ./
RUN --mount=type=secret,id=ca_bundle \
    if [ -s /run/secrets/ca_bundle ]; then export NODE_EXTRA_CA_CERTS=/run/secrets/ca_bundle; fi \
 && npm ci --no-audit --no-fund --loglevel=error
COPY . .
# static/dist is all the pages use from node_modules (it is not copied on).
RUN scripts/build-frontend.sh \
 && rm -rf node_modules \
 && /app/.venv/bin/python -m compileall -q -j 0 -s /src -p /app /src

# --- the image: what AiKore and the apps need at runtime.
FROM ${BASE}
ENV DEBIAN_FRONTEND=noninteractive \
    LANG=C.UTF-8 \
    PYTHONUNBUFFERED=1 \
    AIKORE_DATA_DIR=/config \
    AIKORE_BIND=0.0.0.0 \
    AIKORE_PORT=9000 \
    AIKORE_APPS_PORT=9001 \
    AIKORE_PUBLIC_PORT_RANGE=9002-9020 \
    PUID=1000 \
    PGID=1000 \
    AIKORE_APP_UID=911 \
    TZ=Etc/UTC \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility
# ---- Debian packages of the image: the one list (bare hosts: scripts/system-deps.sh) ----
#   python3          AiKore's venv (uv, which builds the apps' environments, is in it)
#   nginx            the reverse proxy
#   git              the apps' code
#   tmux             the instances' terminals
#   procps, tzdata   ps, pgrep, free for the apps and the terminals; TZ
#   tigervnc-standalone-server, openbox, chromium, x11-utils, fonts-dejavu-core
#                    persistent mode's desktop: Xvnc, the window manager, the kiosk browser,
#                    xprop (ready: window) and a font
#   libgl1, libegl1, libxkbcommon-x11-0, libxcb-cursor0, libdbus-1-3
#                    what Qt's xcb platform loads (desktop programs such as OneTrainer)
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      ca-certificates \
      git \
      nginx \
      procps \
      python3 \
      tmux \
      tzdata \
      tigervnc-standalone-server \
      openbox \
      chromium \
      x11-utils \
      fonts-dejavu-core \
      libgl1 \
      libegl1 \
      libxkbcommon-x11-0 \
      libxcb-cursor0 \
      libdbus-1-3 \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/*
# ---- end of the Debian packages ----
# The kiosk browsers of persistent mode get a managed policy: no file dialogs, downloads, file://
# or chrome:// pages, DevTools (README: Persistent mode). X's socket folder exists, root's, 1777, so
# the apps' user's Xvnc finds it as X expects.
COPY docker/chromium-kiosk-policy.json /etc/chromium/policies/managed/aikore-kiosk.json
RUN chmod 0644 /etc/chromium/policies/managed/aikore-kiosk.json && install -d -m 1777 /tmp/.X11-unix
# The two users; docker/entry.sh gives them PUID, PGID and AIKORE_APP_UID at every start.
RUN groupadd -g 1000 aikore \
 && useradd -u 1000 -g aikore -M -d /config -s /usr/sbin/nologin aikore \
 && useradd -u 911 -g aikore -M -d /config/home -s /usr/sbin/nologin aikore-app
COPY --from=build /app/.venv /app/.venv
COPY --from=build /src /app
WORKDIR /app
VOLUME ["/config"]
EXPOSE 9000 9001 9002-9020
# Healthy when /api/health on AIKORE_PORT says "ok" (docker/healthcheck.py). The stack is up within
# seconds; Docker says so at its first check (interval); failures during start-period don't count.
HEALTHCHECK --interval=10s --timeout=10s --start-period=90s --retries=3 \
    CMD ["/app/.venv/bin/python", "-I", "/app/docker/healthcheck.py"]
CMD ["/app/docker/entry.sh"]

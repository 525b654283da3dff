# odpm service image: the package without dev dependencies, run as a non-root user.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    ODPM_API__HOST=0.0.0.0 \
    ODPM_STORAGE__DATA_DIR=/var/lib/odpm

RUN groupadd --system odpm && useradd --system --gid odpm --home-dir /var/lib/odpm odpm \
    && mkdir -p /var/lib/odpm /etc/odpm && chown odpm:odpm /var/lib/odpm

WORKDIR /app
COPY pyproject.toml README.md ./
COPY odpm ./odpm
COPY drivers ./drivers
COPY api ./api
RUN pip install --no-cache-dir . && rm -rf /app/build

COPY config/odpm.toml /etc/odpm/odpm.toml
ENV ODPM_CONFIG=/etc/odpm/odpm.toml

USER odpm
WORKDIR /var/lib/odpm
EXPOSE 8000
VOLUME ["/var/lib/odpm"]

HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import sys, urllib.request; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health', timeout=2).status == 200 else 1)"]

CMD ["odpm", "serve"]

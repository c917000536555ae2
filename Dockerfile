# The runtime image: the web process, workers, beat and Flower. Only runtime dependencies
# (requirements.txt; the test tools are in requirements-dev.txt), no .env, no var/, no tests
# (.dockerignore), and every process runs as the unprivileged user omoi. Secrets come from the
# environment when a container starts, never from the image.
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 OMOI_DATA_DIR=/data
# bubblewrap confines every command an agent runs; slirp4netns gives the setup step a network that
# does not reach the worker's loopback (docs/sandboxes.md).
RUN apt-get update && apt-get install -y --no-install-recommends git bubblewrap slirp4netns \
    && rm -rf /var/lib/apt/lists/*
RUN groupadd --system --gid 1000 omoi && useradd --system --uid 1000 --gid omoi --home-dir /home/omoi --create-home omoi
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
# The admin's, Swagger UI's and the web application's static files, served by WhiteNoise.
RUN python manage.py collectstatic --noinput
# /data (the volume: host clones, sandboxes, beat's schedule) and the collected static files belong
# to omoi; the application code stays root's and read-only to the processes.
RUN mkdir -p /data /app/staticfiles && chown omoi:omoi /data /app/staticfiles
USER omoi
EXPOSE 8000
CMD ["uvicorn", "omoi.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--timeout-graceful-shutdown", "5"]

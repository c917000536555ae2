FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# bubblewrap confines every command an agent runs; slirp4netns gives the setup step a network that
# does not reach the worker's loopback (docs/sandboxes.md).
RUN apt-get update && apt-get install -y --no-install-recommends git bubblewrap slirp4netns \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN git config --global user.email "omoi@localhost" && git config --global user.name "Omoi"
EXPOSE 8000
CMD ["gunicorn", "omoi.wsgi:application", "--bind", "0.0.0.0:8000", "--workers", "3"]

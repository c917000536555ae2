FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
RUN apt-get update && apt-get install -y --no-install-recommends git && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY . .
RUN git config --global user.email "omoi@localhost" && git config --global user.name "Omoi"
# The admin's, Swagger UI's and the web application's static files, served by WhiteNoise.
RUN python manage.py collectstatic --noinput
EXPOSE 8000
CMD ["uvicorn", "omoi.asgi:application", "--host", "0.0.0.0", "--port", "8000", "--workers", "2", "--timeout-graceful-shutdown", "5"]

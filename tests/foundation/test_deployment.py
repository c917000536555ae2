"""The deployment files, read as an operator would (no Docker engine runs here): Flower needs a
login, secrets come from the environment, the image holds no secrets, state or test tools, and
its processes do not run as root."""

import re
from pathlib import Path

import yaml
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
OMOI_SERVICES = ("web", "worker", "beat", "flower")
TEST_TOOLS = ("pytest", "factory-boy", "ruff", "schemathesis", "hypothesis")


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_flower_asks_for_a_login_and_listens_on_loopback_only():
    flower = _compose()["services"]["flower"]
    assert flower["environment"]["FLOWER_BASIC_AUTH"].startswith("${FLOWER_BASIC_AUTH:?")
    assert flower["ports"] == ["127.0.0.1:5555:5555"]
    assert "--basic-auth" not in flower["command"]  # never a password on a command line


def test_secrets_come_from_the_environment_and_are_required():
    compose = _compose()
    text = (ROOT / "docker-compose.yml").read_text()
    assert compose["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith("${POSTGRES_PASSWORD:?")
    for name in OMOI_SERVICES:
        environment = compose["services"][name]["environment"]
        assert environment["DJANGO_SECRET_KEY"].startswith("${DJANGO_SECRET_KEY:?"), name
        assert "${POSTGRES_PASSWORD:?" in environment["DATABASE_URL"], name
        assert environment["DJANGO_ALLOWED_HOSTS"] not in ("", "*"), name
    for service in compose["services"].values():
        for key, value in (service.get("environment") or {}).items():
            if re.search(r"SECRET|PASSWORD|TOKEN|API_KEY|BASIC_AUTH", key):
                assert str(value).startswith("${"), (key, value)  # taken from the environment, never written here
    assert "env_file" in compose["services"]["web"] and ".env" in text


def test_the_image_holds_no_secrets_state_or_test_tools_and_runs_as_omoi():
    ignored = (ROOT / ".dockerignore").read_text().split()
    for entry in (".env", "var", "tests", "requirements-dev.txt", ".git"):
        assert entry in ignored, entry
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "pip install --no-cache-dir -r requirements.txt" in dockerfile
    assert not [line for line in dockerfile.splitlines() if line.startswith(("RUN", "COPY")) and "dev" in line]
    users = re.findall(r"^USER (\S+)", dockerfile, flags=re.MULTILINE)
    assert users and users[-1] == "omoi"
    runtime = (ROOT / "requirements.txt").read_text().lower()
    assert not [tool for tool in TEST_TOOLS if re.search(rf"^{tool}==", runtime, flags=re.MULTILINE)]
    development = (ROOT / "requirements-dev.txt").read_text().lower()
    assert development.splitlines()[1] == "-r requirements.txt"
    assert all(re.search(rf"^{tool}==", development, flags=re.MULTILINE) for tool in TEST_TOOLS)


def test_every_requirement_is_pinned():
    for name in ("requirements.txt", "requirements-dev.txt"):
        for line in (ROOT / name).read_text().splitlines():
            line = line.strip()
            if line and not line.startswith(("#", "-r ")):
                assert re.fullmatch(r"[A-Za-z0-9_.\-\[\]]+==[0-9][A-Za-z0-9.]*", line), (name, line)

"""Accounts and tokens: API tokens hashed at rest with an expiry and revocation, the token
endpoint and the admin login throttled, and production settings that refuse to start unsafe."""

import hashlib
import os
import subprocess
import sys
from datetime import timedelta
from types import SimpleNamespace

import pytest
from django.db import connection
from django.utils import timezone
from knox.models import AuthToken
from rest_framework.test import APIClient

from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def _login(client: APIClient, password: str = "right-horse-battery", **extra):
    return client.post("/api/v1/auth/token", {"username": "carol", "password": password}, format="json", **extra)


@pytest.fixture
def carol():
    return UserFactory(username="carol", password="right-horse-battery")


def _authorized(token: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
    return client


def test_a_token_is_stored_only_as_a_digest_and_works_until_revoked(carol):
    token = _login(APIClient()).json()["token"]

    stored = AuthToken.objects.get(user=carol)
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM knox_authtoken")
        rows = cursor.fetchall()
    assert token not in repr(rows)
    assert stored.digest == hashlib.sha512(token.encode()).hexdigest()
    assert _authorized(token).get("/api/v1/projects").status_code == 200

    assert _authorized(token).post("/api/v1/auth/logout").status_code == 204
    assert _authorized(token).get("/api/v1/projects").status_code == 401
    assert not AuthToken.objects.filter(user=carol).exists()


def test_logout_all_revokes_every_token_of_the_user(carol):
    first, second = (_login(APIClient()).json()["token"] for _ in range(2))

    assert _authorized(first).post("/api/v1/auth/logout-all").status_code == 204

    assert _authorized(second).get("/api/v1/projects").status_code == 401
    assert _authorized(first).get("/api/v1/projects").status_code == 401


def test_an_expired_token_is_refused_and_removed(carol, settings):
    token = _login(APIClient()).json()["token"]
    AuthToken.objects.filter(user=carol).update(expiry=timezone.now() - timedelta(seconds=1))

    response = _authorized(token).get("/api/v1/projects")

    assert response.status_code == 401
    assert response.json()["detail"] == "Invalid token."
    assert not AuthToken.objects.filter(user=carol).exists()


def test_a_token_expires_after_the_configured_time(carol, settings):
    before = timezone.now()
    body = _login(APIClient()).json()
    expiry = AuthToken.objects.get(user=carol).expiry
    assert timedelta(days=6, hours=23) < expiry - before <= timedelta(days=7, seconds=5)
    assert body["expiry"]


@pytest.mark.parametrize("header", ["Token not-a-token", "Token ÿÿÿ", "Token", "Token a b"])
def test_a_malformed_token_is_a_401(carol, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    assert client.get("/api/v1/projects").status_code == 401


def test_logging_in_again_and_again_keeps_at_most_the_token_limit(carol, settings):
    settings.REST_KNOX = {**settings.REST_KNOX, "TOKEN_LIMIT_PER_USER": 3}
    settings.REST_FRAMEWORK = {
        **settings.REST_FRAMEWORK,
        "DEFAULT_THROTTLE_RATES": {"auth": "100/minute"},
    }
    tokens = [_login(APIClient()).json()["token"] for _ in range(5)]

    assert AuthToken.objects.filter(user=carol).count() == 3
    assert _authorized(tokens[0]).get("/api/v1/projects").status_code == 401
    assert _authorized(tokens[-1]).get("/api/v1/projects").status_code == 200


def test_the_token_endpoint_is_throttled_per_address(carol):
    client = APIClient()
    answers = [_login(client, password="wrong").status_code for _ in range(10)]
    throttled = _login(client)
    elsewhere = _login(APIClient(), REMOTE_ADDR="10.0.0.9")

    assert answers == [400] * 10
    assert throttled.status_code == 429
    assert "throttled" in throttled.json()["detail"].lower()
    assert elsewhere.status_code == 200


def test_the_admin_login_is_throttled_after_failures(client, settings):
    UserFactory(username="root", password="right-horse-battery", is_staff=True, is_superuser=True)
    settings.OMOI_LOGIN_ATTEMPTS = 3
    failures = [client.post("/admin/login/", {"username": "root", "password": "wrong"}).status_code for _ in range(3)]
    blocked = client.post("/admin/login/", {"username": "root", "password": "right-horse-battery"})

    assert failures == [200, 200, 200]
    assert blocked.status_code == 429
    assert "Too many failed logins" in blocked.content.decode()


def test_the_admin_login_still_works_below_the_limit(client):
    UserFactory(username="root", password="right-horse-battery", is_staff=True, is_superuser=True)
    client.post("/admin/login/", {"username": "root", "password": "wrong"})
    response = client.post("/admin/login/?next=/admin/", {"username": "root", "password": "right-horse-battery"})
    assert response.status_code == 302


def test_plaintext_tokens_from_before_are_hashed_and_keep_working(carol):
    from django.apps import apps

    migration = __import__("omoi.migrations.0005_api_tokens_hashed_from_plaintext", fromlist=["x"])
    key = "0123456789abcdef0123456789abcdef01234567"
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE authtoken_token (key varchar(40) PRIMARY KEY, user_id integer, created timestamp)")
        cursor.execute("INSERT INTO authtoken_token (key, user_id) VALUES (%s, %s)", [key, carol.pk])
        migration.hash_plaintext_tokens(apps, SimpleNamespace(connection=connection))
        cursor.execute("SELECT COUNT(*) FROM authtoken_token")
        assert cursor.fetchone()[0] == 0
        cursor.execute("DROP TABLE authtoken_token")

    assert _authorized(key).get("/api/v1/projects").status_code == 200
    assert AuthToken.objects.get(user=carol).expiry is not None


def _settings_in_a_process(env: dict[str, str]) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "DATABASE_URL"))}
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)",
        ],
        env={**base, "DJANGO_SETTINGS_MODULE": "omoi.settings", **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.parametrize(
    ("env", "refusal"),
    [
        ({"DJANGO_DEBUG": "false"}, "DJANGO_SECRET_KEY must be set"),
        ({"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "short"}, "DJANGO_SECRET_KEY must be set"),
        ({"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "k" * 50, "DJANGO_ALLOWED_HOSTS": "*"}, "ALLOWED_HOSTS"),
        ({"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "k" * 50, "DJANGO_ALLOWED_HOSTS": ""}, "ALLOWED_HOSTS"),
        ({"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}, "DJANGO_SECRET_KEY must be set"),
    ],
)
def test_production_settings_refuse_to_start_unsafe(env, refusal):
    result = _settings_in_a_process(env)
    assert result.returncode != 0
    assert refusal in result.stderr


@pytest.mark.parametrize(
    ("env", "debug"),
    [
        ({}, "True"),
        ({"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none", "DJANGO_SECRET_KEY": "k" * 50}, "False"),
        ({"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none", "DJANGO_DEBUG": "true"}, "True"),
        ({"DJANGO_DEBUG": "false", "DJANGO_SECRET_KEY": "k" * 50, "DJANGO_ALLOWED_HOSTS": "omoi.example"}, "False"),
    ],
)
def test_debug_is_on_only_for_the_embedded_default_unless_said_otherwise(env, debug):
    result = _settings_in_a_process(env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == debug

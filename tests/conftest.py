import os

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import ProjectFactory, UserFactory
from tests.support.fake_daytona import FakeDaytona
from tests.worker import WorkerProcess, purge_broker

# The suite also runs where bubblewrap is missing (commands then run unconfined, as on a DEBUG
# machine); the tests of the boundary itself need bubblewrap (tests/sandboxes/test_hostile.py).
# Worker processes started by tests inherit this.
os.environ.setdefault("OMOI_ALLOW_UNCONFINED", "1")


@pytest.fixture(autouse=True)
def unconfined_commands_allowed(settings):
    settings.OMOI_ALLOW_UNCONFINED = os.environ["OMOI_ALLOW_UNCONFINED"] not in ("0", "false", "False", "")


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Tests make many users; the production hasher's deliberate slowness buys nothing here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def user(db):
    return UserFactory(username="alice")


@pytest.fixture
def other_user(db):
    return UserFactory(username="bob")


def client_for(user) -> APIClient:
    client = APIClient()
    token, _ = Token.objects.get_or_create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token.key}")
    return client


@pytest.fixture
def api(user) -> APIClient:
    return client_for(user)


@pytest.fixture
def other_api(other_user) -> APIClient:
    return client_for(other_user)


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()


@pytest.fixture
def project(user):
    return ProjectFactory(owner=user, name="demo")


@pytest.fixture
def start_worker(transactional_db, tmp_path):
    """Factory: start_worker(env={...}) starts a real worker process on the test database."""
    workers: list[WorkerProcess] = []
    purge_broker()

    def start(
        *,
        env: dict[str, str] | None = None,
        concurrency: int = 2,
        beat: bool = False,
        name: str | None = None,
        wait: bool = True,
    ) -> WorkerProcess:
        worker = WorkerProcess(
            env=env, concurrency=concurrency, beat=beat, name=name, log_path=tmp_path / f"worker-{len(workers)}.log"
        )
        workers.append(worker)
        return worker.start(wait=wait)

    yield start
    for worker in workers:
        worker.stop()
    purge_broker()


@pytest.fixture
def fake_daytona(tmp_path, settings):
    """A local server that answers like Daytona, with the settings pointing at it: the Daytona
    provider then runs through the real SDK against it. `fake_daytona.worker_env()` gives a worker
    process the same (OMOI_SANDBOX_PROVIDER=daytona, DAYTONA_API_URL, DAYTONA_API_KEY)."""
    from sandboxes.providers.daytona import reset_clients

    with FakeDaytona(tmp_path / "fake-daytona") as fake:
        settings.DAYTONA_API_URL = fake.api_url
        settings.DAYTONA_API_KEY = fake.api_key
        settings.DAYTONA_TARGET = "us"
        settings.DAYTONA_SNAPSHOT = ""
        settings.DAYTONA_IMAGE = ""
        settings.DAYTONA_SANDBOX_PREFIX = "omoi"
        settings.DAYTONA_NETWORK_BLOCK_ALL = True
        reset_clients()
        yield fake
        reset_clients()

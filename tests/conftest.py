from contextlib import contextmanager

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from tests.factories import ProjectFactory, UserFactory
from tests.worker import WorkerProcess, purge_broker


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    """Tests make many users; the production hasher's deliberate slowness buys nothing here."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def no_lease_held_across_tests():
    """A claimed lease answers for its object in its thread until the step ends (omoi.leases); a
    test that claims one directly must not leave it answering in the tests that follow."""
    yield
    from omoi import leases

    leases._holding.__dict__.pop("leases", None)


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

    def start(*, env: dict[str, str] | None = None, concurrency: int = 2, beat: bool = False) -> WorkerProcess:
        worker = WorkerProcess(
            env=env, concurrency=concurrency, beat=beat, log_path=tmp_path / f"worker-{len(workers)}.log"
        )
        workers.append(worker)
        return worker.start()

    yield start
    for worker in workers:
        worker.stop()
    purge_broker()


@pytest.fixture
def capture_sends(django_capture_on_commit_callbacks, monkeypatch):
    """capture_sends(): a block at whose end its on-commit callbacks run (as a commit would run
    them), with every Celery message they send recorded instead of sent, as (task name, args,
    queue). Steps are sent on commit by omoi.leases, so this is what a worker would receive."""
    from omoi.celery import app

    @contextmanager
    def capture():
        sent: list[tuple[str, tuple, str]] = []

        def send_task(name, args=None, kwargs=None, **options):
            sent.append((name, tuple(args or ()), options.get("queue", "")))

        with monkeypatch.context() as patch:
            patch.setattr(app, "send_task", send_task)
            with django_capture_on_commit_callbacks(execute=True):
                yield sent

    return capture

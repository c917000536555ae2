import os
import subprocess
from contextlib import contextmanager
from pathlib import Path

import pytest
from knox.models import AuthToken
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


@pytest.fixture(autouse=True)
def fresh_cache():
    """Throttles and login counters live in the cache; each test starts with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


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
    _, token = AuthToken.objects.create(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {token}")
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


def make_git_repository(path: Path, *, branch: str = "main") -> Path:
    """A git repository at `path` with one commit on `branch`."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "README.md").write_text("# a repository\n")
    for args in (
        ["init", "--quiet", f"--initial-branch={branch}"],
        ["add", "-A"],
        ["-c", "user.name=Omoi Tests", "-c", "user.email=tests@omoi.invalid", "commit", "--quiet", "-m", "init"],
    ):
        subprocess.run(["git", *args], cwd=path, check=True, capture_output=True)
    return path


@pytest.fixture
def repository_root(tmp_path, settings) -> Path:
    """A folder listed in OMOI_LOCAL_REPOSITORY_ROOTS, so projects may name repositories in it."""
    root = tmp_path / "allowed-repositories"
    root.mkdir()
    settings.OMOI_LOCAL_REPOSITORY_ROOTS = [root]
    return root


@pytest.fixture
def local_repository(repository_root) -> Path:
    """A reachable repository with branch main that the repository policy accepts."""
    return make_git_repository(repository_root / "widgets")


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

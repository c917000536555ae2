import os

import pytest

from tests.e2e.conftest import execution_env, fake_github  # noqa: F401 (fixtures shared with e2e)
from tests.steering.conftest import sample_repository, steering  # noqa: F401 (fixtures shared with steering)
from tests.web.server import ServerProcess


@pytest.fixture
def asgi_server(transactional_db, tmp_path):
    """Factory: asgi_server(env={...}) starts uvicorn serving Omoi on the test database."""
    servers: list[ServerProcess] = []

    def start(*, env: dict[str, str] | None = None, port: int | None = None) -> ServerProcess:
        server = ServerProcess(env=env, port=port, log_path=tmp_path / f"server-{len(servers)}.log")
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.stop()


_browser_skips: list[str] = []


@pytest.fixture
def chromium(tmp_path, monkeypatch):
    """A fresh headless Chromium. Missing: a skip that says how to install it, or, with CI=true,
    a failure (CI must run the browser tests)."""
    from tests.web.browser import INSTALL_HINT, chromium_paths, start_chromium

    if chromium_paths() is None:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true: {INSTALL_HINT}")
        _browser_skips.append(INSTALL_HINT)
        pytest.skip(INSTALL_HINT)
    monkeypatch.setenv("SE_OFFLINE", "true")  # belt and braces: Selenium Manager may never download
    driver = start_chromium(profile=tmp_path / "chromium-profile", log_path=tmp_path / "chromedriver.log")
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def pytest_terminal_summary(terminalreporter):
    if _browser_skips:
        terminalreporter.write_sep("-", "browser tests skipped")
        terminalreporter.write_line(_browser_skips[0])

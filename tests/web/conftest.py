import pytest

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

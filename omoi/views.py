from django.db import connection
from django.http import JsonResponse
from rest_framework.authtoken.views import ObtainAuthToken

from omoi.celery import app as celery_app


class ObtainTokenView(ObtainAuthToken):
    """POST username and password; answers {"token": "..."} for `Authorization: Token ...`."""

    authentication_classes: list = []


def _database_ok() -> tuple[bool, str]:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True, "ok"
    except Exception as exc:  # any failure means unreachable; the message says which
        return False, str(exc)


def _broker_ok() -> tuple[bool, str]:
    try:
        with celery_app.connection_for_write() as conn:
            conn.ensure_connection(max_retries=1, timeout=2)
        return True, "ok"
    except Exception as exc:
        return False, str(exc)


def healthz(request):
    database, database_detail = _database_ok()
    broker, broker_detail = _broker_ok()
    healthy = database and broker
    body = {
        "status": "ok" if healthy else "unavailable",
        "database": {"ok": database, "detail": database_detail},
        "broker": {"ok": broker, "detail": broker_detail},
    }
    return JsonResponse(body, status=200 if healthy else 503)

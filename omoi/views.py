from django.contrib.auth import authenticate
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views import defaults
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema, inline_serializer
from knox.models import AuthToken
from rest_framework import parsers, serializers, status
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import ScopedRateThrottle
from rest_framework.views import APIView

from omoi.auth import TokenAuthentication
from omoi.celery import app as celery_app
from omoi.parsers import StorableJSONParser
from omoi.schema import error_responses
from omoi.services import token_issue


class CredentialsSerializer(serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=1024, trim_whitespace=False, style={"input_type": "password"})

    def validate(self, attrs: dict) -> dict:
        user = authenticate(self.context["request"], username=attrs["username"], password=attrs["password"])
        if user is None or not user.is_active:
            raise serializers.ValidationError("Unable to log in with provided credentials.", code="authorization")
        attrs["user"] = user
        return attrs


TokenResponse = inline_serializer(
    name="AuthTokenResponse",
    fields={
        "token": serializers.CharField(help_text="Send it as `Authorization: Token <token>`; it is shown once."),
        "expiry": serializers.DateTimeField(allow_null=True, help_text="When the token stops working."),
    },
)


class ObtainTokenView(APIView):
    """POST username and password; answers {"token", "expiry"} for `Authorization: Token ...`.
    Throttled per client address (OMOI_AUTH_THROTTLE_RATE)."""

    authentication_classes: list = []
    permission_classes = [AllowAny]
    parser_classes = [StorableJSONParser, parsers.FormParser, parsers.MultiPartParser]
    throttle_classes = [ScopedRateThrottle]
    throttle_scope = "auth"

    @extend_schema(
        request=CredentialsSerializer,
        responses={200: TokenResponse, **error_responses(400, 429)},
        auth=[],
    )
    def post(self, request: Request) -> Response:
        serializer = CredentialsSerializer(data=request.data, context={"request": request})
        serializer.is_valid(raise_exception=True)
        instance, token = token_issue(user=serializer.validated_data["user"])
        return Response({"token": token, "expiry": instance.expiry})


class RevokeTokenView(APIView):
    """Revoke the token this request carries (log out this client)."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None, **error_responses(401)})
    def post(self, request: Request) -> Response:
        request.auth.delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


class RevokeAllTokensView(APIView):
    """Revoke every token of the requesting user (log out everywhere)."""

    authentication_classes = [TokenAuthentication]
    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={204: None, **error_responses(401)})
    def post(self, request: Request) -> Response:
        AuthToken.objects.filter(user=request.user).delete()
        return Response(status=status.HTTP_204_NO_CONTENT)


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


def _is_api(request: HttpRequest) -> bool:
    return request.path == "/api" or request.path.startswith("/api/")


@csrf_exempt
def api_not_found(request: HttpRequest, exception: Exception | None = None) -> JsonResponse:
    """Paths under /api/ that name no endpoint: a JSON 404, like every other API error."""
    return JsonResponse({"detail": f"no API endpoint at {request.path}"}, status=404)


# Every method is answered (the authorization matrix lists a route's methods from this).
api_not_found.http_methods = ["get", "post", "put", "patch", "delete"]


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    if _is_api(request):
        return api_not_found(request)
    return defaults.page_not_found(request, exception)


def server_error(request: HttpRequest) -> HttpResponse:
    if _is_api(request):
        return JsonResponse({"detail": "internal server error"}, status=500)
    return defaults.server_error(request)

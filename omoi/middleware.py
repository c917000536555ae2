"""Errors under /api/ are JSON, whatever produced them."""

from django.http import HttpRequest, HttpResponse, JsonResponse

API_ERRORS = {404: "not found", 405: "method not allowed"}


class ApiJsonErrorsMiddleware:
    """A 404 or 405 under /api/ that some view rendered as HTML or YAML (Swagger UI's page, the
    schema, Django's technical 404 with DEBUG on) becomes a JSON `{"detail": ...}` answer, so an
    API client always gets the format it parses. The `Allow` header of a 405 is kept."""

    def __init__(self, get_response) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if (
            response.status_code in API_ERRORS
            and (request.path == "/api" or request.path.startswith("/api/"))
            and not response.get("Content-Type", "").startswith("application/json")
        ):
            detail = f"{request.method} {request.path}: {API_ERRORS[response.status_code]}"
            replaced = JsonResponse({"detail": detail}, status=response.status_code)
            if response.has_header("Allow"):
                replaced["Allow"] = response["Allow"]
            return replaced
        return response

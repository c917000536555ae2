from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from omoi import views

urlpatterns = [
    path("admin/", admin.site.urls),
    re_path(r"^healthz/?$", views.healthz, name="healthz"),
    re_path(r"^api/schema/?$", SpectacularAPIView.as_view(), name="schema"),
    re_path(r"^api/docs/?$", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    re_path(r"^api/v1/auth/token/?$", views.ObtainTokenView.as_view(), name="auth-token"),
    re_path(r"^api/v1/auth/logout/?$", views.RevokeTokenView.as_view(), name="auth-logout"),
    re_path(r"^api/v1/auth/logout-all/?$", views.RevokeAllTokensView.as_view(), name="auth-logout-all"),
    path("api/v1/", include("specs.urls")),
    path("api/v1/", include("tickets.urls")),
    path("api/v1/", include("sandboxes.urls")),
    # Anything else under /api/ is a JSON 404, whatever the method (never the HTML error page).
    re_path(r"^api(?:/.*)?$", views.api_not_found, name="api-not-found"),
    path("", include("web.urls")),
]

handler404 = "omoi.views.not_found"
handler500 = "omoi.views.server_error"

from django.contrib.auth import views as auth_views
from django.urls import path

from web import views

app_name = "web"

urlpatterns = [
    path("", views.projects, name="projects"),
    path(
        "login/",
        auth_views.LoginView.as_view(template_name="web/login.html", redirect_authenticated_user=True),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("projects/<int:pk>/", views.project, name="project"),
    path("projects/<int:pk>/board/", views.project_board, name="project-board"),
    path("projects/<int:pk>/board/cards", views.project_board_cards, name="project-board-cards"),
    path("specs/<int:pk>/", views.spec, name="spec"),
    path("specs/<int:pk>/body", views.spec_body, name="spec-body"),
    path("specs/<int:pk>/board/", views.spec_board, name="spec-board"),
    path("specs/<int:pk>/board/cards", views.spec_board_cards, name="spec-board-cards"),
    path("specs/<int:pk>/message", views.spec_message, name="spec-message"),
    path("specs/<int:pk>/budget", views.spec_budget, name="spec-budget"),
    path("specs/<int:pk>/<slug:control>", views.spec_control, name="spec-control"),
    path("runs/<int:pk>/", views.run, name="run"),
    path("runs/<int:pk>/messages", views.run_messages, name="run-messages"),
    path("runs/<int:pk>/steering", views.run_steering, name="run-steering"),
    path("runs/<int:pk>/message", views.run_message, name="run-message"),
]

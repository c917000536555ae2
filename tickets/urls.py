from django.urls import re_path

from omoi.api import OptionalSlashRouter
from tickets import views

router = OptionalSlashRouter()
router.register("projects", views.ProjectViewSet, basename="project")
router.register("tickets", views.TicketViewSet, basename="ticket")
router.register("tasks", views.TaskViewSet, basename="task")

urlpatterns = [
    re_path(r"^board/view/?$", views.BoardView.as_view(), name="board-view"),
    *router.urls,
]

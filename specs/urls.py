from omoi.api import OptionalSlashRouter
from specs import views

router = OptionalSlashRouter()
router.register("specs", views.SpecViewSet, basename="spec")

urlpatterns = [*router.urls]

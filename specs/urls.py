from omoi.api import OptionalSlashRouter

router = OptionalSlashRouter()

urlpatterns = [*router.urls]

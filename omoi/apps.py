from django.apps import AppConfig


class OmoiConfig(AppConfig):
    name = "omoi"
    verbose_name = "Omoi"

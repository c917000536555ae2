from django.apps import AppConfig


class SandboxesConfig(AppConfig):
    name = "sandboxes"

    def ready(self) -> None:
        from celery.signals import worker_init, worker_process_init

        from sandboxes.providers.confinement import protect_host_process

        # Worker processes hold the server's secrets in their environment; make them non-dumpable
        # so that a sandboxed command (same user) cannot read /proc/<worker pid>/environ.
        worker_init.connect(lambda **kwargs: protect_host_process(), weak=False)
        worker_process_init.connect(lambda **kwargs: protect_host_process(), weak=False)

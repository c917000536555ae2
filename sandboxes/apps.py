from django.apps import AppConfig


class SandboxesConfig(AppConfig):
    name = "sandboxes"

    def ready(self) -> None:
        from celery.signals import worker_init, worker_process_init

        from omoi.nodes import NODE_JOBS
        from omoi.reconcile import NODE_LOST_HOOKS, REPAIRS
        from sandboxes.providers.confinement import protect_host_process
        from sandboxes.services.sandbox import local_sandboxes_reap, remote_sandboxes_reap, sandboxes_of_dead_nodes

        # Worker processes hold the server's secrets in their environment; make them non-dumpable
        # so that a sandboxed command (same user) cannot read /proc/<worker pid>/environ.
        worker_init.connect(lambda **kwargs: protect_host_process(), weak=False)
        worker_process_init.connect(lambda **kwargs: protect_host_process(), weak=False)
        NODE_LOST_HOOKS.append(sandboxes_of_dead_nodes)
        NODE_JOBS.append(local_sandboxes_reap)
        # Remote sandboxes (Daytona) no live row holds: an acquire's leftovers, a release that failed.
        REPAIRS.append(("remote_sandboxes_reaped", remote_sandboxes_reap))

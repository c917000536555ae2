import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "omoi.settings")
# Under ASGI a request's database work runs in a thread of its own, so a persistent connection
# (CONN_MAX_AGE) would stay open per thread, never reused: a burst of requests exhausts the
# database's connections. Django's advice is to disable them under ASGI; the web process opens a
# connection per request (and event streams hold none while they wait). Workers keep theirs.
os.environ.setdefault("DATABASE_CONN_MAX_AGE", "0")
application = get_asgi_application()

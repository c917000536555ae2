"""API tokens move from DRF's plaintext `authtoken_token` table to django-rest-knox, which keeps
only a SHA-512 digest and an expiry. Each existing token becomes a knox token with the same
value, so existing clients keep working until it expires; the plaintext rows are deleted."""

import hashlib
from datetime import timedelta

from django.conf import settings
from django.db import migrations
from django.utils import timezone

KNOX_TOKEN_KEY_LENGTH = 15


def hash_plaintext_tokens(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return
    AuthToken = apps.get_model("knox", "AuthToken")
    ttl = settings.REST_KNOX.get("TOKEN_TTL", timedelta(hours=10))
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id FROM authtoken_token")
        rows = cursor.fetchall()
        for key, user_id in rows:
            AuthToken.objects.get_or_create(
                digest=hashlib.sha512(key.encode()).hexdigest(),
                defaults={
                    "token_key": key[:KNOX_TOKEN_KEY_LENGTH],
                    "user_id": user_id,
                    "expiry": timezone.now() + ttl if ttl else None,
                },
            )
        cursor.execute("DELETE FROM authtoken_token")


class Migration(migrations.Migration):
    dependencies = [
        ("omoi", "0004_leases_worker_nodes_usage_per_turn"),
        ("knox", "0009_extend_authtoken_field"),
    ]

    operations = [migrations.RunPython(hash_plaintext_tokens, migrations.RunPython.noop)]

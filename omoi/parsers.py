"""The API's one request parser (kept apart from omoi.api, which DRF's settings cannot import
while its views module loads)."""

import codecs

from django.conf import settings
from rest_framework import status
from rest_framework.exceptions import APIException, ParseError
from rest_framework.parsers import JSONParser
from rest_framework.utils import json

from omoi.text import unstorable_reason


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_detail = "The request body is too large."
    default_code = "payload_too_large"


class StorableJSONParser(JSONParser):
    """JSON request bodies, refused with a 400 when they hold text the database cannot store (a
    NUL character or a lone surrogate, anywhere, keys included) and with a 413 past
    OMOI_API_MAX_BODY_BYTES. The one place every API body passes through."""

    def parse(self, stream, media_type=None, parser_context=None):
        parser_context = parser_context or {}
        encoding = parser_context.get("encoding", settings.DEFAULT_CHARSET)
        limit = settings.OMOI_API_MAX_BODY_BYTES
        raw = stream.read(limit + 1) if stream is not None else b""
        if len(raw) > limit:
            raise PayloadTooLarge(f"the request body is larger than {limit} bytes")
        try:
            data = json.loads(codecs.decode(raw, encoding))
        except (ValueError, UnicodeDecodeError) as exc:
            raise ParseError(f"JSON parse error - {exc}") from exc
        reason = unstorable_reason(data)
        if reason:
            raise ParseError(f"JSON body: {reason}")
        return data

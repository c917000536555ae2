"""Date and time formats with seconds: an operator reading the admin or the web pages compares
events seconds apart, which the locale's default ("3:04 p.m.") hides."""

DATETIME_FORMAT = "Y-m-d H:i:s"
SHORT_DATETIME_FORMAT = "Y-m-d H:i:s"
TIME_FORMAT = "H:i:s"
DATE_FORMAT = "Y-m-d"
SHORT_DATE_FORMAT = "Y-m-d"

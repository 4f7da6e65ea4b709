"""Runs events through Sentry's own normaliser (Relay's StoreNormalizer, PyPI `sentry-relay`),
as Sentry does on ingest. Reads a JSON array of events on stdin; prints a JSON array with the
normaliser's `errors` for each (an empty list: accepted with no errors)."""

import json
import sys

from sentry_relay.processing import StoreNormalizer

normalizer = StoreNormalizer(project_id=42)
events = json.load(sys.stdin)
print(json.dumps([normalizer.normalize_event(event).get("errors") or [] for event in events]))

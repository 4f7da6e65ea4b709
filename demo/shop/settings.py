"""Settings of the demo shop: a small Django site deployed the usual way (DEBUG off, gunicorn,
Sentry's SDK), which edgeguard's demo puts behind the worker. See README "Try it locally".

Read from the environment (scripts/demo.sh sets them):
    SENTRY_DSN          where the SDK reports (the local Bugsink's project); unset: no reporting
    SENTRY_ENVIRONMENT  default "demo"
    SHOP_DB             the SQLite file (default: .state/demo/shop.sqlite3 in the repo)
    SHOP_SLOW_SECONDS   how long /slow sleeps (the demo sets it past the worker's ORIGIN_TIMEOUT_MS)
"""

import logging
import os
import subprocess
from pathlib import Path

import sentry_sdk
from sentry_sdk.integrations.django import DjangoIntegration
from sentry_sdk.integrations.logging import LoggingIntegration

BASE_DIR = Path(__file__).resolve().parent
REPO = BASE_DIR.parent.parent


def git_sha():
    """The commit this code runs from, as raven's fetch_git_sha gave it: the release. The full
    40-hex SHA, the same string edgeguard's build bakes in as its default release."""
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=BASE_DIR, capture_output=True,
                             text=True, timeout=5, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


RELEASE = git_sha()

sentry_sdk.init(
    dsn=os.environ.get("SENTRY_DSN") or None,
    release=RELEASE,
    environment=os.environ.get("SENTRY_ENVIRONMENT", "demo"),
    integrations=[
        DjangoIntegration(),
        # logger.error(...) becomes an event; info and up become breadcrumbs (the SDK's defaults,
        # spelled out).
        LoggingIntegration(level=logging.INFO, event_level=logging.ERROR),
    ],
    # Errors only: no performance data (Bugsink takes none), no cookies or IPs.
    traces_sample_rate=None,
    send_default_pii=False,
)

DEBUG = False
# The worker fetches the origin by its own address (ORIGIN_URL), so that is the Host it sends.
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
# A demo on loopback (no sessions, no forms); a real site reads this from a secret.
SECRET_KEY = "edgeguard-demo-shop: not a secret, this site only ever listens on 127.0.0.1"

INSTALLED_APPS = ["shop"]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]
ROOT_URLCONF = "shop.urls"
WSGI_APPLICATION = "shop.wsgi.application"
APPEND_SLASH = False

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
}]

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("SHOP_DB", str(REPO / ".state" / "demo" / "shop.sqlite3")),
    }
}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
USE_TZ = True
TIME_ZONE = "UTC"

SLOW_SECONDS = float(os.environ.get("SHOP_SLOW_SECONDS", "15"))



class OneLineFormatter(logging.Formatter):
    """Log lines without their traceback: the terminal stays readable, and the stack trace is
    where the team reads it, in the tracker."""

    def formatException(self, exc_info):
        return ""


# The app's own log lines go to stderr (the demo's terminal), like any deployment's.
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"()": OneLineFormatter, "format": "%(levelname)s %(name)s: %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "shop": {"handlers": ["console"], "level": "INFO"},
        "django.request": {"handlers": ["console"], "level": "ERROR", "propagate": False},
    },
}

"""The tracing tests' origin: a WSGI app running Sentry's official Python SDK, as a team's Django
app behind edgeguard would (sentry-sdk 2.x continues the trace from `sentry-trace` and `baggage`
on its own: the app's code has no tracing line in it).

    python traced_origin.py DSN

Listens on 127.0.0.1 (a port the OS picks), prints `listening <port>` first, then one JSON line
per request with the trace headers it received. Routes: `/raise` raises (the SDK reports the
exception, the server answers 500); anything else answers 200 with the same JSON.
"""

import io
import json
import sys
from socketserver import ThreadingMixIn
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import sentry_sdk
from sentry_sdk.integrations.wsgi import SentryWsgiMiddleware

sentry_sdk.init(
    dsn=sys.argv[1],
    release="shop@1.0",
    environment="e2e",
    # The app's own tracing stays as it was: off. Its events still join the incoming trace.
    default_integrations=False,
    auto_session_tracking=False,
)


class AppError(Exception):
    pass


def app(environ, start_response):
    seen = {
        "path": environ.get("PATH_INFO", ""),
        "sentry_trace": environ.get("HTTP_SENTRY_TRACE"),
        "baggage": environ.get("HTTP_BAGGAGE"),
    }
    print(json.dumps(seen), flush=True)
    if seen["path"] == "/raise":
        raise AppError("the app failed on purpose")
    body = json.dumps(seen).encode()
    start_response("200 OK", [("Content-Type", "application/json"), ("Content-Length", str(len(body)))])
    return [body]


class Server(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class QuietHandler(WSGIRequestHandler):
    """No access log, and the traceback of `/raise` (the SDK reports it) kept off the test log."""

    def log_message(self, *args):
        pass

    def get_stderr(self):
        return io.StringIO()


server = make_server("127.0.0.1", 0, SentryWsgiMiddleware(app), server_class=Server, handler_class=QuietHandler)
print(f"listening {server.server_port}", flush=True)
server.serve_forever()

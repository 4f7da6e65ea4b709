#!/usr/bin/env python3
"""A tiny origin server for the edgeguard demo: some routes work, some fail on purpose.

    python3 demo/origin.py PORT        (binds 127.0.0.1:PORT; standard library only)

Routes: /  /ok  /error (500 with a leaky debug page)  /unavailable (503, Retry-After: 30)
        /slow (2 s, then 200)  /hang (never answers)  anything else: 404.
One log line per request goes to stderr.
"""
import html
import signal
import sys
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

HANG_SECONDS = 600  # long enough to outlast any worker timeout, bounded so a stray thread still ends


def page(title, body):
    return f"""<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;line-height:1.5}}
code{{background:#f3f3f3;padding:0 .25rem}}</style></head>
<body>
{body}
</body>
</html>
"""


INDEX = page("edgeguard demo origin", """
<h1>edgeguard demo origin</h1>
<p>This page comes from a small demo <em>origin</em> server (<code>demo/origin.py</code>).
If the address bar shows the worker's port (8787), you are looking at it <strong>through edgeguard</strong>:
the worker passes healthy answers through unchanged, and replaces failures with a friendly page while it
reports them to the error tracker (Bugsink in the demo).</p>
<p>Try these routes:</p>
<ul>
  <li><a href="/ok">/ok</a> &mdash; works: edgeguard passes it through untouched.</li>
  <li><a href="/error">/error</a> &mdash; the origin crashes with a 500 and a debug traceback;
      edgeguard shows its own page instead and never leaks the traceback.</li>
  <li><a href="/unavailable">/unavailable</a> &mdash; the origin answers 503 with <code>Retry-After: 30</code>.</li>
  <li><a href="/slow">/slow</a> &mdash; answers after 2 seconds (slow, but within the timeout).</li>
  <li><a href="/hang">/hang</a> &mdash; the origin accepts the request and never answers;
      edgeguard gives up after its timeout.</li>
  <li><a href="/no-such-page">/no-such-page</a> &mdash; a plain 404 from the origin (not an outage).</li>
</ul>
""")

OK = page("It works", """
<h1>It works</h1>
<p>The origin answered <code>200 OK</code>. edgeguard passed this page through unchanged.</p>
<p><a href="/">Back to the index</a></p>
""")

# What a careless Django deployment with DEBUG = True shows: exactly what must never reach a visitor.
FAKE_TRACEBACK = page("OperationalError at /error", """
<h1>OperationalError at /error</h1>
<pre class="exception_value">could not connect to server: Connection refused
	Is the server running on host "db.internal" (10.0.3.7) and accepting TCP/IP connections on port 5432?</pre>
<table>
<tr><th>Request Method:</th><td>GET</td></tr>
<tr><th>Django Version:</th><td>4.2.7</td></tr>
<tr><th>Exception Location:</th><td>/srv/shop/venv/lib/python3.11/site-packages/django/db/backends/postgresql/base.py, line 269, in get_new_connection</td></tr>
<tr><th>Python Executable:</th><td>/srv/shop/venv/bin/python</td></tr>
</table>
<h2>Traceback</h2>
<pre>Traceback (most recent call last):
  File "/srv/shop/venv/lib/python3.11/site-packages/django/core/handlers/exception.py", line 55, in inner
    response = get_response(request)
  File "/srv/shop/shop/views.py", line 42, in checkout
    order = Order.objects.select_for_update().get(pk=request.session["order_id"])
  File "/srv/shop/venv/lib/python3.11/site-packages/django/db/backends/postgresql/base.py", line 269, in get_new_connection
    connection = self.Database.connect(**conn_params)
django.db.utils.OperationalError: could not connect to server: Connection refused
</pre>
<h2>Settings</h2>
<pre>DATABASES = {'default': {'HOST': 'db.internal', 'USER': 'shop', 'PASSWORD': 'hunter2-DEMO-SECRET'}}
SECRET_KEY = 'django-insecure-DEMO-SECRET-do-not-leak'</pre>
<p>You're seeing this error because you have <code>DEBUG = True</code> in your Django settings file.</p>
""")

UNAVAILABLE = page("Service Unavailable", """
<h1>503 Service Unavailable</h1>
<p>The origin is down for maintenance. Try again in 30 seconds.</p>
""")

SLOW = page("Slow but fine", """
<h1>Slow but fine</h1>
<p>The origin took 2 seconds to answer <code>200 OK</code>.</p>
<p><a href="/">Back to the index</a></p>
""")

NOT_FOUND = page("Not Found", """
<h1>404 Not Found</h1>
<p>The origin has no such page. <a href="/">Back to the index</a></p>
""")


class Handler(BaseHTTPRequestHandler):
    server_version = "edgeguard-demo-origin/1.0"
    protocol_version = "HTTP/1.1"

    def send_page(self, status, body, extra_headers=()):
        data = body.encode("utf-8")
        self.send_response(status)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in extra_headers:
            self.send_header(name, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def route(self):
        path = self.path.split("?", 1)[0]
        if path == "/":
            self.send_page(200, INDEX)
        elif path == "/ok":
            self.send_page(200, OK)
        elif path == "/error":
            # Headers a leaky framework might add too; edgeguard must not pass them on either.
            self.send_page(500, FAKE_TRACEBACK, [("X-Debug-Db-Host", "db.internal")])
        elif path == "/unavailable":
            self.send_page(503, UNAVAILABLE, [("Retry-After", "30")])
        elif path == "/slow":
            time.sleep(2)
            self.send_page(200, SLOW)
        elif path == "/hang":
            # Accept the request, then say nothing: the client sees a timeout, not an error status.
            self.log_message('"%s" hanging for %d s', self.requestline, HANG_SECONDS)
            time.sleep(HANG_SECONDS)
            self.close_connection = True
        else:
            self.send_page(404, NOT_FOUND)

    def do_GET(self):
        self.route()

    def do_HEAD(self):
        self.route()

    def do_POST(self):
        # Drain the body so keep-alive stays in sync; the routes behave as for GET.
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        self.route()

    def log_message(self, fmt, *args):
        sys.stderr.write("origin: %s %s\n" % (self.address_string(), fmt % args))


class Server(ThreadingHTTPServer):
    daemon_threads = True  # a hanging /hang thread must not keep the process alive on exit
    allow_reuse_address = True


def main():
    if len(sys.argv) != 2 or not sys.argv[1].isdigit():
        sys.stderr.write("usage: python3 demo/origin.py PORT\n")
        sys.exit(2)
    port = int(sys.argv[1])
    httpd = Server(("127.0.0.1", port), Handler)
    # Exit cleanly on TERM (what demo.sh sends), as on Ctrl-C.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stderr.write(f"origin: listening on http://127.0.0.1:{port}/\n")
    try:
        httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        httpd.server_close()


if __name__ == "__main__":
    main()

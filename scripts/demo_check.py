#!/usr/bin/env python3
"""`scripts/demo.sh --check`: walks the demo as a visitor, then as the team reading Bugsink and its
mail, and verifies every step. Run by demo.sh once everything is up, through
`scripts/bugsink.sh python STATE_DIR`, so Bugsink's own models answer what it stored.

Each verification prints `ok` or `FAIL`; the exit status is 1 if any failed. The steps, in the
order a user takes them (README, "Try it locally"):

  1. /             the shop's page passes through (200), no event
  2. /subscribe    the shop raises IntegrityError: edgeguard's 500 page with the event id; in
                   Bugsink the shop's exception (SDK, stack trace into shop/views.py) and
                   edgeguard's event, same release, same project
  3. /report       200 passes through; the shop's logger.error is an issue; edgeguard is silent
  4. /maintenance  503 page with Retry-After kept; edgeguard's event
  5. /slow         504 page after ORIGIN_TIMEOUT_MS; edgeguard's event
  6. shop stopped  502 page; edgeguard's event
  7. mail          one alert per new issue, subject and link to that issue
  8. worker log    every event accepted (200), and no rate-limit warning (Bugsink limits only
                   transaction;span, which edgeguard never sends)
"""

import argparse
import email
import email.policy
import glob
import html
import os
import re
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid

import django

django.setup()

from django.db import close_old_connections  # noqa: E402
from django.template.defaultfilters import truncatechars  # noqa: E402

from bugsink.app_settings import get_settings  # noqa: E402
from events.models import Event  # noqa: E402
from issues.models import Issue  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EDGEGUARD_SDK = "edgeguard"
WAIT_S = 20

passed = failed = 0


def ok(text):
    global passed
    passed += 1
    print(f"ok    {text}", flush=True)


def bad(text):
    global failed
    failed += 1
    print(f"FAIL  {text}", flush=True)


def check(condition, text, why=""):
    if condition:
        ok(text)
    else:
        bad(f"{text}{': ' + why if why else ''}")
    return condition


def step(text):
    print(f"\n== {text}", flush=True)


def note(text):
    print(f"      {text}", flush=True)


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


OPENER = urllib.request.build_opener(NoRedirect)


class Answer:
    def __init__(self, status, headers, body, seconds):
        self.status, self.headers, self.body, self.seconds = status, headers, body, seconds

    def header(self, name):
        return self.headers.get(name.lower())


def get(url):
    """A browser-like GET (Accept: text/html), redirects not followed."""
    request = urllib.request.Request(url, headers={"Accept": "text/html", "Accept-Language": "en"})
    started = time.monotonic()
    try:
        response = OPENER.open(request, timeout=60)
    except urllib.error.HTTPError as error:
        response = error
    except OSError as error:
        return Answer(0, {}, f"({error})", time.monotonic() - started)
    with response:
        body = response.read().decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in response.headers.items()}
        return Answer(response.status, headers, body, time.monotonic() - started)


def expect_status(answer, url, want):
    return check(answer.status == want, f"GET {url} -> {answer.status}", f"wanted {want}")


def headings(status):
    """The <h1> texts of edgeguard's page for `status` (www/NNN.html, else www/default.html)."""
    path = os.path.join(ROOT, "www", f"{status}.html")
    if not os.path.exists(path):
        path = os.path.join(ROOT, "www", "default.html")
    with open(path, encoding="utf-8") as f:
        return [html.unescape(h) for h in re.findall(r"<h1>([^<]*)</h1>", f.read())]


def wait_for(find, timeout=WAIT_S):
    deadline = time.monotonic() + timeout
    while True:
        close_old_connections()  # see rows committed by the server since the last try
        found = find()
        if found is not None or time.monotonic() >= deadline:
            return found
        time.sleep(0.25)


def issue_url(issue):
    return get_settings().BASE_URL + issue.get_absolute_url()


def edgeguard_page(answer, url, status):
    """The visitor's view of a failure: edgeguard's page for `status`, with the event id it sent.
    Returns that id (None if missing)."""
    expect_status(answer, url, status)
    wanted = headings(status)
    shown = [h for h in wanted if f"<h1>{html.escape(h, quote=False)}</h1>" in answer.body]
    check(bool(shown), f"edgeguard's {status} page: \"{shown[0] if shown else wanted}\"",
          "its heading is not in the body")
    event_id = (answer.header("x-sentry-id") or "").strip()
    if not check(re.fullmatch(r"[0-9a-f]{32}", event_id) is not None,
                 f"X-Sentry-ID: {event_id}", "no event id header"):
        return None
    check(event_id in answer.body, "the page shows that event id")
    return event_id


def edgeguard_event(event_id, title_prefix, args):
    """Edgeguard's event in Bugsink: stored, in an issue whose title starts with `title_prefix`,
    with the demo's release. Returns the Event (or None)."""
    if event_id is None:
        bad(f"Bugsink: no event id to look up ({title_prefix}…)")
        return None
    wanted = uuid.UUID(event_id)
    event = wait_for(lambda: Event.objects.filter(event_id=wanted).select_related("issue", "project").first())
    if not check(event is not None, f"Bugsink stored edgeguard's event {event_id}", f"not found within {WAIT_S} s"):
        return None
    title = event.issue.title()
    check(title.startswith(title_prefix), f"in issue \"{title}\" ({issue_url(event.issue)})",
          f"wanted a title starting {title_prefix!r}")
    check(event.sdk_name == EDGEGUARD_SDK, f"sent by {event.sdk_name}")
    check(event.release == args.release, f"release {event.release}", f"wanted {args.release}")
    return event


def shop_event(description, **filters):
    """The shop's own event (sent by its SDK, sentry.python.*)."""
    event = wait_for(lambda: Event.objects.filter(sdk_name__startswith="sentry.python", **filters)
                     .select_related("issue", "project").order_by("ingested_at").first())
    check(event is not None, f"Bugsink stored the shop's event: {description}", f"not found within {WAIT_S} s")
    return event


def trace_id(event):
    contexts = event.get_parsed_data().get("contexts") or {}
    return (contexts.get("trace") or {}).get("trace_id")


def stop_shop(pid, port):
    """Stops the shop's gunicorn (its process group) and waits until its port refuses connections."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        with socket.socket() as s:
            s.settimeout(0.5)
            if s.connect_ex(("127.0.0.1", port)) != 0:
                return True
        time.sleep(0.1)
    return False


def read_mails(directory):
    mails = []
    for path in sorted(glob.glob(os.path.join(directory, "*.eml"))):
        with open(path, "rb") as f:
            message = email.message_from_binary_file(f, policy=email.policy.default)
        body = message.get_body(preferencelist=("plain",))
        mails.append({
            "file": os.path.basename(path),
            "to": message["to"],
            "subject": str(message["subject"]),
            "text": body.get_content() if body is not None else "",
        })
    return mails


def main():
    parser = argparse.ArgumentParser()
    for name in ("worker", "bugsink", "release", "mail-dir", "worker-log"):
        parser.add_argument(f"--{name}", required=True)
    for name in ("timeout-ms", "shop-pid", "shop-port"):
        parser.add_argument(f"--{name}", required=True, type=int)
    args = parser.parse_args()
    w = args.worker.rstrip("/")
    edge_events = []

    step(f"1. {w}/ : the shop's home page, through edgeguard")
    answer = get(f"{w}/")
    expect_status(answer, f"{w}/", 200)
    check("<h1>Demo shop</h1>" in answer.body, "the shop's own page came through")
    check(answer.header("x-sentry-id") is None, "no event for a page that works")

    step(f"2. {w}/subscribe : the shop raises an unhandled IntegrityError")
    answer = get(f"{w}/subscribe")
    event_id = edgeguard_page(answer, f"{w}/subscribe", 500)
    check("Server Error (500)" not in answer.body, "the visitor never sees Django's white \"Server Error (500)\"")
    edge = edgeguard_event(event_id, "OriginStatus: Origin answered 500", args)
    edge_events.append(event_id)
    app = shop_event("IntegrityError", calculated_type="IntegrityError")
    if app is not None:
        note(f"issue \"{app.issue.title()}\" ({issue_url(app.issue)})")
        check(app.calculated_value.startswith("UNIQUE constraint failed: shop_subscriber.email"),
              f"its value: {app.calculated_value}")
        frames = [f for v in (app.get_parsed_data().get("exception") or {}).get("values", [])
                  for f in ((v.get("stacktrace") or {}).get("frames") or [])]
        mine = [f for f in frames if f.get("in_app") and str(f.get("filename", "")).endswith("shop/views.py")]
        check(any(f.get("function") == "subscribe" for f in mine),
              f"its stack trace: {len(frames)} frames, down to shop/views.py line "
              f"{mine[-1].get('lineno') if mine else '?'} in subscribe", "no in-app frame in shop/views.py")
        check(app.release == args.release, f"release {app.release} (the same as edgeguard's)",
              f"wanted {args.release}")
        check(app.transaction == "/subscribe", f"transaction {app.transaction}")
        if edge is not None:
            check(app.project_id == edge.project_id, f"beside edgeguard's event, in project {app.project.name}")
            edge_trace, app_trace = trace_id(edge), trace_id(app)
            if edge_trace:
                check(edge_trace == app_trace, f"linked by trace {edge_trace} (search trace:{edge_trace})",
                      f"the shop's event has trace {app_trace}")
            else:
                note(f"not linked by a trace: edgeguard's event carries none (the shop's has {app_trace})")

    step(f"3. {w}/report : works, and logs a handled error with logger.error")
    answer = get(f"{w}/report")
    expect_status(answer, f"{w}/report", 200)
    check("<h1>Sales report</h1>" in answer.body, "the shop's own page came through")
    check(answer.header("x-sentry-id") is None, "edgeguard reports nothing (the visitor got the page)")
    logged = shop_event("logger.error in shop.views", logger="shop.views", level="error")
    if logged is not None:
        note(f"issue \"{logged.issue.title()}\" ({issue_url(logged.issue)})")
        check(logged.issue.title() == "Sales report skipped 1 order(s) with an unreadable total",
              "the log message is the issue's title")
        check(logged.release == args.release, f"release {logged.release}")

    step(f"4. {w}/maintenance : the shop answers 503 with Retry-After")
    answer = get(f"{w}/maintenance")
    event_id = edgeguard_page(answer, f"{w}/maintenance", 503)
    check(answer.header("retry-after") == "120", f"Retry-After: {answer.header('retry-after')} (the shop's, kept)")
    edgeguard_event(event_id, "OriginStatus: Origin answered 503", args)
    edge_events.append(event_id)

    step(f"5. {w}/slow : the shop takes longer than ORIGIN_TIMEOUT_MS ({args.timeout_ms} ms)")
    answer = get(f"{w}/slow")
    event_id = edgeguard_page(answer, f"{w}/slow", 504)
    limit = args.timeout_ms / 1000
    check(limit <= answer.seconds < limit + 10, f"the 504 came after {answer.seconds:.1f} s",
          f"wanted {limit:g} s to {limit + 10:g} s")
    edgeguard_event(event_id, f"OriginTimeout: Origin sent no response within {args.timeout_ms} ms", args)
    edge_events.append(event_id)

    step(f"6. the shop is stopped (pid {args.shop_pid}), then {w}/")
    check(stop_shop(args.shop_pid, args.shop_port), f"127.0.0.1:{args.shop_port} refuses connections")
    answer = get(f"{w}/")
    event_id = edgeguard_page(answer, f"{w}/", 502)
    edgeguard_event(event_id, "OriginUnreachable: Origin could not be reached", args)
    edge_events.append(event_id)

    step("7. the mail: one alert per new issue, with its link")
    close_old_connections()
    issues = list(Issue.objects.filter(is_deleted=False).select_related("project").order_by("digest_order"))
    check(len(issues) == 6, f"{len(issues)} issues in Bugsink",
          "wanted 6: IntegrityError, the logged error, edgeguard's 500, 503, 504, 502")
    deadline = time.monotonic() + WAIT_S
    mails = read_mails(args.mail_dir)
    while len(mails) < len(issues) and time.monotonic() < deadline:
        time.sleep(0.25)
        mails = read_mails(args.mail_dir)
    check(len(mails) == len(issues), f"{len(mails)} mails in the mailbox", f"wanted {len(issues)}")
    for issue in issues:
        subject = f'"{truncatechars(issue.title(), 80)}" in "{issue.project.name}" (New issue)'
        # A subject with "…" (a title cut at 80) travels RFC 2047-encoded and folded; its decoded
        # form may differ in white space only.
        matching = [m for m in mails if m["subject"].split() == subject.split()]
        link = issue_url(issue)
        if check(len(matching) == 1, f"mail {subject}", f"{len(matching)} mails with that subject"):
            check(link in matching[0]["text"], f"  to {matching[0]['to']}, linking {link}")

    step("8. the worker's log: every event accepted, no false rate-limit alarm")
    with open(args.worker_log, encoding="utf-8", errors="replace") as f:
        log = f.read()
    for event_id in filter(None, edge_events):
        line = next((line for line in log.splitlines() if f"sent event {event_id}" in line), None)
        check(line is not None and "Sentry answered 200" in line,
              f"logged: {line.strip() if line else f'nothing for {event_id}'}")
    alarms = [line for line in log.splitlines() if re.search(r"rate.?limit", line, re.IGNORECASE)]
    check(not alarms, "no rate-limit warning (Bugsink limits only transaction;span, never sent)",
          f"{len(alarms)} lines, e.g. {alarms[0].strip() if alarms else ''}")
    close_old_connections()
    report_events = Event.objects.filter(sdk_name=EDGEGUARD_SDK, transaction__contains="/report").count()
    check(report_events == 0, "edgeguard sent nothing for /report", f"{report_events} events")

    print(f"\ndemo check: {passed} passed, {failed} failed", flush=True)
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()

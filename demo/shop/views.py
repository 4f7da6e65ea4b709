"""The demo shop's pages: one works, the others fail the ways real sites fail."""

import logging
import time

from django.conf import settings
from django.shortcuts import render

from .models import Subscriber

logger = logging.getLogger(__name__)


def index(request):
    return render(request, "shop/index.html", {
        "subscribers": Subscriber.objects.count(),
        "release": settings.RELEASE,
        "slow_seconds": settings.SLOW_SECONDS,
    })


def subscribe(request):
    # The bug: nobody checks whether the address is already on the list, and Ada subscribed long
    # ago. The database refuses the duplicate (IntegrityError), nothing here catches it, Django
    # answers 500 and the SDK's Django integration reports the exception with its stack trace.
    Subscriber.objects.create(email="ada@example.com")
    return render(request, "shop/page.html", {"title": "Subscribed", "text": "Welcome aboard."})


# The nightly report's input: one total is unreadable.
ORDER_TOTALS = ["19.90", "42.00", "n/a", "7.50"]


def report(request):
    total, unreadable = 0.0, []
    for raw in ORDER_TOTALS:
        try:
            total += float(raw)
        except ValueError:
            unreadable.append(raw)
    if unreadable:
        # Handled: the page still works (200), but the team should know. The SDK's logging
        # integration turns this line into an event (level error).
        logger.error("Sales report skipped %d order(s) with an unreadable total", len(unreadable))
    return render(request, "shop/page.html", {
        "title": "Sales report",
        "text": f"Total of {len(ORDER_TOTALS) - len(unreadable)} orders: {total:.2f} EUR "
                f"({len(unreadable)} skipped; the team has been told).",
    })


def slow(request):
    # Longer than edgeguard waits (the demo sets SHOP_SLOW_SECONDS past ORIGIN_TIMEOUT_MS).
    time.sleep(settings.SLOW_SECONDS)
    return render(request, "shop/page.html", {"title": "Finally", "text": "That took a while."})


def maintenance(request):
    response = render(request, "shop/page.html", {
        "title": "Down for maintenance",
        "text": "Back in two minutes.",
    }, status=503)
    response["Retry-After"] = "120"
    return response

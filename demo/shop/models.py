from django.db import models


class Subscriber(models.Model):
    """A newsletter subscriber: one row per address (the unique constraint /subscribe trips)."""

    email = models.EmailField(unique=True)
    subscribed_at = models.DateTimeField(auto_now_add=True)

    def __str__(self):
        return self.email

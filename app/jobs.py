"""The job protocol of the app's background work, with no Qt: :class:`Cancelled`, raised inside a cooperative
job when the user pressed Cancel (:class:`app.workers.Worker` runs the jobs)."""

from __future__ import annotations


class Cancelled(Exception):
    """Raised inside a cooperative job when the user pressed Cancel."""

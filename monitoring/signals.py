"""Signals of the monitoring app: ``sample_taken`` is sent by the web process's sampler after each
scheduled sample (in its worker thread, never in the event loop), so other apps can react to the
numbers it already has (thresholds, alerts) without sampling anything themselves."""

from django.dispatch import Signal

sample_taken = Signal()

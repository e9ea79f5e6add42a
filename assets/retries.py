"""Dagster step retries for the steps that talk to the outside world (exchanges, chains, price providers).

A transient failure there (a connection reset, a provider's 5xx past the connectors' own retries) re-runs the step
after 5 s, 10 s, 20 s (exponential backoff, +/- jitter so retries of many runs do not arrive together). The steps
are safe to repeat: a sync is incremental (cursors advance only after the write commits) and prices are cached
per asset and day. The warehouse steps are not retried: a failure there is a bug or bad data, and the run fails
with its error (the close failure sensor marks its days ``failed``).
"""

from __future__ import annotations

import dagster as dg

EXTERNAL_STEP_RETRY = dg.RetryPolicy(max_retries=3, delay=5, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS)

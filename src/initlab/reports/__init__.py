"""Reports of experiments: from result lines to tables, ``summary.csv``, ``report.md`` and figures.

Reads the plain result records a sweep writes (dicts, one per epoch and run) and knows nothing of
how they were trained. Module: ``compare`` (the report of ``initlab compare``).
"""

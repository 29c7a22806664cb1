"""Reports of experiments: from result lines to tables, ``summary.csv``, ``report.md`` and figures.

Reads the plain result records a sweep writes (dicts, one per epoch and run) and knows nothing of
how they were trained. Modules: ``compare`` (the report of ``initlab compare``:
:func:`~initlab.reports.compare.write_report`), built from ``summary`` (rows, ranking, sentences,
the learning-rate choice), ``tables`` (text and Markdown tables, ``summary.csv``), ``markdown``
(``report.md``), ``figures`` (PNG figures) drawn with ``plotting`` and ``stats`` (Welch intervals).
"""

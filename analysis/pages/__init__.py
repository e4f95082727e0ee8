"""The dashboard's server-rendered pages: overview, repository, test, failure groups.

Each page shows only what the signed-in user may read (``ingest.access``); a
repository they may not read is a 404, as if it did not exist. Pages work
without JavaScript; charts are SVG drawn on the server (``analysis.charts``).
"""

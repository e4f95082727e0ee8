"""Keep the BRIN index of results by run summarized as rows arrive.

A BRIN lookup reads every page range not summarized yet; without
autosummarize those are all pages written since the last vacuum, so finding
one run's results would slow down as the table grows between vacuums.
"""

from django.db import migrations


def autosummarize(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER INDEX result_run_idx SET (autosummarize = on)")


def back(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER INDEX result_run_idx RESET (autosummarize)")


class Migration(migrations.Migration):
    dependencies = [("ingest", "0003_scoring_inputs")]

    operations = [migrations.RunPython(autosummarize, back)]

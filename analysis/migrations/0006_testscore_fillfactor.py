"""Leave room in each page of test scores, so that advancing a score rewrites it in place.

Every analysed run advances the score of each test it ran. With full pages
each update writes the new row version to another page and a new entry into
both indexes; with free space on the page, PostgreSQL updates the row there
without touching the indexes (a heap-only update), as long as the verdict and
score, the indexed columns, stay as they are, which for most tests they do.
"""

from django.db import migrations

FILLFACTOR = 60


def set_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"ALTER TABLE analysis_testscore SET (fillfactor = {FILLFACTOR})")


def reset_fillfactor(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute("ALTER TABLE analysis_testscore RESET (fillfactor)")


class Migration(migrations.Migration):
    dependencies = [("analysis", "0005_incident")]

    operations = [migrations.RunPython(set_fillfactor, reset_fillfactor)]

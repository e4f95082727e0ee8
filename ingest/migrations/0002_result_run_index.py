"""The index behind "results of this run": BRIN on PostgreSQL, btree elsewhere."""

from django.db import migrations


def create_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(
            "CREATE INDEX result_run_idx ON ingest_testresult USING brin (run_id) "
            "WITH (pages_per_range = 8)"
        )
    else:
        schema_editor.execute("CREATE INDEX result_run_idx ON ingest_testresult (run_id)")


def drop_index(apps, schema_editor):
    schema_editor.execute("DROP INDEX result_run_idx")


class Migration(migrations.Migration):
    dependencies = [("ingest", "0001_initial")]

    operations = [migrations.RunPython(create_index, drop_index)]

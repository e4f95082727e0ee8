# Permissions granted on jobs before the move keep working: the content type
# the composition root's app registered for Job is handed to the job core.

from django.db import migrations


def move_content_type(apps, schema_editor):
    ContentType = apps.get_model("contenttypes", "ContentType")
    if not ContentType.objects.filter(app_label="jobs", model="job").exists():
        ContentType.objects.filter(app_label="flakeguard", model="job").update(app_label="jobs")


class Migration(migrations.Migration):

    dependencies = [
        ("jobs", "0001_initial"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(move_content_type, migrations.RunPython.noop)]

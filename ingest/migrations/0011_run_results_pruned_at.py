"""WorkflowRun.results_pruned_at: when retention removed the run's results."""

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("ingest", "0010_uploads")]

    operations = [
        migrations.AddField(
            model_name="workflowrun",
            name="results_pruned_at",
            field=models.DateTimeField(blank=True, null=True),
        ),
    ]

# The Job table, created by the composition root's migrations before the job
# core became an app of its own. A database that applied those finds this one
# applied through ``replaces``; a new database creates the same table here.

from django.db import migrations, models


class Migration(migrations.Migration):

    initial = True

    replaces = [
        ("flakeguard", "0001_initial"),
        ("flakeguard", "0002_job_progress"),
        ("flakeguard", "0003_alter_job_kind"),
    ]

    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Job",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                ("kind", models.CharField(choices=[("ingest_run", "Ingest a run"), ("analyze_run", "Analyze a run"), ("recompute_repo", "Recompute a repository"), ("poll_repo", "Poll a repository"), ("backfill_repo", "Backfill a repository"), ("publish_check", "Publish a check run")], max_length=32)),
                ("dedup_key", models.CharField(max_length=255, unique=True)),
                ("state", models.CharField(choices=[("pending", "Pending"), ("running", "Running"), ("succeeded", "Succeeded"), ("dead", "Dead")], default="pending", max_length=16)),
                ("payload", models.JSONField(blank=True, default=dict)),
                ("result", models.JSONField(blank=True, default=dict)),
                ("progress", models.JSONField(blank=True, default=dict)),
                ("attempts", models.PositiveIntegerField(default=0)),
                ("max_attempts", models.PositiveIntegerField(default=5)),
                ("next_attempt_at", models.DateTimeField()),
                ("dispatched_at", models.DateTimeField(blank=True, null=True)),
                ("lease_expires_at", models.DateTimeField(blank=True, null=True)),
                ("last_error", models.TextField(blank=True)),
                ("created_at", models.DateTimeField(auto_now_add=True)),
                ("updated_at", models.DateTimeField(auto_now=True)),
                ("started_at", models.DateTimeField(blank=True, null=True)),
                ("finished_at", models.DateTimeField(blank=True, null=True)),
            ],
            options={
                "db_table": "flakeguard_job",
                "indexes": [
                    models.Index(condition=models.Q(("state__in", ["pending", "running"])), fields=["state", "next_attempt_at"], name="job_sweep_idx"),
                    models.Index(fields=["kind", "state"], name="job_kind_state_idx"),
                ],
            },
        ),
    ]

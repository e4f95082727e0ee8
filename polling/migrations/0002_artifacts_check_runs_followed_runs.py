# Artifact and CheckRun join the GitHub edge with the tables they had (state only);
# runs followed until they complete and the moment a repository was followed are new.

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models


def move_content_types(apps, schema_editor):
    """Permissions granted on the moved models keep working."""
    ContentType = apps.get_model("contenttypes", "ContentType")
    for old_app, model in (("ingest", "artifact"), ("analysis", "checkrun")):
        if not ContentType.objects.filter(app_label="polling", model=model).exists():
            ContentType.objects.filter(app_label=old_app, model=model).update(app_label="polling")


class Migration(migrations.Migration):

    dependencies = [
        ('ingest', '0006_move_artifact_to_polling'),
        ('analysis', '0004_move_checkrun_to_polling'),
        ('contenttypes', '0002_remove_content_type_name'),
        ('polling', '0001_initial'),
    ]

    operations = [
        migrations.AddField(
            model_name='githubsettings',
            name='followed_since',
            field=models.DateTimeField(default=django.utils.timezone.now),
        ),
        migrations.SeparateDatabaseAndState(
            state_operations=[
        migrations.CreateModel(
            name='Artifact',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('artifact_id', models.BigIntegerField()),
                ('run_id', models.BigIntegerField()),
                ('run_attempt', models.PositiveIntegerField()),
                ('name', models.CharField(max_length=255)),
                ('size_bytes', models.BigIntegerField(default=0)),
                ('created_at', models.DateTimeField(blank=True, null=True)),
                ('state', models.CharField(choices=[('pending', 'pending'), ('ingested', 'ingested'), ('expired', 'expired (410 Gone)'), ('too_large', 'too large'), ('failed', 'failed')], default='pending', max_length=16)),
                ('error', models.TextField(blank=True)),
                ('recorded_at', models.DateTimeField(auto_now=True)),
                ('repository', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='artifacts', to='ingest.repository')),
            ],
            options={
                'db_table': 'ingest_artifact',
                'indexes': [models.Index(fields=['repository', 'run_id'], name='artifact_run_idx')],
                'constraints': [models.UniqueConstraint(fields=('repository', 'artifact_id'), name='artifact_unique')],
            },
        ),
        migrations.CreateModel(
            name='CheckRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('head_sha', models.CharField(max_length=64)),
                ('github_id', models.BigIntegerField(blank=True, help_text="GitHub's check run id", null=True)),
                ('state', models.CharField(choices=[('pending', 'pending'), ('published', 'published'), ('refused', 'refused by GitHub')], default='pending', max_length=16)),
                ('conclusion', models.CharField(blank=True, max_length=32)),
                ('flaky_tests', models.JSONField(blank=True, default=list)),
                ('annotated', models.JSONField(blank=True, default=list)),
                ('new_failures', models.PositiveIntegerField(default=0)),
                ('known_flaky_failures', models.PositiveIntegerField(default=0)),
                ('last_error', models.TextField(blank=True)),
                ('published_at', models.DateTimeField(blank=True, null=True)),
                ('updated_at', models.DateTimeField(auto_now=True)),
                ('repository', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='check_runs', to='ingest.repository')),
            ],
            options={
                'db_table': 'analysis_checkrun',
                'constraints': [models.UniqueConstraint(fields=('repository', 'head_sha'), name='check_run_unique')],
            },
        ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(move_content_types, migrations.RunPython.noop),
        migrations.CreateModel(
            name='FollowedRun',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('run_id', models.BigIntegerField()),
                ('run_attempt', models.PositiveIntegerField(default=1)),
                ('status', models.CharField(blank=True, help_text='as GitHub last said', max_length=32)),
                ('etag', models.CharField(blank=True, max_length=255)),
                ('first_seen_at', models.DateTimeField(auto_now_add=True)),
                ('checked_at', models.DateTimeField(blank=True, null=True)),
                ('repository', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='followed', to='ingest.repository')),
            ],
            options={
                'constraints': [models.UniqueConstraint(fields=('repository', 'run_id'), name='followed_run_unique')],
            },
        ),
    ]

# Artifact moved to the GitHub edge (polling); its table stays where it is.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('ingest', '0005_artifact'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
        migrations.DeleteModel(
            name='Artifact',
        ),
            ],
            database_operations=[],
        ),
    ]

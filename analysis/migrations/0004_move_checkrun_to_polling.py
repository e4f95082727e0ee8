# CheckRun moved to the GitHub edge (polling); its table stays where it is.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('analysis', '0003_check_run_annotated'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
        migrations.DeleteModel(
            name='CheckRun',
        ),
            ],
            database_operations=[],
        ),
    ]

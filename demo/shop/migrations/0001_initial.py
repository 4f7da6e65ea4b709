from django.db import migrations, models


def ada_subscribes(apps, schema_editor):
    apps.get_model("shop", "Subscriber").objects.create(email="ada@example.com")


class Migration(migrations.Migration):
    initial = True
    dependencies = []

    operations = [
        migrations.CreateModel(
            name="Subscriber",
            fields=[
                ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False,
                                           verbose_name="ID")),
                ("email", models.EmailField(max_length=254, unique=True)),
                ("subscribed_at", models.DateTimeField(auto_now_add=True)),
            ],
        ),
        migrations.RunPython(ada_subscribes, migrations.RunPython.noop),
    ]

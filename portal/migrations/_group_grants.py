"""Shared by the back-office roles' data migrations (the loader skips modules starting with "_"). Works only on the
historical models the migration passes in, so it stays valid however the models change later.

A grant is (app label, model, action) → the permission `<action>_<model>` of that model."""

from django.contrib.auth.management import create_permissions


def ensure_permissions(apps) -> None:
    # Permissions are normally created after the whole migrate run (post_migrate); create them now so a migration
    # can grant them on a fresh database.
    for app_config in apps.get_app_configs():
        app_config.models_module = True
        create_permissions(app_config, apps=apps, verbosity=0)
        app_config.models_module = None


def _permissions(apps, app_label: str, model: str, action: str):
    Permission = apps.get_model("auth", "Permission")
    return Permission.objects.filter(
        content_type__app_label=app_label, content_type__model=model, codename=f"{action}_{model}"
    )


def grant_to_groups(apps, grants: dict[str, list[tuple[str, str, str]]]) -> None:
    """Create the groups if needed and give each its permissions (a missing permission fails the migration)."""
    ensure_permissions(apps)
    Group = apps.get_model("auth", "Group")
    for group_name, group_grants in grants.items():
        group, _ = Group.objects.get_or_create(name=group_name)
        for app_label, model, action in group_grants:
            group.permissions.add(_permissions(apps, app_label, model, action).get())


def revoke_from_groups(apps, grants: dict[str, list[tuple[str, str, str]]]) -> None:
    Group = apps.get_model("auth", "Group")
    for group_name, group_grants in grants.items():
        for group in Group.objects.filter(name=group_name):
            for app_label, model, action in group_grants:
                group.permissions.remove(*_permissions(apps, app_label, model, action))

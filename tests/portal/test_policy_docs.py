"""docs/api.md, docs/portal.md and docs/backoffice.md show the one policy table, as generated from the policy."""

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from portal.management.commands.policy_docs import END, START, policy_table, with_table
from subscriptions import policy


@pytest.mark.django_db
def test_the_docs_show_the_policy_table_as_generated():
    # Fails when an action, a role's right or a group's permission changed without `manage.py policy_docs`.
    call_command("policy_docs", "--check")


@pytest.mark.django_db
def test_the_table_has_a_row_per_action_and_the_check_notices_a_stale_doc(tmp_path, settings):
    table = policy_table()
    for action in policy.Action:
        assert f"| `{action}` " in table
    settings.BASE_DIR = tmp_path
    (tmp_path / "docs").mkdir()
    for name in ("api.md", "portal.md", "backoffice.md"):
        (tmp_path / "docs" / name).write_text(f"# {name}\n{START}\n| old |\n{END}\n")
    with pytest.raises(CommandError):
        call_command("policy_docs", "--check")
    call_command("policy_docs")
    call_command("policy_docs", "--check")
    assert with_table((tmp_path / "docs" / "api.md").read_text(), table).count("| `members.invite_owner` ") == 1

"""scripts/check-local-imports: function-local imports of project modules need a written reason."""

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "check-local-imports"


def _run(tmp_path, source):
    module = tmp_path / "module.py"
    module.write_text(source)
    return subprocess.run([sys.executable, str(SCRIPT), str(module)], capture_output=True, text=True)


def test_check_local_imports_reports_an_unexplained_project_import_and_fails(tmp_path):
    result = _run(tmp_path, "import json\n\ndef f():\n    from billing.money import format_money\n    import json\n")
    assert result.returncode == 1
    assert "module.py:4: from billing.money import format_money" in result.stdout
    assert "json" not in result.stdout


def test_check_local_imports_accepts_an_import_with_a_reason_and_module_level_imports(tmp_path):
    source = (
        "from billing.money import format_money\n\n"
        "def f():\n    from subscriptions import clock  # local import: optional app\n"
    )
    result = _run(tmp_path, source)
    assert result.returncode == 0, result.stdout

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jsonschema  # noqa: E402
import pytest  # noqa: E402

from initaudit.reporters import json as json_reporter  # noqa: E402
from initaudit.schema import schema  # noqa: E402

VALIDATOR = jsonschema.Draft202012Validator(schema())


@pytest.fixture(autouse=True)
def every_json_report_follows_the_schema(monkeypatch):
    """Every JSON report the suite renders (in process) is validated against the shipped schema."""
    render = json_reporter.render

    def checked(report, **kwargs):
        text = render(report, **kwargs)
        VALIDATOR.validate(json.loads(text))
        return text

    monkeypatch.setattr(json_reporter, "render", checked)

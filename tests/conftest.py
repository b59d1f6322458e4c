import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

import jsonschema  # noqa: E402

from initaudit.report.formats import json as json_reporter
from initaudit.report.schema import schema

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


@pytest.fixture(autouse=True)
def _isolated_config(tmp_path_factory, monkeypatch):
    """Run each test from an empty folder: a [tool.initaudit] table in the pyproject.toml of the folder the
    suite is started from must not change what the CLI tests see (tests of config discovery chdir themselves)."""
    monkeypatch.chdir(tmp_path_factory.mktemp("cwd"))


@pytest.fixture(autouse=True)
def _order_independent_rng(request):
    """A module's ``RNG`` restarts from its seed for every test, so what a test draws does not depend on
    which tests ran before it (mutmut runs subsets of the suite in its own order)."""
    import numpy as np

    module = request.module
    rng = getattr(module, "RNG", None)
    # numpy < 1.25 keeps the seed sequence as ``_seed_seq`` only
    bits = getattr(rng, "bit_generator", None)
    seed_seq = getattr(bits, "seed_seq", None) or getattr(bits, "_seed_seq", None)
    if isinstance(rng, np.random.Generator) and isinstance(seed_seq, np.random.SeedSequence):
        module.RNG = np.random.default_rng(seed_seq.entropy)

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))


def shared_testdata() -> Path | None:
    """../shared/testdata beside the repository (CI always has it)."""
    env = os.environ.get("MEDLEDGER_SHARED_TESTDATA")
    if env:
        return Path(env)
    for parent in Path(__file__).resolve().parents:
        cand = parent.parent / "shared" / "testdata"
        if (parent / ".git").exists() and cand.is_dir():
            return cand
    return None


@pytest.fixture(scope="session")
def testdata() -> Path:
    d = shared_testdata()
    if d is None:
        if os.environ.get("CI"):
            pytest.fail("../shared/testdata is missing")
        pytest.skip("../shared/testdata is not beside the repository")
    return d

"""With CI=true a test that would skip fails instead; elsewhere it skips as usual."""

import pytest

CONFTEST = (__import__("pathlib").Path(__file__).parents[1] / "conftest.py").read_text()
SKIPPING_TESTS = """
import pytest

def test_skipped():
    pytest.skip("no chromium here")

@pytest.mark.skipif(True, reason="needs root")
def test_skipif():
    pass

@pytest.mark.xfail(reason="known bug", strict=False)
def test_xfail():
    assert False
"""


@pytest.mark.parametrize(("ci", "failing", "skipped"), [("true", 2, 0), ("", 0, 2)])
def test_skips_fail_only_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, failing: int, skipped: int
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_skips=SKIPPING_TESTS)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    # A skip in setup (skipif) becomes an error, one in the test body a failure: both fail the run.
    assert outcomes.get("failed", 0) + outcomes.get("errors", 0) == failing, outcomes
    assert outcomes.get("skipped", 0) == skipped, outcomes
    assert outcomes.get("xfailed", 0) == 1, outcomes
    if failing:
        result.stdout.fnmatch_lines(
            ["*CI=true: this test would have been skipped*no chromium here*"]
        )


def test_a_module_level_skip_fails_in_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CI", "true")
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(
        test_module_skip="import pytest\npytest.importorskip('no_such_module_here')\n"
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*CI=true: this test would have been skipped*"])

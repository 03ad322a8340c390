"""doctor's check table and its runner, as pure code: what runs, in which order, what is skipped
and how that reads. (`tests/test_doctor.py` runs the checks against the sandbox.)"""

from __future__ import annotations

import pytest

from nordpass_connector.doctor import (
    CHECKS,
    FAIL,
    PASS,
    SKIP,
    Check,
    CheckName,
    Step,
    render,
    run_checks,
    run_doctor,
)

ORDER = ["settings", "nordpass", "identity", "dcr", "checkpoint table", "clock"]


def test_the_table_runs_in_the_order_of_an_event_path() -> None:
    assert [step.name for step in CHECKS] == ORDER
    assert {step.name for step in CHECKS} == set(CheckName), "every check name has exactly one step"


def test_every_need_is_a_step_that_runs_before_it() -> None:
    seen: set[CheckName] = set()
    for step in CHECKS:
        assert set(step.needs) <= seen, f"{step.name} needs {step.needs}, not all of which run before it"
        seen.add(step.name)


def test_every_step_but_settings_depends_on_the_settings() -> None:
    # Without valid settings there is no context: a step that could run then would have nothing to run on.
    needs = {step.name: step.needs for step in CHECKS}

    def roots(name: CheckName) -> set[CheckName]:
        return {name} if not needs[name] else set().union(*(roots(n) for n in needs[name]))

    assert all(roots(step.name) == {CheckName.SETTINGS} for step in CHECKS)
    assert needs[CheckName.DCR] == (CheckName.IDENTITY,), "the upload needs the token"


# -- the runner, over a toy table ---------------------------------------------------------------
Calls = list[CheckName]


def passing(name: CheckName) -> Step[Calls]:
    def check(calls: Calls) -> Check:
        calls.append(name)
        return Check(name, PASS, "ok")

    return Step(name, (), check)


def failing(name: CheckName, *, needs: tuple[CheckName, ...] = ()) -> Step[Calls]:
    def check(calls: Calls) -> Check:
        calls.append(name)
        return Check(name, FAIL, "broken", fix="mend it")

    return Step(name, needs, check)


def needing(name: CheckName, *needs: CheckName) -> Step[Calls]:
    return Step(name, needs, passing(name).check)


def test_checks_run_once_each_in_table_order() -> None:
    calls: Calls = []
    steps = [passing(CheckName.CLOCK), needing(CheckName.DCR, CheckName.CLOCK), passing(CheckName.SETTINGS)]
    results = run_checks(steps, calls)
    assert calls == [CheckName.CLOCK, CheckName.DCR, CheckName.SETTINGS]
    assert [(r.name, r.verdict) for r in results] == [
        (CheckName.CLOCK, PASS),
        (CheckName.DCR, PASS),
        (CheckName.SETTINGS, PASS),
    ]


def test_a_failed_need_skips_its_dependants_and_only_them() -> None:
    calls: Calls = []
    steps = [
        passing(CheckName.SETTINGS),
        failing(CheckName.IDENTITY, needs=(CheckName.SETTINGS,)),
        needing(CheckName.DCR, CheckName.IDENTITY),
        needing(CheckName.TABLE, CheckName.SETTINGS),
    ]
    results = run_checks(steps, calls)
    assert calls == [CheckName.SETTINGS, CheckName.IDENTITY, CheckName.TABLE], "the dcr check never ran"
    assert [r.verdict for r in results] == [PASS, FAIL, SKIP, PASS]
    assert results[2] == Check(CheckName.DCR, SKIP, "skipped: the identity check did not pass")


def test_a_skip_names_the_need_that_did_not_pass_not_the_root() -> None:
    steps = [
        failing(CheckName.SETTINGS),
        needing(CheckName.IDENTITY, CheckName.SETTINGS),
        needing(CheckName.DCR, CheckName.IDENTITY),
    ]
    details = [r.detail for r in run_checks(steps, [])]
    assert details[1:] == [
        "skipped: the settings check did not pass",
        "skipped: the identity check did not pass",
    ]


def test_with_several_needs_the_first_that_failed_is_named() -> None:
    steps = [
        passing(CheckName.SETTINGS),
        failing(CheckName.NORDPASS),
        failing(CheckName.IDENTITY),
        needing(CheckName.CLOCK, CheckName.SETTINGS, CheckName.NORDPASS, CheckName.IDENTITY),
    ]
    assert run_checks(steps, [])[-1].detail == "skipped: the nordpass check did not pass"


def test_a_skipped_need_counts_as_not_passed() -> None:
    skipping: Step[Calls] = Step(
        CheckName.CLOCK, (), lambda calls: Check(CheckName.CLOCK, SKIP, "nothing to judge")
    )
    results = run_checks([skipping, needing(CheckName.DCR, CheckName.CLOCK)], [])
    assert results[1].verdict == SKIP


def test_a_decided_outcome_is_used_without_running_and_without_a_context() -> None:
    decided = Check(CheckName.SETTINGS, FAIL, "2 problems in the settings", fix="fix them")
    steps = [passing(CheckName.SETTINGS), needing(CheckName.NORDPASS, CheckName.SETTINGS)]
    results = run_checks(steps, None, decided=[decided])
    assert results == [decided, Check(CheckName.NORDPASS, SKIP, "skipped: the settings check did not pass")]


def test_a_step_that_would_run_without_a_context_is_a_table_mistake() -> None:
    decided = Check(CheckName.SETTINGS, FAIL, "broken")
    with pytest.raises(ValueError, match="the clock check has no context"):
        run_checks([passing(CheckName.SETTINGS), passing(CheckName.CLOCK)], None, decided=[decided])


def test_a_need_that_does_not_run_before_is_a_table_mistake() -> None:
    steps = [needing(CheckName.DCR, CheckName.IDENTITY), passing(CheckName.IDENTITY)]
    with pytest.raises(ValueError, match="the dcr check needs identity"):
        run_checks(steps, [])


# -- doctor without valid settings: nothing contacted, everything after skipped --------------------
def test_invalid_settings_fail_alone_and_skip_every_other_check() -> None:
    checks = run_doctor({"NORDPASS_TOKEN": ""}, timeout=1)
    assert [c.name for c in checks] == ORDER
    settings = checks[0]
    assert settings.verdict == FAIL and settings.detail.endswith("problems in the settings")
    assert any("NORDPASS_TOKEN" in line for line in settings.lines)
    assert {c.name: c.detail for c in checks[1:]} == {
        "nordpass": "skipped: the settings check did not pass",
        "identity": "skipped: the settings check did not pass",
        "dcr": "skipped: the identity check did not pass",
        "checkpoint table": "skipped: the settings check did not pass",
        "clock": "skipped: the settings check did not pass",
    }


# -- render ----------------------------------------------------------------------------------------
def test_render_aligns_names_shows_problems_and_fixes_of_failures_only() -> None:
    checks = [
        Check(CheckName.SETTINGS, FAIL, "2 problems in the settings", fix="fix them", lines=("a", "b")),
        Check(CheckName.TABLE, PASS, "fine", fix="never shown"),
        Check(CheckName.CLOCK, SKIP, "skipped: the settings check did not pass"),
    ]
    assert render(checks) == [
        "FAIL  settings          2 problems in the settings",
        "                        - a",
        "                        - b",
        "                        fix: fix them",
        "PASS  checkpoint table  fine",
        "SKIP  clock             skipped: the settings check did not pass",
        "doctor: 1 passed, 1 failed, 1 skipped",
    ]

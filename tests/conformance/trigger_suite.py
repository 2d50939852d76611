"""Conformance suite for ``streamtune.triggers.base.Trigger`` implementations (the trigger extension point).

Subclass :class:`TriggerConformance` and provide fixtures:

- ``trigger``: the trigger under test;
- ``firing``: ``(spec, window, now)`` at which it fires (``window`` may be None: a schedule on no window);
- ``quiet``: ``(spec, window, now)`` at which it does not fire.

``settle(trigger, spec, window, now)`` and ``settle_quiet(...)`` may be overridden for triggers that read
measurements made elsewhere (drift, degradation): they ask until the measurement of that window is ready.
"""

from __future__ import annotations

import copy

from streamtune.registry.records import TriggerDetail
from streamtune.triggers.base import Trigger


def ask(trigger: Trigger, spec, window, now) -> TriggerDetail | None:  # noqa: ANN001
    """What the ingestor asks: on_tick always; on_event too when there is a window."""
    detail = trigger.on_tick(spec, window, now)
    if detail is None and window is not None:
        detail = trigger.on_event(spec, window, now)
    return detail


class TriggerConformance:
    """Every trigger fires with a detail of its own kind, leaves the window alone, and answers the same twice."""

    def settle(self, trigger, spec, window, now) -> TriggerDetail | None:  # noqa: ANN001
        return ask(trigger, spec, window, now)

    def settle_quiet(self, trigger, spec, window, now) -> TriggerDetail | None:  # noqa: ANN001
        return ask(trigger, spec, window, now)

    def test_fires_with_a_detail_of_its_own_kind(self, trigger, firing):
        detail = self.settle(trigger, *firing)
        assert isinstance(detail, TriggerDetail), f"{type(trigger).__name__} did not fire"
        assert detail.kind == trigger.kind

    def test_stays_quiet_when_it_should(self, trigger, quiet, firing):
        self.settle(trigger, *firing)  # a trigger that measured something else first must not carry it over
        assert self.settle_quiet(trigger, *quiet) is None

    def test_asking_does_not_change_the_window(self, trigger, firing):
        spec, window, now = firing
        if window is None:
            return
        before = (copy.deepcopy([e.to_state() for e in window.events]), window.num_rows, window.opened_at)
        self.settle(trigger, spec, window, now)
        ask(trigger, spec, window, now)
        assert before == ([e.to_state() for e in window.events], window.num_rows, window.opened_at)

    def test_asking_twice_gives_the_same_answer_until_adopted(self, trigger, firing):
        first = self.settle(trigger, *firing)
        assert ask(trigger, *firing) == first

    def test_adopting_details_of_other_triggers_changes_nothing(self, trigger, firing):
        first = self.settle(trigger, *firing)
        other = "max_wait" if trigger.kind != "max_wait" else "min_rows"
        trigger.adopt([(firing[0].name, TriggerDetail(kind=other, rows=1))])
        assert ask(trigger, *firing) == first

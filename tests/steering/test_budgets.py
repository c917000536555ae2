"""Budgets (omoi/budgets.py) at the service level: a reservation is taken on every account before
a call and settled to its real cost in the turn's transaction; a call past a limit is refused with
nothing reserved; a reservation left by a crashed call is released by the run's next one."""

from decimal import Decimal

import pytest
from django.db import transaction

from omoi.budgets import Account, budget_release, budget_reserve, budget_settle, budget_state
from omoi.models import BudgetReservation
from sandboxes.models import AgentRun
from tests.factories import SpecFactory

pytestmark = pytest.mark.django_db(transaction=True)

ACCOUNTS = [
    Account(key="task:1", limit_usd=Decimal("1.00"), label="the task"),
    Account(key="spec:1", limit_usd=Decimal("0.50"), label="the spec"),
    Account(key="project:1:today", limit_usd=Decimal("5.00"), label="the project today"),
]


def state(key: str) -> tuple[Decimal, Decimal]:
    figures = budget_state(key)
    return Decimal(figures["spent_usd"]), Decimal(figures["reserved_usd"])


@pytest.fixture
def run():
    return AgentRun.objects.create(kind="task", spec=SpecFactory())


def test_a_reservation_is_settled_to_the_real_cost_on_every_account(run):
    assert budget_reserve(run_id=run.pk, accounts=ACCOUNTS, amount_usd=Decimal("0.20")) is None
    assert {account.key: state(account.key) for account in ACCOUNTS} == {
        account.key: (Decimal(0), Decimal("0.20")) for account in ACCOUNTS
    }

    with transaction.atomic():
        budget_settle(run_id=run.pk, cost_usd=Decimal("0.012345"))

    assert {account.key: state(account.key) for account in ACCOUNTS} == {
        account.key: (Decimal("0.012345"), Decimal(0)) for account in ACCOUNTS
    }
    assert not BudgetReservation.objects.exists()
    with transaction.atomic():
        budget_settle(run_id=run.pk, cost_usd=Decimal("1"))  # nothing reserved: nothing to settle
    assert state("spec:1") == (Decimal("0.012345"), Decimal(0))


def test_a_call_past_a_limit_is_refused_with_nothing_reserved(run):
    assert budget_reserve(run_id=run.pk, accounts=ACCOUNTS, amount_usd=Decimal("0.40")) is None
    with transaction.atomic():
        budget_settle(run_id=run.pk, cost_usd=Decimal("0.40"))

    refusal = budget_reserve(run_id=run.pk, accounts=ACCOUNTS, amount_usd=Decimal("0.20"))

    assert refusal is not None and refusal.account.key == "spec:1"
    assert (refusal.spent_usd, refusal.limit_usd, refusal.call_usd) == (
        Decimal("0.40"),
        Decimal("0.50"),
        Decimal("0.20"),
    )
    assert "the budget of the spec is reached" in refusal.message
    assert [state(account.key)[1] for account in ACCOUNTS] == [Decimal(0)] * 3
    assert not BudgetReservation.objects.exists()


def test_a_reservation_left_by_a_crash_is_released_by_the_next_one_and_by_release(run):
    budget_reserve(run_id=run.pk, accounts=ACCOUNTS, amount_usd=Decimal("0.30"))
    # The worker died mid-call: nothing settled. The run's next call reserves afresh.
    assert budget_reserve(run_id=run.pk, accounts=ACCOUNTS, amount_usd=Decimal("0.25")) is None
    assert state("spec:1") == (Decimal(0), Decimal("0.25"))

    budget_release(run_id=run.pk)

    assert [state(account.key) for account in ACCOUNTS] == [(Decimal(0), Decimal(0))] * 3
    assert not BudgetReservation.objects.exists()

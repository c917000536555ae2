"""Budgets that hold: before a model call, its worst-case cost (the input so far plus max_tokens, at
the model's prices) is reserved on every account it is charged to — the task across its runs, the
spec, the project's day — under those rows' locks; when the turn commits, the reservation is
settled to the call's real cost. A call that would take an account past its limit is not made.
Tickets running in parallel therefore never spend more than a spec's budget plus one call's
reservation.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import F
from django.utils import timezone

from omoi.models import BudgetAccount, BudgetReservation

MICRO = Decimal("0.000001")


@dataclass(frozen=True)
class Account:
    """An account a call is charged to: its key, its limit, and its label for people ("the spec",
    "the task", "the project today")."""

    key: str
    limit_usd: Decimal
    label: str


@dataclass(frozen=True)
class BudgetRefusal:
    """Why a call may not be made: the account, what it has spent and reserved, its limit, and what
    the call was about to reserve."""

    account: Account
    spent_usd: Decimal
    reserved_usd: Decimal
    limit_usd: Decimal
    call_usd: Decimal

    @property
    def message(self) -> str:
        return (
            f"the budget of {self.account.label} is reached: ${self.spent_usd:.4f} spent"
            f"{f' and ${self.reserved_usd:.4f} reserved' if self.reserved_usd else ''} of ${self.limit_usd:.4f}; "
            f"the next model call could cost up to ${self.call_usd:.4f}"
        )

    def as_dict(self) -> dict:
        return {
            "account": self.account.key,
            "spent_usd": str(self.spent_usd),
            "reserved_usd": str(self.reserved_usd),
            "limit_usd": str(self.limit_usd),
            "call_usd": str(self.call_usd),
        }


def project_day_key(project_id: int) -> str:
    return f"project:{project_id}:{timezone.now().date().isoformat()}"


def _accounts_add(keys: list[str], *, reserved_usd: Decimal, spent_usd: Decimal = Decimal(0)) -> None:
    """Add to the accounts' reserved and spent sums in one statement, taking their locks in key
    order (budget_reserve's order: no deadlock between two runs)."""
    keys = sorted(keys)
    if not keys:
        return
    if connection.vendor != "postgresql":  # SQLite: one writer at a time, no row locks to order
        BudgetAccount.objects.filter(key__in=keys).update(
            reserved_usd=F("reserved_usd") + reserved_usd, spent_usd=F("spent_usd") + spent_usd
        )
        return
    table = BudgetAccount._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} AS account SET reserved_usd = account.reserved_usd + %s, "
            f"spent_usd = account.spent_usd + %s "
            f"FROM (SELECT key FROM {table} WHERE key = ANY(%s) ORDER BY key FOR UPDATE) AS locked "
            f"WHERE account.key = locked.key",
            [reserved_usd, spent_usd, keys],
        )


def _release(reservation: BudgetReservation) -> None:
    _accounts_add(reservation.accounts, reserved_usd=-reservation.amount_usd)
    reservation.delete()


@dataclass
class _Locked:
    key: str
    limit_usd: Decimal
    spent_usd: Decimal
    reserved_usd: Decimal


def _lock_accounts(ordered: list[Account], *, reserving: Decimal) -> dict[str, _Locked]:
    """Create the accounts that do not exist yet, bring their limits up to date, add `reserving` to
    what they hold reserved, lock them and read them, in one statement (the upsert takes each row's
    lock, in key order). Returns each account as it was before `reserving` was added."""
    table = BudgetAccount._meta.db_table
    now = connection.ops.adapt_datetimefield_value(timezone.now())
    rows = ", ".join(["(%s, %s, 0, %s, %s)"] * len(ordered))
    params: list = []
    for account in ordered:
        params += [account.key, Decimal(account.limit_usd).quantize(MICRO), reserving, now]
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {table} (key, limit_usd, spent_usd, reserved_usd, updated_at) VALUES {rows} "
            f"ON CONFLICT (key) DO UPDATE SET limit_usd = EXCLUDED.limit_usd, "
            f"reserved_usd = {table}.reserved_usd + EXCLUDED.reserved_usd "
            f"RETURNING key, CAST(limit_usd AS TEXT), CAST(spent_usd AS TEXT), CAST(reserved_usd AS TEXT)",
            params,
        )
        found = cursor.fetchall()
    return {
        key: _Locked(
            key,
            Decimal(limit).quantize(MICRO),
            Decimal(spent).quantize(MICRO),
            Decimal(reserved).quantize(MICRO) - reserving,
        )
        for key, limit, spent, reserved in found
    }


@transaction.atomic
def budget_reserve(
    *, run_id: int, accounts: list[Account], amount_usd: Decimal, fresh: bool = False
) -> BudgetRefusal | None:
    """Reserve `amount_usd` for the run's next call on every account, or refuse (nothing reserved).
    A reservation the run still holds (its last call never settled: a crash) is released first;
    `fresh`: the run was made in this transaction and holds none."""
    amount_usd = Decimal(amount_usd).quantize(MICRO)
    stale = None if fresh else BudgetReservation.objects.select_for_update().filter(agent_run_id=run_id).first()
    ordered = sorted(accounts, key=lambda account: account.key)  # one lock order: no deadlock
    locked = _lock_accounts(ordered, reserving=amount_usd)
    if stale is not None:
        for key in stale.accounts:
            if key in locked:
                locked[key].reserved_usd -= stale.amount_usd
        _release(stale)
    for account in ordered:
        row = locked[account.key]
        if row.spent_usd + row.reserved_usd + amount_usd > row.limit_usd:
            _accounts_add(list(locked), reserved_usd=-amount_usd)  # this call's reservation, taken back
            return BudgetRefusal(
                account=account,
                spent_usd=row.spent_usd,
                reserved_usd=row.reserved_usd,
                limit_usd=row.limit_usd,
                call_usd=amount_usd,
            )
    BudgetReservation.objects.create(agent_run_id=run_id, accounts=[a.key for a in ordered], amount_usd=amount_usd)
    return None


def budget_settle(*, run_id: int, cost_usd: Decimal) -> None:
    """Inside the turn's transaction: the run's reservation becomes the call's real cost."""
    cost_usd = Decimal(cost_usd).quantize(MICRO)
    table = BudgetReservation._meta.db_table
    with connection.cursor() as cursor:  # take the reservation and lock it out of reach at once
        cursor.execute(
            f"DELETE FROM {table} WHERE agent_run_id = %s RETURNING accounts, CAST(amount_usd AS TEXT)", [run_id]
        )
        row = cursor.fetchone()
    if row is None:
        return
    accounts, amount = row
    keys = json.loads(accounts) if isinstance(accounts, str) else accounts
    _accounts_add(keys, reserved_usd=-Decimal(amount).quantize(MICRO), spent_usd=cost_usd)


def budget_release(*, run_id: int) -> None:
    """Give back a run's reservation without spending it (the run ended, the call was not made)."""
    with transaction.atomic():
        reservation = BudgetReservation.objects.select_for_update().filter(agent_run_id=run_id).first()
        if reservation is not None:
            _release(reservation)


def budget_state(key: str) -> dict:
    """An account as people read it: limit, spent, reserved, remaining (None when unknown)."""
    row = BudgetAccount.objects.filter(key=key).first()
    if row is None:
        return {"limit_usd": None, "spent_usd": "0", "reserved_usd": "0", "remaining_usd": None}
    remaining = max(row.limit_usd - row.spent_usd - row.reserved_usd, Decimal(0))
    return {
        "limit_usd": str(row.limit_usd),
        "spent_usd": str(row.spent_usd),
        "reserved_usd": str(row.reserved_usd),
        "remaining_usd": str(remaining),
    }

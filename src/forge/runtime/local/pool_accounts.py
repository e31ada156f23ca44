"""Ready pool labs whose uids the name service came to know while they waited.

A pair of lab uids is looked up through the name service when it is claimed
(``uids.UidPool.claim``), and a pair with an account is never handed out. A pool lab
claims its pair when it is built and may then wait for hours. An account that a directory
service (LDAP, SSSD, a systemd userdb record) starts to give one of those ids meanwhile is
in no account file, so the runtime's readiness (``uid_clash.ClashCheck``) does not see it;
its holder owns the waiting lab's user namespaces and could plant files in the learner's
home or read what a service gets at the claim (red team CB). Such a lab is destroyed, at
the claim that would hand it out and by a sweep of the ready labs, instead of given to a
learner.
"""

from __future__ import annotations

from collections.abc import Iterable

from forge.runtime.base import LabNotFound
from forge.runtime.local.kernel_names import Names
from forge.runtime.local.lab_access import lab_identity
from forge.runtime.local.reconcile import read_meta
from forge.runtime.local.uid_clash import known_to_nss

ACCOUNT_SWEEP_S = 60.0  # how often the refill thread looks up every ready lab's pair


def waiting_account(names: Names, lab_id: str) -> str | None:
    """The account the name service now knows with one of ``lab_id``'s uids, as
    ``known_to_nss`` names it; None when it knows neither or no identity is recorded (the
    claim then fails on the missing record and the lab is built fresh)."""
    try:
        identity = lab_identity(lab_id, read_meta(names, lab_id))
    except LabNotFound:
        return None
    return known_to_nss((identity.learner, identity.grader))


def known_labs(names: Names, lab_ids: Iterable[str]) -> dict[str, str]:
    """Lab id -> the account, for each of ``lab_ids`` whose uids the name service knows."""
    return {lab: account for lab in lab_ids
            if (account := waiting_account(names, lab)) is not None}

"""The console's navigation: the pages a user's roles may use, in the order they are shown."""

from __future__ import annotations

from dataclasses import dataclass

from gateway.access.roles import Permission, Principal


@dataclass(frozen=True)
class Link:
    path: str
    label: str
    ident: str  # the element's id (tests and the browser find it by it)


def links(principal: Principal) -> list[Link]:
    """The pages ``principal`` may open: the worklist and the outbound list with a message's
    metadata (of some desk), the search with the search (of some desk), the cases with a form's
    content (of some desk) or the audit, the alert register with the reading of forms, the
    deadlines board with the dashboards, the statistics dashboard with the dashboards or the
    operations, the quarantine with the queues, the access log with the audit, the data-subject
    report with its permission."""
    shown = []
    if principal.desks_for(Permission.METADATA) != frozenset():
        shown += [Link("/", "Worklist", "nav-worklist"), Link("/outbound", "Sent", "nav-outbound")]
    if principal.desks_for(Permission.SEND) != frozenset():
        shown.append(Link("/compose", "Compose", "nav-compose"))
    if principal.desks_for(Permission.SEARCH) != frozenset():
        shown.append(Link("/search", "Search", "nav-search"))
    if principal.desks_for(Permission.CONTENT) != frozenset() or principal.may(Permission.AUDIT):
        shown.append(Link("/cases", "Cases", "nav-cases"))
    if principal.desks_for(Permission.CONTENT) != frozenset():
        shown.append(Link("/alerts", "Alerts", "nav-alerts"))
    if principal.may(Permission.DASHBOARDS):
        shown.append(Link("/deadlines", "Deadlines", "nav-deadlines"))
    if principal.may(Permission.DASHBOARDS) or principal.may(Permission.OPERATIONS):
        shown.append(Link("/dashboard", "Dashboard", "nav-dashboard"))
    if principal.may(Permission.QUEUES):
        shown.append(Link("/quarantine", "Quarantine", "nav-quarantine"))
    if principal.may(Permission.AUDIT):
        shown.append(Link("/access-log", "Access log", "nav-access-log"))
    if principal.may(Permission.SUBJECT_REPORT):
        shown.append(Link("/subject-report", "Subject report", "nav-subject-report"))
    return shown

"""Reviewers are real Label Studio users that fraudloop creates and maps to audit actors.

Label Studio's `POST /api/users/` makes a user without a password, and an admin cannot read
another user's token; its invite link can: the new user signs up with a password through the
same form a person would use (much faster than `label-studio reset_password`, which boots
Django on the server host). Label Studio Community has no roles, so the role lives
in fraudloop's `reviewers` table and fraudloop enforces it (`labeling.review`).
"""

import re
from datetime import datetime

import httpx
from sqlalchemy.orm import Session

from fraudloop import audit
from fraudloop.errors import FraudloopError
from fraudloop.storage import Reviewer
from labeling.client import LabelStudioClient
from labeling.review.cases import ROLES

_CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
_ACTION = re.compile(r'<form id="signup-form"\s+action="([^"]+)"')


def find_user(client: LabelStudioClient, email: str) -> int | None:
    """The Label Studio user id for an e-mail, if the user exists."""
    for user in client.request("GET", "/api/users/").json():
        if user["email"].lower() == email.lower():
            return int(user["id"])
    return None


def create_user(client: LabelStudioClient, email: str, password: str) -> int:
    """Sign a new user up through an invite link; returns its Label Studio user id."""
    invite = client.request("GET", "/api/invite").json()["invite_url"]
    with httpx.Client(base_url=client.url, follow_redirects=True, timeout=30) as browser:
        form = browser.get(invite)
        csrf, action = _CSRF.search(form.text), _ACTION.search(form.text)
        if csrf is None or action is None:
            raise FraudloopError(
                f"Label Studio at {client.url} served no signup form for its invite link; "
                "check that the server version matches services/labelstudio.lock.txt"
            )
        browser.post(
            action.group(1).replace("&amp;", "&"),
            data={
                "csrfmiddlewaretoken": csrf.group(1),
                "email": email,
                "password": password,
                "how_find_us": "Other",
            },
            headers={"Referer": str(form.url)},
        )
        who = browser.get("/api/current-user/whoami")
    if who.status_code != 200 or who.json().get("email", "").lower() != email.lower():  # noqa: PLR2004 - HTTP OK
        raise FraudloopError(
            f"Label Studio refused to create {email}: the password may be too short "
            "(at least 8 characters) or the e-mail invalid"
        )
    return int(who.json()["id"])


def add_reviewer(
    session: Session,
    client: LabelStudioClient,
    email: str,
    role: str,
    password: str,
    actor: str,
    now: datetime,
) -> tuple[int, bool]:
    """Find or create the Label Studio user and give it a role: (user id, created).

    The one way a user's answers start to count (`labeling.review` sends anyone else's back to
    the queue), for `fraudloop reviewers add`, the demo's reviewers, tests and benchmarks alike.
    `password` is used only when the user is created.
    """
    if role not in ROLES:  # before a Label Studio user exists for nothing
        raise FraudloopError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    user_id = find_user(client, email)
    created = user_id is None
    if user_id is None:
        user_id = create_user(client, email, password)
    register(session, email, role, user_id, actor, now)
    return user_id, created


def register(
    session: Session, email: str, role: str, ls_user_id: int, actor: str, now: datetime
) -> bool:
    """Map a Label Studio user to a fraudloop role (audited); False if nothing changed."""
    if role not in ROLES:
        raise FraudloopError(f"role must be one of {', '.join(ROLES)}, got {role!r}")
    current = session.get(Reviewer, email)
    if current is not None and (current.role, current.ls_user_id) == (role, ls_user_id):
        return False
    if current is None:
        session.add(Reviewer(email=email, role=role, ls_user_id=ls_user_id, created_at=now))
    else:
        current.role, current.ls_user_id = role, ls_user_id
    event = audit.event(
        f"reviewer:{email}:{role}:{now.isoformat()}",
        "reviewer_role",
        actor,
        now,
        reviewer=email,
        role=role,
        ls_user_id=ls_user_id,
    )
    session.flush()
    audit.append(session, [event])
    return True


def login_token(url: str, email: str, password: str) -> str:
    """A reviewer's own API token (simulated reviewers and tests act as that person)."""
    with httpx.Client(base_url=url.rstrip("/"), follow_redirects=True, timeout=30) as browser:
        page = browser.get("/user/login")
        csrf = _CSRF.search(page.text)
        browser.post(
            "/user/login",
            data={
                "email": email,
                "password": password,
                "csrfmiddlewaretoken": csrf.group(1) if csrf else "",
            },
            headers={"Referer": str(page.url)},
        )
        response = browser.get("/api/current-user/token")
    if response.status_code != 200:  # noqa: PLR2004 - HTTP OK
        raise FraudloopError(f"Label Studio at {url} refused the login of {email}")
    return str(response.json()["token"])

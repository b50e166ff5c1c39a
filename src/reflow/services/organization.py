"""Organizations and their users: who a personal access token acts as, what that user
may do, and the user resource of the Organization API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from reflow.crypto import Vault, hash_token
from reflow.db.repo import Page, PageParams, paginate
from reflow.db.tables import ApiToken, Organization, Workspace
from reflow.db.tables_org import ORG_ROLES, WORKSPACE_ROLES, User, WorkspaceMember
from reflow.errors import BadRequest, Conflict, Forbidden, NotFound
from reflow.services import workspace_admin
from reflow.services.auth import Principal, issue_token
from reflow.services.emails import parse_email

INITIAL_OWNER_EMAIL = "admin@localhost"


# -- who is calling ---------------------------------------------------------------------


def acting_user(session: Session, *, principal: Principal) -> User:
    """The user a personal access token belongs to.

    An organization token without a user is the one ``reflow init`` printed (or one
    from before users existed): it belongs to the organization's initial owner, who is
    created on its first use. The caller commits.
    """
    if principal.kind != "organization":
        raise Forbidden("this endpoint needs a personal access (organization) token")
    user_id = getattr(principal, "user_id", None)
    if user_id is not None:
        user = session.get(User, user_id)
        if user is not None and user.organization_id == principal.organization_id:
            return user
        raise Forbidden("the user of this token no longer exists")
    return adopt_initial_owner(session, organization_id=principal.organization_id)


def adopt_initial_owner(session: Session, *, organization_id: int) -> User:
    user = _initial_owner(session, organization_id=organization_id)
    tokens = session.scalars(
        select(ApiToken).where(
            ApiToken.organization_id == organization_id,
            ApiToken.kind == "organization",
            ApiToken.user_id.is_(None),
        )
    )
    for token in tokens:
        token.user_id = user.id
    session.flush()
    return user


def _initial_owner(session: Session, *, organization_id: int) -> User:
    """The initial owner, created if missing. Two first requests at once both try to
    create it; the one that loses on the unique (organization, email) index reads the
    winner's row instead of failing."""
    user = _user_by_email(session, organization_id=organization_id, email=INITIAL_OWNER_EMAIL)
    if user is not None:
        return user
    try:
        with session.begin_nested():
            user = User(organization_id=organization_id, email=INITIAL_OWNER_EMAIL, role="admin")
            session.add(user)
        return user
    except IntegrityError:
        user = _user_by_email(session, organization_id=organization_id, email=INITIAL_OWNER_EMAIL)
        if user is None:
            raise
        return user


def require_admin(user: User) -> None:
    if user.role != "admin":
        raise Forbidden("this needs an organization admin; your role is member")


def workspace_role(session: Session, *, user: User, workspace_id: int) -> str | None:
    """The user's role in a workspace of their organization: the membership's role,
    else ``owner`` for organization admins, else None (no access)."""
    member = session.scalar(
        select(WorkspaceMember).where(
            WorkspaceMember.workspace_id == workspace_id, WorkspaceMember.user_id == user.id
        )
    )
    if member is not None:
        return member.role
    return "owner" if user.role == "admin" else None


def require_workspace_owner(session: Session, *, user: User, workspace_id: int) -> None:
    if user.role == "admin":
        return
    if workspace_role(session, user=user, workspace_id=workspace_id) != "owner":
        raise Forbidden(f"this needs an organization admin or an owner of workspace {workspace_id}")


# -- validation -----------------------------------------------------------------------


def parse_org_role(value: Any, field: str = "role") -> str:
    if not isinstance(value, str) or value.lower() not in ORG_ROLES:
        raise BadRequest(f"{field} must be one of: {', '.join(ORG_ROLES)}")
    return value.lower()


def parse_workspace_role(value: Any, field: str = "role") -> str:
    """Workspace roles, accepted in either case (``Viewer`` and ``viewer`` both occur)."""
    if not isinstance(value, str) or value.lower() not in WORKSPACE_ROLES:
        raise BadRequest(f"{field} must be one of: {', '.join(WORKSPACE_ROLES)}")
    return value.lower()


# -- users ----------------------------------------------------------------------------


def _user_by_email(session: Session, *, organization_id: int, email: str) -> User | None:
    return session.scalar(
        select(User).where(User.organization_id == organization_id, User.email == email)
    )


def list_users(session: Session, *, organization_id: int, params: PageParams) -> Page:
    stmt = select(User).where(User.organization_id == organization_id)
    return paginate(session, stmt, params, User.id)


def get_user(session: Session, *, organization_id: int, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None or user.organization_id != organization_id:
        raise NotFound(f"user {user_id} not found")
    return user


def update_user(session: Session, *, user: User, body: dict[str, Any]) -> User:
    """``{"user": {"role": ...}}`` as documented; the unwrapped form is accepted too."""
    fields = body.get("user", body)
    if not isinstance(fields, dict):
        raise BadRequest("user must be an object")
    if "role" in fields:
        role = parse_org_role(fields["role"], "user.role")
        if user.role == "admin" and role != "admin":
            _keep_an_admin(session, organization_id=user.organization_id, leaving=user)
        user.role = role
    session.flush()
    return user


def delete_user(session: Session, *, user: User) -> None:
    """Remove a user from the organization: memberships and tokens go with them."""
    if user.role == "admin":
        _keep_an_admin(session, organization_id=user.organization_id, leaving=user)
    session.execute(delete(WorkspaceMember).where(WorkspaceMember.user_id == user.id))
    session.execute(delete(ApiToken).where(ApiToken.user_id == user.id))
    session.delete(user)
    session.flush()


def _keep_an_admin(session: Session, *, organization_id: int, leaving: User) -> None:
    admins = session.scalar(
        select(func.count())
        .select_from(User)
        .where(User.organization_id == organization_id, User.role == "admin", User.id != leaving.id)
    )
    if not admins:
        raise Conflict(f"user {leaving.id} is the organization's last admin")


def create_user(
    session: Session, *, organization_id: int, email: str, role: str
) -> tuple[User, str]:
    """A user and their first personal access token (shown once)."""
    if _user_by_email(session, organization_id=organization_id, email=email) is not None:
        raise Conflict(f"a user with email {email} already exists")
    user = User(organization_id=organization_id, email=email, role=role)
    session.add(user)
    session.flush()
    token = issue_token(session, kind="organization", organization_id=organization_id)
    row = session.scalar(select(ApiToken).where(ApiToken.token_hash == hash_token(token)))
    assert row is not None
    row.user_id = user.id
    session.flush()
    return user, token


def set_password(session: Session, *, user: User, password: str) -> None:
    """The user's console password, stored as an scrypt hash only."""
    from reflow.services import passwords

    user.password_hash = passwords.hash_password(passwords.parse_password(password))
    session.flush()


def user_by_password(session: Session, *, email: str, password: str) -> User | None:
    """The user with this email and password, in any organization (emails are unique
    per organization; the first match whose password fits wins). None: no such pair."""
    from reflow.services import passwords

    candidates = session.scalars(
        select(User).where(User.email == email.strip().lower(), User.password_hash.is_not(None))
    )
    for user in candidates:
        if passwords.check_password(password, user.password_hash):
            return user
    passwords.check_password(password, _DUMMY_HASH)  # same cost when the email is unknown
    return None


_DUMMY_HASH = "scrypt$32768$8$1$00$00"


# -- organizations --------------------------------------------------------------------


@dataclass(frozen=True)
class NewOrganization:
    organization_id: int
    owner_id: int
    owner_token: str
    workspace_id: int
    workspace_token: str


def create_organization(
    session: Session, *, name: str, vault: Vault, owner_email: str = INITIAL_OWNER_EMAIL
) -> NewOrganization:
    """Another organization in the same state store, with its owner and a first
    workspace. There is no Census endpoint for this; it is a service call (tests,
    operators' scripts)."""
    org = Organization(name=name)
    session.add(org)
    session.flush()
    owner, token = create_user(
        session, organization_id=org.id, email=parse_email(owner_email), role="admin"
    )
    workspace, key = workspace_admin.create_workspace(
        session,
        organization_id=org.id,
        creator=owner,
        name="Default workspace",
        notification_emails=[],
        vault=vault,
    )
    return NewOrganization(org.id, owner.id, token, workspace.id, key)


def workspace_in_org(session: Session, *, organization_id: int, workspace_id: int) -> Workspace:
    workspace = session.get(Workspace, workspace_id)
    if workspace is None or workspace.organization_id != organization_id:
        raise NotFound(f"workspace {workspace_id} not found")
    return workspace

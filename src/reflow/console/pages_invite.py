"""An invitation's acceptance link: the invitee opens it, chooses a password, and is
signed in. An organization admin copies the link from Settings and hands it over (Reflow
sends no email); the link carries an encrypted invitation id and works once."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from sqlalchemy.orm import Session

from reflow.api.deps import get_runtime, get_session
from reflow.console import forms
from reflow.console import session as cookies
from reflow.console.deps import ConsoleRoute, form_data, secret_key, secure, set_session_cookie
from reflow.console.templating import render
from reflow.db.tables_org import Invitation
from reflow.errors import BadRequest, Gone, ReflowError
from reflow.runtime import Runtime
from reflow.services import invitations

router = APIRouter(route_class=ConsoleRoute)
PATH = "/invitations/accept"


def _invitation(session: Session, runtime: Runtime, code: str | None) -> Invitation:
    invitation_id = cookies.read_invite_code(secret_key(runtime), code)
    invitation = session.get(Invitation, invitation_id) if invitation_id is not None else None
    if invitation is None:
        raise Gone("this invitation link is not valid or has expired; ask for a new one")
    if invitation.claimed_at is not None:
        raise Gone("this invitation was already accepted; sign in instead")
    return invitation


def _form(request: Request, runtime: Runtime, invitation: Invitation, code: str,
          errors: dict[str, str] | None = None, status: int = 200) -> Response:
    nonce = request.cookies.get(cookies.SIGNIN_COOKIE) or cookies.new_session("x", 0, 0).csrf
    response = render("invite.html", status=status, request=request, console=None,
                      email=invitation.email, code=code, csrf=nonce, errors=errors or {},
                      token=None)
    response.set_cookie(cookies.SIGNIN_COOKIE, nonce, httponly=True, samesite="lax",
                        secure=secure(request, runtime), path=PATH)
    return response


@router.get(PATH)
def accept_page(request: Request, code: str = Query(""),
                session: Session = Depends(get_session),
                runtime: Runtime = Depends(get_runtime)) -> Response:
    return _form(request, runtime, _invitation(session, runtime, code), code)


@router.post(PATH)
def accept(request: Request, form: dict[str, str] = Depends(form_data),
           session: Session = Depends(get_session),
           runtime: Runtime = Depends(get_runtime)) -> Response:
    code = form.get("code", "")
    invitation = _invitation(session, runtime, code)
    if not cookies.same_token(request.cookies.get(cookies.SIGNIN_COOKIE), form.get("csrf")):
        return _form(request, runtime, invitation, code,
                     {"form": "The form expired; try again."}, 400)
    try:
        if form.get("password", "") != form.get("confirm", ""):
            raise BadRequest("confirm: the two passwords differ")
        user, token = invitations.accept(session, invitation=invitation,
                                         password=form.get("password", ""))
        workspace_id = _first_grant(session, invitation)
    except ReflowError as exc:
        session.rollback()
        errors = forms.field_errors(exc.message, {"password", "confirm"})
        return _form(request, runtime, invitation, code, errors, exc.status_code)
    session.commit()
    response = render("invite.html", request=request, console=None, email=user.email,
                      code="", csrf="", errors={}, token=token)
    if workspace_id is not None:
        set_session_cookie(response, request, runtime,
                           cookies.new_session("user", user.id, workspace_id))
    return response


def _first_grant(session: Session, invitation: Invitation) -> int | None:
    grants = invitations.workspace_grants(session, invitation=invitation)
    return grants[0].workspace_id if grants else None

"""Schemathesis hooks of the API fuzz run (docs/architecture.md, "The API fuzzer").

Some values of a schema-valid request are not the client's to make up, and positive cases get real ones:
- `cursor` is opaque: only a value from a previous page's `Link` header is a cursor (a made-up one is a 422,
  which is what negative cases check), so positive cases leave it out;
- `project_id` and `user_id` in a task's body name a project the caller may write to and a member of it (a
  made-up one is a 422 naming the field), so positive cases use a project the caller owns or edits right now
  (asked of the gateway before each such request: the fuzzer may have deleted the one the run set up, and then
  one is created) and the caller; `user_id` of a new project member is the run's second user (an account that
  does not exist is a 422);
- an `Idempotency-Key` names one intended operation: a key sent again with another body is a 422 (the
  Idempotency-Key draft's answer), so positive cases get a fresh key each.
Negative cases are left as generated.
"""

import os
import uuid

import requests
import schemathesis

GATEWAY = os.environ.get("FUZZ_GATEWAY_URL")
TOKEN = os.environ.get("FUZZ_TOKEN")
MEMBER_ID = os.environ.get("FUZZ_MEMBER_ID")
_user_ids: dict[str, int | None] = {}


def _positive(case) -> bool:
    # A case without generation metadata (built from a link in the stateful phase) is a valid request too.
    meta = case.meta
    return meta is None or meta.generation.mode.is_positive


def _token(case) -> str | None:
    """The caller's token: the one the case carries (Schemathesis logs in by itself when it can), else the run's."""
    for name, value in (case.headers or {}).items():
        if name.lower() == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
            return value[len("Bearer ") :]
    return TOKEN


def _get(path: str, token: str):
    return requests.get(f"{GATEWAY}{path}", headers={"authorization": f"Bearer {token}"}, timeout=20)


def _user_id(token: str) -> int | None:
    if token not in _user_ids:
        me = _get("/users/me", token)
        _user_ids[token] = me.json()["id"] if me.status_code == 200 else None
    return _user_ids[token]


def _writable_project(token: str) -> int | None:
    """A project the caller owns or edits now, created when there is none."""
    listed = _get("/projects?limit=200", token)
    if listed.status_code == 200:
        for project in listed.json():
            if project.get("role") in ("owner", "editor"):
                return project["id"]
    created = requests.post(
        f"{GATEWAY}/projects",
        headers={"authorization": f"Bearer {token}"},
        json={"name": "Fuzz fixture"},
        timeout=20,
    )
    return created.json()["id"] if created.status_code == 201 else None


@schemathesis.hook
def before_call(context, case, kwargs):
    """Right before each request, in every phase (the examples phase applies no `map_*` hook)."""
    del context, kwargs
    if not _positive(case):
        return
    if case.query and "cursor" in case.query:
        case.query = {name: value for name, value in case.query.items() if name != "cursor"}
    if case.headers and "idempotency-key" in case.headers:
        case.headers["idempotency-key"] = str(uuid.uuid4())
    body = case.body if isinstance(case.body, dict) else None
    if body is None:
        return
    changes = {}
    token = _token(case)
    if case.path.startswith("/tasks") and GATEWAY and token:
        if "project_id" in body:
            project = _writable_project(token)
            if project is not None:
                changes["project_id"] = project
        user_id = _user_id(token) if "user_id" in body else None
        if user_id is not None:
            changes["user_id"] = user_id
    if MEMBER_ID and case.path.endswith("/members") and "user_id" in body:
        changes["user_id"] = int(MEMBER_ID)
    # Schemathesis serializes the case after this hook (and re-checks what it now is).
    body.update(changes)

"""The back office's table of staff actions, and the one way a posted action runs.

Every admin action — a bulk action of a changelist (`actions = [...]`), a button on a change page (a custom URL,
or one sub-action of it), an overridden save — is one `AdminAction` row in its app's `ADMIN_ACTIONS` table
(`subscriptions.admin.ADMIN_ACTIONS`, `billing.admin.ADMIN_ACTIONS`, `portal.admin.ADMIN_ACTIONS`): which form
validates its input, which service function it calls (the service locks, checks the transition table and audits;
the admin only reads the form and reports the outcome) and which policy action — or, where the policy table has
none, which model permission — lets staff run it. tests/admin/test_action_table.py holds the tables against the
registered admins; docs/backoffice.md prints them.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from django import forms
from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponseNotAllowed, HttpResponseRedirect

from subscriptions import policy


@dataclass(frozen=True)
class AdminAction:
    model: str  # the label of the model whose admin offers it ("billing.invoice")
    name: str  # bulk action, URL name, "<URL name>:<sub-action>", or "save_model" / "add_view"
    form: type[forms.BaseForm] | None  # what validates the staff's input (None: nothing is typed)
    service: str | None  # dotted path of the service function it calls (None: a page that only reads)
    policy: str | None = None  # the policy action (subscriptions/policy.py) that authorises it …
    permission: str | None = None  # … or, where the policy has no action for it, the model permission it needs
    run: Callable | None = field(default=None, compare=False)  # a button's function (the view dispatches to it)


@dataclass(frozen=True, kw_only=True)
class Button:
    """One button of a change page: the sub-action `name` of an action URL (`…/action/<name>/`). `run(request, obj,
    cleaned_data)` reads the form, calls `service` and returns the success message; nothing else."""

    name: str
    form: type[forms.BaseForm] | None
    run: Callable[..., str]
    service: str
    policy: str | None = None  # the policy action that lets staff press it …
    permission: str | None = None  # … or, where the policy has none, the model permission

    def allowed(self, user) -> bool:
        if self.policy is not None:
            return policy.staff_allows(user, self.policy, in_admin=True)
        return user.has_perm(self.permission)


def button_rows(model: str, url_name: str, buttons) -> tuple[AdminAction, ...]:
    """The table rows of an action URL's buttons (declared once, on the buttons the view dispatches to)."""
    return tuple(
        AdminAction(
            model,
            f"{url_name}:{button.name}",
            button.form,
            button.service,
            button.policy,
            button.permission,
            button.run,
        )
        for button in buttons
    )


def run_button(request, buttons: dict, name: str, *, load: Callable, redirect_to: Callable, refused: tuple):
    """An action URL's view: POST only (405), an unknown button 404, 403 without the button's permission (a crafted
    POST is refused the same way), then `load()` the row and `run_posted` the button on it."""
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    button = buttons.get(name)
    if button is None:
        raise Http404("No such action.")
    if not button.allowed(request.user):
        raise PermissionDenied
    obj = load()
    return run_posted(
        request,
        form_class=button.form,
        run=lambda data: button.run(request, obj, data),
        redirect_to=redirect_to(obj),
        refused=refused,
    )


def form_errors(form: forms.BaseForm) -> str:
    return " ".join(
        f"{'' if field == '__all__' else field + ': '}{' '.join(errors)}" for field, errors in form.errors.items()
    )


def run_posted(
    request,
    *,
    run: Callable[[dict], str],
    redirect_to: str,
    refused: tuple[type[Exception], ...],
    form_class: type[forms.BaseForm] | None = None,
):
    """Validate the posted form (if any), run the service through `run(cleaned_data)` → the success message, and go
    back to `redirect_to`. An invalid form, a `forms.ValidationError` or a refusal of the service (`refused`, whose
    `.message` is for staff) becomes an error message; nothing else is caught."""
    data = {}
    try:
        if form_class is not None:
            form = form_class(request.POST)
            if not form.is_valid():
                raise forms.ValidationError(form_errors(form))
            data = form.cleaned_data
        message = run(data)
    except refused as error:
        messages.error(request, error.message)
    except forms.ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        if message:
            messages.success(request, message)
    return HttpResponseRedirect(redirect_to)


def actions_markdown(rows) -> str:
    """The table as docs/backoffice.md shows it (tests/admin/test_action_table.py compares)."""

    def code(text) -> str:
        return f"`{text}`"

    lines = ["| model | action | form | service | authorised by |", "|---|---|---|---|---|"]
    for row in rows:
        if row.policy:
            authorised = f"policy {code(row.policy)}"
        else:
            authorised = "superusers only" if row.permission == "superuser" else code(row.permission)
        form = code(row.form.__name__) if row.form else "–"
        service = code(row.service) if row.service else "– (reads only)"
        lines.append(f"| {code(row.model)} | {code(row.name)} | {form} | {service} | {authorised} |")
    return "\n".join(lines)

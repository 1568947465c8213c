"""Checks across sections, after each section validated on its own.

A route, fallback, token or rule naming a channel that does not exist; a confirmation channel
that is not an email channel; a receiver that cannot authenticate its sender. Each problem is a
``(key.path, sentence)`` pair, like every other config problem.
"""

from __future__ import annotations

import os
import re

from ..models import KINDS
from .settings import Settings


def cross_check(settings: Settings, problems: list, declared: set[str] | None = None) -> None:
    """Checks across sections. ``declared`` are all channel names in the file, valid or not, so a
    channel with a bad field is reported once — not again by every route that names it."""
    names = set(settings.channels)
    known = names | (declared or set())
    for kind, channels in settings.routes.items():
        if kind not in KINDS:
            problems.append((f"routes.{kind}", f"unknown kind (one of {', '.join(KINDS)})"))
        for i, ch in enumerate(channels):
            if ch not in known:
                problems.append((f"routes.{kind}[{i}]", f"no channel named {ch!r}"))
    for ch in settings.policy.channels:
        if ch not in known:
            problems.append((f"policy.channels.{ch}", "no channel by that name"))
    for i, tok in enumerate(settings.tokens):
        for ch in tok.channels:
            if ch not in known:
                problems.append((f"tokens[{i}].channels", f"no channel named {ch!r}"))
    for ch in names:
        for i, fb in enumerate(settings.policy_for(ch).fallback):
            if fb not in known:
                problems.append((f"policy.channels.{ch}.fallback[{i}]", f"no channel named {fb!r}"))
            elif fb == ch:
                problems.append((f"policy.channels.{ch}.fallback[{i}]", "a channel cannot fall back to itself"))
    for ch in settings.official.channels:
        if ch not in known:
            problems.append((f"official.channels.{ch}", "no channel by that name"))
    conf = settings.subscribers.confirmation_channel
    if conf is not None and conf in names and (settings.channels[conf].kind != "email" or not settings.channels[conf].enabled):
        problems.append(("subscribers.confirmation_channel", f"{conf!r} is not an enabled email channel"))
    elif conf is not None and conf not in known:
        problems.append(("subscribers.confirmation_channel", f"no channel named {conf!r}"))
    for i, kind in enumerate(settings.quiet_during_incidents):
        if kind not in KINDS:
            problems.append((f"quiet_during_incidents[{i}]", f"unknown kind (one of {', '.join(KINDS)})"))
    _check_inbound(settings, problems, known)
    _check_commitments(settings, problems, known)
    _check_token_stores(settings, problems)
    for key in ("broker", "redis"):
        url = getattr(settings, key)
        if url and url.startswith("sentinel://") and settings.sentinel is None:
            problems.append(("sentinel.master_name", f"required when {key} is a sentinel:// URL "
                                                     "(the name the Sentinels monitor, e.g. mymaster)"))
            break


def _check_token_stores(settings: Settings, problems: list) -> None:
    """Two channels renewing tokens into one file would overwrite each other's."""
    owners: dict[str, str] = {}
    for name, cfg in settings.channels.items():
        store = getattr(getattr(cfg, "refresh", None), "store", None)
        path = getattr(store, "file", None)
        if not path:
            continue
        resolved = os.path.normpath(path.replace("{channel}", name))
        if resolved in owners:
            problems.append((f"channels.{name}.refresh.store.file", f"channel {owners[resolved]!r} keeps its tokens "
                             "in the same file; give each channel its own (e.g. var/tokens/{channel}.json)"))
        owners.setdefault(resolved, name)


def _check_inbound(settings: Settings, problems: list, known: set[str]) -> None:
    """Each receiver can authenticate its sender; each rule names receivers and channels that exist."""
    for name, rec in settings.inbound.receivers.items():
        where = f"inbound.receivers.{name}"
        if not re.fullmatch(r"[A-Za-z0-9_-]{1,64}", name):
            problems.append((where, "a receiver name is letters, digits, - and _ (it is part of its URL)"))
        if rec.source == "pagerduty" and not rec.hmac_secret:
            problems.append((f"{where}.hmac_secret", "required: PagerDuty signs every webhook with it"))
        elif not (rec.token or rec.hmac_secret or (rec.username and rec.password)):
            problems.append((where, "needs a credential: token, username and password, or hmac_secret"))
        if rec.hmac_secret and rec.source not in ("grafana", "pagerduty"):
            problems.append((f"{where}.hmac_secret", f"{rec.source} does not sign its webhooks; use token"))
    for ch in settings.readiness.token_expires:
        if ch not in known:
            problems.append((f"readiness.token_expires.{ch}", "no channel by that name"))
    for i, kind in enumerate(settings.review.kinds):
        if kind not in KINDS:
            problems.append((f"review.kinds[{i}]", f"unknown kind (one of {', '.join(KINDS)})"))
    for i, ch in enumerate(settings.review.channels):
        if ch not in known:
            problems.append((f"review.channels[{i}]", f"no channel named {ch!r}"))
    for i, rule in enumerate(settings.inbound.rules):
        where = f"inbound.rules[{i}]"
        if rule.match.receiver and rule.match.receiver not in settings.inbound.receivers:
            problems.append((f"{where}.match.receiver", f"no receiver named {rule.match.receiver!r}"))
        for j, ch in enumerate(rule.channels):
            if ch not in known:
                problems.append((f"{where}.channels[{j}]", f"no channel named {ch!r}"))


def _check_commitments(settings: Settings, problems: list, known: set[str]) -> None:
    """Reminder channels exist; template names are usable in a URL and name configured components."""
    for i, ch in enumerate(settings.commitments.remind):
        if ch not in known:
            problems.append((f"commitments.remind[{i}]", f"no channel named {ch!r}"))
    declared = {str(n).casefold() for c in settings.channels.values() if c.enabled
                for n in (getattr(c, "components", None) or ())}
    for name, tpl in settings.templates.items():
        if not re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", name):
            problems.append((f"templates.{name}", "a template name is letters, digits, '.', '-' and '_'"))
        for j, comp in enumerate(tpl.components):
            if comp.casefold() not in declared:
                problems.append((f"templates.{name}.components[{j}]",
                                 f"{comp!r} is not a configured component (a status channel's components)"))

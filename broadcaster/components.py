"""Which component names an announcement may name: the ones the configuration declares.

Why at submit: a name no status channel knows used to be added to the public status page for
good (and ``api`` next to ``API`` became a duplicate). The configured components are those the
status channels declare — ``statuspage`` ``components:`` lists and the keys of
``atlassian_statuspage``/``cachet`` ``components:`` maps — of every enabled channel.

Matching ignores case and surrounding blanks and maps to the configured spelling (``api`` →
``API``), so authors need not remember capitalisation and the page never shows two spellings.
"""

from __future__ import annotations

from collections.abc import Iterable

from .config import Settings
from .errors import InvalidRequest


def known(settings: Settings) -> tuple[str, ...]:
    """Every configured component name, in configuration order, without repeats."""
    names: dict[str, None] = {}
    for channel in settings.channels.values():
        if not channel.enabled:
            continue
        declared = getattr(channel, "components", None)
        if isinstance(declared, (tuple, list, dict)):
            names.update(dict.fromkeys(str(n) for n in declared))
    return tuple(names)


def resolve(names: Iterable[str], settings: Settings, *, field: str = "components") -> list[str]:
    """``names`` in their configured spelling, deduplicated; an unknown name is refused with the
    list of known ones (``InvalidRequest`` naming ``field``)."""
    configured = known(settings)
    by_key = {n.casefold(): n for n in configured}
    out: dict[str, None] = {}
    unknown = []
    for name in names:
        match = by_key.get(name.strip().casefold())
        if match is None:
            unknown.append(name)
        else:
            out[match] = None
    if unknown:
        listed = ", ".join(repr(u) for u in unknown[:10])
        choice = (f"known components: {', '.join(configured)}" if configured else
                  "no components are configured (list them under a status channel's `components:`)")
        raise InvalidRequest(f"{field}: unknown component(s) {listed}; {choice}", field=field,
                             details={"known": list(configured)})
    return list(out)


def explicit_states(states: dict[str, str], components: list[str], settings: Settings) -> dict[str, str]:
    """An author's ``component_states`` with each name in its configured spelling; a name the
    announcement does not list under ``components`` is refused (a state for a component the
    incident does not affect would be shown nowhere, or worse, silently)."""
    if not states:
        return {}
    resolve(list(states), settings, field="component_states")  # every unknown name at once
    spelled = {resolve([name], settings, field="component_states")[0]: st for name, st in states.items()}
    outside = [n for n in spelled if n not in components]
    if outside:
        raise InvalidRequest(f"component_states: {', '.join(repr(n) for n in outside)} not among this "
                             "announcement's components", field="component_states",
                             details={"components": list(components)})
    return spelled

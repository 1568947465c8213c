"""The status site's HTML templates (autoescaped Jinja): the index, an incident's timeline, the
history by month and the script-free widget for ``<iframe>`` embeds.

Why one small script at most: every page reads completely without JavaScript (times are written
at build time, bars hover with ``title``); the script (a file, ``status.js``, so a strict
Content-Security-Policy allows it) only refreshes "… ago" and adds the
reader's zone. The widget has none at all, so it may be framed anywhere.
"""

from __future__ import annotations

from jinja2 import DictLoader, Environment

STYLE = """
:root{color-scheme:light dark;--fg:#1f1f1f;--bg:#fff;--muted:#555;--line:#ddd;--link:#0b57d0}
@media (prefers-color-scheme:dark){:root{--fg:#eee;--bg:#121212;--muted:#bbb;--line:#444;--link:#8ab4f8}}
body{font:16px/1.5 system-ui,sans-serif;max-width:50rem;margin:2rem auto;padding:0 1rem;color:var(--fg);
background:var(--bg)}
a{color:var(--link)}small,.rel,.muted{color:var(--muted)}
.banner{padding:1rem;border-radius:.4rem;color:#fff;background:#2e7d32;font-weight:600}
.banner.minor{background:#b45309}.banner.major{background:#c2410c}.banner.critical{background:#b91c1c}
.banner.maintenance{background:#1565c0}
ul.components{list-style:none;padding:0}ul.components li{border-bottom:1px solid var(--line);padding:.5rem 0}
.row{display:flex;justify-content:space-between;gap:1rem}
.st-operational{color:#2e7d32}.st-degraded_performance{color:#b45309}.st-partial_outage{color:#c2410c}
.st-major_outage{color:#b91c1c}.st-under_maintenance{color:#1565c0}
@media (prefers-color-scheme:dark){.st-operational{color:#81c784}.st-degraded_performance{color:#ffb74d}
.st-partial_outage{color:#ff8a65}.st-major_outage{color:#ef9a9a}.st-under_maintenance{color:#90caf9}}
.bar{display:flex;gap:1px;height:1.6rem;margin:.3rem 0}.bar span{flex:1;border-radius:1px;background:#2e7d32}
.bar .d-degraded_performance{background:#f59e0b}.bar .d-partial_outage{background:#ea580c}
.bar .d-major_outage{background:#b91c1c}.bar .d-under_maintenance{background:#1565c0}
.update{border-left:3px solid var(--line);padding-left:.8rem;margin:1rem 0}
"""

TEMPLATES = {
    "base.html": """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{{ title }}{% endblock %}</title>
<link rel="alternate" type="application/atom+xml" title="{{ title }}" href="{{ root }}feed.atom">
<style>""" + STYLE + """</style></head><body>
<header><h1><a href="{{ root }}index.html">{{ title }}</a></h1></header>
<main>
{% block content %}{% endblock %}
</main>
<footer><small>{{ _("page.updated", time=updated) }} · <a href="{{ root }}history.html">{{ _("page.history") }}</a> ·
<a href="{{ root }}feed.atom">{{ _("page.feed") }}</a> · <a href="{{ root }}api/v2/summary.json">{{ _("page.json") }}</a> ·
<a href="{{ root }}badge.svg">{{ _("page.badge") }}</a></small></footer>
<script src="{{ root }}status.js" defer></script>
</body></html>
""",
    "index.html": """{% extends "base.html" %}{% block content %}
<p class="banner {{ indicator }}" role="status">{{ description }}</p>
{% if active %}<section aria-labelledby="h-active"><h2 id="h-active">{{ _("page.active") }}</h2>
{% for inc in active %}{% include "card.html" %}{% endfor %}</section>{% endif %}
{% if components %}<section aria-labelledby="h-components"><h2 id="h-components">{{ _("page.components") }}</h2>
{% for group, members in groups %}<h3>{{ group }}</h3><ul class="components">
{% for name in members %}{% include "component.html" %}{% endfor %}</ul>{% endfor %}
{% if loose %}<ul class="components">{% for name in loose %}{% include "component.html" %}{% endfor %}</ul>{% endif %}
</section>{% endif %}
{% if upcoming %}<section aria-labelledby="h-upcoming"><h2 id="h-upcoming">{{ _("page.upcoming") }}</h2>
{% for inc in upcoming %}<article><h3><a href="incidents/{{ inc.id }}.html">{{ inc.name }}</a></h3>
{% if inc.window %}<p>{{ _("page.from", start=inc.window.starts) }}<br>{{ _("page.until", end=inc.window.ends) }}</p>
{% endif %}
{% if inc.components %}<p><small>{{ _("page.affects", components=inc.components | join(", ")) }}</small></p>{% endif %}
</article>{% endfor %}</section>{% endif %}
<section aria-labelledby="h-history"><h2 id="h-history">{{ _("page.past") }}</h2>
{% for inc in history %}{% include "card.html" %}{% else %}<p>{{ _("page.no_incidents") }}</p>{% endfor %}
<p><a href="history.html">{{ _("page.history_link") }}</a></p></section>
<section aria-labelledby="h-subscribe"><h2 id="h-subscribe">{{ _("page.subscribe") }}</h2>
<ul>{% if subscribe_url %}<li><a href="{{ subscribe_url }}">{{ _("subscribe.email") }}</a>
{{ _("subscribe.email_note") }}</li>{% endif %}
{% if subscribe_webhook_url %}<li><a href="{{ subscribe_webhook_url }}">{{ _("subscribe.webhook") }}</a>
{{ _("subscribe.webhook_note") }}</li>{% endif %}
<li><a href="feed.atom">{{ _("subscribe.feed_all") }}</a>{% if feeds %}{{ _("subscribe.feed_one") }}
{% for name, path in feeds.items() %}<a href="{{ path }}">{{ name }}</a>{% if not loop.last %}, {% endif %}{% endfor %}
{% endif %}</li></ul></section>
{% if notices %}<section aria-labelledby="h-notices"><h2 id="h-notices">{{ _("page.notices") }}</h2>
{% for inc in notices %}{% include "card.html" %}{% endfor %}</section>{% endif %}
{% endblock %}""",
    "component.html": """{% set bar = bars[name] %}<li><div class="row"><span>{{ name }}</span>
<span class="st-{{ components[name] }}">{{ labels[components[name]] }}</span></div>
<div class="bar" role="img" aria-label="{{ _('bar.label', name=name, uptime=bar.uptime) }}">
{% for d in bar.days %}<span class="d-{{ d.state }}" title="{{ d.title }}"></span>{% endfor %}</div>
<div class="row"><small>{{ bar.first }}</small><small>{{ _("bar.uptime", uptime=bar.uptime) }}</small>
<small>{{ bar.last }}</small></div>
{% if bar.bad %}<details><summary>{{ _("bar.bad_days", count=bar.bad | length) }}</summary><ul>
{% for t in bar.bad %}<li>{{ t }}</li>{% endfor %}</ul></details>{% endif %}</li>
""",
    "card.html": """<article><h3><a href="{{ root }}incidents/{{ inc.id }}.html">{{ inc.name }}</a></h3>
<p><strong>{{ inc.label }}</strong> — {{ inc.updates[-1].text }}</p>
{% if inc.next_update %}<p class="next">{{ _("page.next_update", time=inc.next_update) }}</p>{% endif %}
{% if inc.components and not inc.notice %}<p><small>{{ _("page.affects", components=inc.affects) }}</small></p>
{% endif %}
<small>{{ inc.updated }}</small></article>
""",
    "incident.html": """{% extends "base.html" %}{% block title %}{{ inc.name }} · {{ title }}{% endblock %}
{% block content %}<h2>{{ inc.name }}</h2>
<p><small>{% if inc.notice %}{{ inc.label }}{% else %}{{ inc.label }} · {{ _("incident.impact", impact=inc.impact_label) }}
{%- endif %}
{%- if inc.components %} · {{ _("page.affects", components=inc.components | join(", ")) }}{% endif %}</small></p>
{% if not inc.notice %}<p><small>{{ _("incident.started", time=inc.started) }} ·
{{ _("incident.lasted" if inc.final else "incident.ongoing", duration=inc.duration) }}</small></p>{% endif %}
{% if inc.window %}<p>{{ _("incident.window", start=inc.window.starts, end=inc.window.ends) }}</p>{% endif %}
{% if inc.next_update %}<p class="next">{{ _("page.next_update", time=inc.next_update) }}</p>{% endif %}
{% if inc.url %}<p><a href="{{ inc.url }}">{{ inc.url }}</a></p>{% endif %}
{% for u in inc.updates | reverse %}<section class="update"><h3>{{ u.label }}</h3>
{{ u.html }}<p><small>{{ u.at }}{% if u.states and not inc.notice %} ·
{% for c, s in u.states.items() %}{{ c }}: {{ s }}{%- if not loop.last %}, {% endif %}{% endfor %}{% endif %}
</small></p></section>{% endfor %}
{% endblock %}""",
    "history.html": """{% extends "base.html" %}{% block title %}{{ _("page.history") }} · {{ title }}{% endblock %}
{% block content %}<h2>{{ _("history.title") }}</h2>
{% for month, items in months.items() %}<section><h3>{{ month }}</h3>
{% for inc in items %}<article><h4><a href="incidents/{{ inc.id }}.html">{{ inc.name }}</a></h4>
<p><small>{{ inc.label }} · {{ inc.started }} · {{ _("history.lasted", duration=inc.duration) }}
{%- if inc.components %} · {{ inc.components | join(", ") }}{% endif %}</small></p></article>{% endfor %}
</section>{% else %}<p>{{ _("page.no_incidents") }}</p>{% endfor %}
{% endblock %}""",
    "widget.html": """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>""" + STYLE + """body{margin:0;max-width:none}</style></head><body>
<p class="banner {{ indicator }}"><a style="color:inherit" href="index.html" target="_top">{{ description }}</a></p>
<ul class="components">{% for name, st in components.items() %}<li class="row"><span>{{ name }}</span>
<span class="st-{{ st }}">{{ labels[st] }}</span></li>{% endfor %}</ul>
</body></html>
""",
}

env = Environment(loader=DictLoader(TEMPLATES), autoescape=True, trim_blocks=True, lstrip_blocks=True)

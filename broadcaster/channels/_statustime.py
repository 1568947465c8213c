"""Times on the status site as people read them: ``30 Nov 2026, 04:30 UTC`` and "12 minutes ago",
in the page's language (the words and month names come from its catalogue, ``_statusi18n``).

Why server-side: the page must say something useful with JavaScript off (and to crawlers and
screen readers), so both forms are written at build time; a few lines of script refresh the
relative form and add the reader's own zone when scripts run.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime

from markupsafe import Markup, escape

from ._statusi18n import DAY, ENGLISH, HOUR, MINUTE, Catalogue

__all__ = ["DAY", "HOUR", "MINUTE", "absolute", "day", "duration", "iso", "relative", "script", "time_html"]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def absolute(ts: float, t: Catalogue = ENGLISH) -> str:
    """``30 Nov 2026, 04:30 UTC`` (no host locale: the same bytes on every build host)."""
    return t.absolute(ts)


def day(ts: float, t: Catalogue = ENGLISH) -> str:
    return t.day(ts)


def relative(ts: float, now: float, t: Catalogue = ENGLISH) -> str:
    """"12 minutes ago" / "in 3 hours" / "just now", rounded down like people speak."""
    return t.relative(ts, now)


def duration(seconds: float, t: Catalogue = ENGLISH) -> str:
    """``2 h 5 min``, ``45 min``, ``3 d 4 h``; under a minute is ``under a minute``."""
    return t.duration(seconds)


def time_html(ts: float, now: float, *, zone: bool = False, t: Catalogue = ENGLISH) -> Markup:
    """A ``<time>`` element with both readings; ``data-zone`` asks the script to add the
    reader's own zone (maintenance windows)."""
    extra = ' data-zone="1"' if zone else ""
    return Markup(
        f'<time datetime="{escape(iso(ts))}"{extra}>{escape(t.absolute(ts))}</time>'
        f' <span class="rel" data-ts="{int(ts)}">({escape(t.relative(ts, now))})</span>'
    )


_SCRIPT = """(function(){
var W=__WORDS__;
function f(s,v){return s.replace(/\\{(\\w+)\\}/g,function(m,k){return k in v?v[k]:m})}
function n(forms,x){return f(x===1?forms.one:forms.other,{n:x})}
function rel(t){var d=Date.now()/1000-t,a=d<0,s=Math.abs(d),w;
if(s<60)return W.just_now;if(s<3600){w=n(W.minutes,Math.floor(s/60))}else if(s<86400){w=n(W.hours,Math.floor(s/3600))}
else{w=n(W.days,Math.floor(s/86400))}return f(a?W['in']:W.ago,{span:w})}
function tick(){document.querySelectorAll('span.rel[data-ts]').forEach(function(e){
e.textContent='('+rel(+e.getAttribute('data-ts'))+')'})}
var lang=document.documentElement.lang||undefined;
document.querySelectorAll('time[data-zone]').forEach(function(e){var d=new Date(e.getAttribute('datetime'));
if(isNaN(d))return;var l=document.createElement('span');l.className='local';
l.textContent=' · '+W.your_time+' '+d.toLocaleString(lang,{year:'numeric',month:'short',day:'numeric',hour:'2-digit',
minute:'2-digit',timeZoneName:'short'});
e.after(l)});tick();setInterval(tick,30000)})();"""


def script(t: Catalogue = ENGLISH) -> str:
    """The page's only script, in its language: refreshes "… ago" and shows times in the
    reader's zone. The page reads the same without it."""
    words = json.dumps(t.script_words(), ensure_ascii=False)
    return _SCRIPT.replace("__WORDS__", words.replace("<", "\\u003c"))


#: the English script (kept for callers that build an English site)
SCRIPT = script()

"""Times on the status site as people read them: ``30 Nov 2026, 04:30 UTC`` and "12 minutes ago".

Why server-side: the page must say something useful with JavaScript off (and to crawlers and
screen readers), so both forms are written at build time; a few lines of script refresh the
relative form and add the reader's own zone when scripts run.
"""

from __future__ import annotations

from datetime import UTC, datetime

from markupsafe import Markup, escape

MINUTE, HOUR, DAY = 60, 3600, 86400


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def absolute(ts: float) -> str:
    """``30 Nov 2026, 04:30 UTC`` (no locale: the same bytes on every build host)."""
    d = datetime.fromtimestamp(ts, UTC)
    return f"{d.day} {d:%b %Y, %H:%M} UTC"


def day(ts: float) -> str:
    d = datetime.fromtimestamp(ts, UTC)
    return f"{d.day} {d:%b %Y}"


def _count(n: int, unit: str) -> str:
    return f"{n} {unit}" + ("" if n == 1 else "s")


def relative(ts: float, now: float) -> str:
    """"12 minutes ago" / "in 3 hours" / "just now", rounded down like people speak."""
    delta = now - ts
    ahead = delta < 0
    delta = abs(delta)
    if delta < MINUTE:
        return "just now"
    if delta < HOUR:
        text = _count(int(delta // MINUTE), "minute")
    elif delta < DAY:
        text = _count(int(delta // HOUR), "hour")
    else:
        text = _count(int(delta // DAY), "day")
    return f"in {text}" if ahead else f"{text} ago"


def duration(seconds: float) -> str:
    """``2 h 5 min``, ``45 min``, ``3 d 4 h``; under a minute is ``under a minute``."""
    s = int(seconds)
    if s < MINUTE:
        return "under a minute"
    d, rest = divmod(s, DAY)
    h, rest = divmod(rest, HOUR)
    m = rest // MINUTE
    if d:
        return f"{d} d {h} h" if h else f"{d} d"
    if h:
        return f"{h} h {m} min" if m else f"{h} h"
    return f"{m} min"


def time_html(ts: float, now: float, *, zone: bool = False) -> Markup:
    """A ``<time>`` element with both readings; ``data-zone`` asks the script to add the
    reader's own zone (maintenance windows)."""
    extra = ' data-zone="1"' if zone else ""
    return Markup(
        f'<time datetime="{escape(iso(ts))}"{extra}>{escape(absolute(ts))}</time>'
        f' <span class="rel" data-ts="{int(ts)}">({escape(relative(ts, now))})</span>'
    )


#: the page's only script: refreshes "… ago" and shows times in the reader's zone. The page
#: reads the same without it.
SCRIPT = """(function(){
function rel(t){var d=Date.now()/1000-t,a=d<0,s=Math.abs(d),u,n;
if(s<60)return'just now';if(s<3600){n=Math.floor(s/60);u='minute'}else if(s<86400){n=Math.floor(s/3600);u='hour'}
else{n=Math.floor(s/86400);u='day'}var w=n+' '+u+(n===1?'':'s');return a?'in '+w:w+' ago'}
function tick(){document.querySelectorAll('span.rel[data-ts]').forEach(function(e){
e.textContent='('+rel(+e.getAttribute('data-ts'))+')'})}
document.querySelectorAll('time[data-zone]').forEach(function(e){var d=new Date(e.getAttribute('datetime'));
if(isNaN(d))return;var l=document.createElement('span');l.className='local';
l.textContent=' · your time: '+d.toLocaleString(undefined,{year:'numeric',month:'short',day:'numeric',hour:'2-digit',
minute:'2-digit',timeZoneName:'short'});
e.after(l)});tick();setInterval(tick,30000)})();"""

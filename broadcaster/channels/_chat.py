"""Chat-platform escaping for author text (pure): what Slack, Discord and Teams would otherwise
read as commands.

Why: an announcement's text is written for readers, not for the chat server. On Slack, ``<!channel>``
pings everyone, ``<@U123>`` pings a person and ``<https://evil.example|https://bank.example>`` shows
one address while linking another; Slack's message formatting rules say to escape ``&``, ``<`` and
``>`` in text that is not meant as markup. Discord and Teams render Markdown themselves, so a
masked link ``[label](<url>)`` that our own Markdown subset did not turn into ``label (url)`` would
still hide its target there.

A channel whose operator set ``mentions: true`` lets the author's explicit mention sequences
through (Slack's ``<!channel>``, ``<!here>``, ``<!everyone>``, ``<@U…>``, ``<!subteam^…>``,
``<#C…>``; Discord's ``@everyone``/``@here``/``<@id>`` pings); everything else is still escaped.
"""

from __future__ import annotations

import re

#: the mention sequences Slack documents; only these survive with ``mentions: true``
_SLACK_MENTION = re.compile(r"<(?:!(?:channel|here|everyone)|!subteam\^[A-Z0-9]+|@[UW][A-Z0-9]+|#C[A-Z0-9]+)"
                            r"(?:\|[^<>&]*)?>")
#: ``](`` opens a masked link in Discord's and Teams' Markdown
_MASKED_LINK = re.compile(r"\]\s*\(")


def slack_escape(text: str) -> str:
    """``&``, ``<`` and ``>`` as Slack's entities, so no author text is read as a control sequence."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_text(text: str, *, mentions: bool) -> str:
    """Author text for a Slack message: escaped, except explicit mentions where the channel allows them."""
    if not mentions:
        return slack_escape(text)
    pieces, pos = [], 0
    for m in _SLACK_MENTION.finditer(text):
        pieces.append(slack_escape(text[pos : m.start()]))
        pieces.append(m.group(0))
        pos = m.end()
    pieces.append(slack_escape(text[pos:]))
    return "".join(pieces)


def markdown_chat_text(text: str) -> str:
    """Author text for Discord or Teams: a leftover ``[label](target)`` shape becomes ``[label] (target)``,
    which no Markdown renders as a link, so every link shows its real address."""
    return _MASKED_LINK.sub("] (", text)


def discord_allowed_mentions(mentions: bool) -> dict[str, list[str]]:
    """Discord pings nobody unless the channel allows mentions (then what the text names)."""
    return {"parse": ["everyone", "users", "roles"] if mentions else []}

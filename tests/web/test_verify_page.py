"""The status site's verify page in headless Chromium, served over loopback HTTP from the
directory the statuspage channel wrote: a genuine post is ✓, tampered ones are ✗ with the same
reason the CLI gives, and a retraction or a revocation turns the answer at once.

Outside CI a missing browser or Playwright skips this test; in CI it fails instead.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from broadcaster import signing
from tests.support.published import Published
from tests.support.signed_site import ANN_ID, PAGE, Setup, cli, mastodon_text, verify_text, x_thread
from tests.web.test_browser import browser  # noqa: F401 - the fixture

pytestmark = [pytest.mark.slow]


class Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def serve(directory: Path) -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(Quiet, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"  # a secure context: WebCrypto works
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def system(tmp_path) -> Setup:
    s = Setup(tmp_path)
    assert cli(s, "keys", "create", "--id", "k1").exit_code == 0
    s.publish_both()
    return s


@pytest.fixture
def site(system) -> Iterator[str]:
    yield from serve(system.out)


def verdict(page, text: str | None = None) -> str:
    """Submit ``text`` (or load the page's own ?id=) and return the first line the page says."""
    if text is not None:
        page.fill("#text", text)
        page.fill("#id", "" if signing.id_from_text(text) else ANN_ID)
        page.click("#f button")
    page.wait_for_function("document.querySelector('#out p') !== null", timeout=20_000)
    return page.text_content("#out p") or ""


def test_the_verify_page_in_a_real_browser(browser, system, site):  # noqa: F811
    problems: list[str] = []
    page = browser.new_page()
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(f"{site}/verify.html?id={ANN_ID}")
    first = verdict(page)
    assert first.startswith(f"✓ Announcement {ANN_ID} is signed by us"), first

    genuine = mastodon_text(system)
    assert verdict(page, genuine).startswith("✓ GENUINE: the text is exactly what we signed"), page.text_content("#out")
    assert verdict(page, "\n".join(x_thread(system))).startswith("✓ GENUINE: the thread, put together")
    tampered = {
        "ellipsis": genuine.replace("Your data is safe: nothing was lost and no password was exposed.", "…"),
        "prefix": "[Send BTC to 1Ab] " + genuine,
        "domain": genuine.replace(PAGE, "https://status-example.test/verify.html"),
        "truncated thread": "\n".join(x_thread(system)[:-1]),
        "extra": genuine + "\nSend 0.1 BTC to 1AbCdEf.",
        "status": mastodon_text(system, update=True).replace("[Identified]", "[Resolved]"),
    }
    for name, text in tampered.items():
        said = verdict(page, text)
        result = verify_text(system, text)
        cli_reason = result.stdout.splitlines()[0].removeprefix("NOT GENUINE: ")
        cli_reason = cli_reason.removesuffix(" — treat it as not from us")
        assert result.exit_code == 1, name
        assert said == f"✗ NOT GENUINE: {cli_reason}. Treat the post as NOT from us.", (name, said, cli_reason)

    # a retraction reaches the page at once
    site_channel = system.site()
    site_channel.retract(site_channel.lookup(site_channel.render(system.message()), key="dlv_1"))
    assert verdict(page, genuine).startswith(f"✗ RETRACTED: we withdrew announcement {ANN_ID}")
    assert not problems, problems


def test_a_revoked_key_fails_on_the_page_right_after_revoke(browser, system, site):  # noqa: F811
    system.create_ledger()  # it does not hold ANN_ID: what k1 signed of it is not signed again
    assert cli(system, "keys", "create", "--id", "k2").exit_code == 0
    assert cli(system, "keys", "revoke", "k1").exit_code == 0
    page = browser.new_page()
    page.goto(f"{site}/verify.html")
    said = verdict(page, mastodon_text(system))
    assert said.startswith("✗ NOT GENUINE: signed with key k1, which has been revoked"), said
    assert signing.id_from_text(mastodon_text(system)) == ANN_ID


def test_after_a_revoke_the_page_trusts_only_what_was_signed_again(browser, tmp_path):  # noqa: F811
    p = Published(tmp_path)
    try:
        assert cli(p.s, "keys", "create", "--id", "k2").exit_code == 0
        assert cli(p.s, "keys", "revoke", "k1").exit_code == 0
        for url in serve(p.s.out):
            page = browser.new_page()
            page.goto(f"{url}/verify.html?id={p.kept}")
            assert verdict(page).startswith(f"✓ Announcement {p.kept} is signed by us"), page.text_content("#out")
            assert "signed again on" in (page.text_content("#out") or "")
            assert verdict(page, p.text(p.kept)).startswith("✓ GENUINE: the text is exactly what we signed")
            page.goto(f"{url}/verify.html?id={p.altered}")
            said = verdict(page)
            assert said.startswith("✗ NOT GENUINE: signed with key k1, which has been revoked"), said
    finally:
        p.rt.close()
        p.rt.ledger.close()

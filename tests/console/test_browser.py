"""The console in a real browser: Debian's Chromium, headless, driven by Playwright, against the real
stack (console → gateway → services, real models). Screenshots of each page go to
var/console-screenshots/ (docs/console/ holds the committed ones).

``make test`` runs the officer's journey (log in, compare, a kiosk's REFER appearing live, its
images, the outcome, log out); ``make test-console`` (FACEGATE_CONSOLE_BROWSER=full) adds the
admin's (enrol with photo checks, bulk import, erasure), the two-officer hit confirmation and ops.
Playwright's own browser download cannot work here: the browser is /usr/bin/chromium (apt-get
install chromium; .ci/run installs it).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from facegate.gateway_client import Gateway
from facegate.v1 import watchlist_pb2
from tests.gateway.conftest import OTHER_PERSON, TRAVELLER, gate_frame
from tests.support import FACES, REPO

pytestmark = pytest.mark.slow

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
SHOTS = REPO / "var" / "console-screenshots"
FULL = os.environ.get("FACEGATE_CONSOLE_BROWSER") == "full"
full_only = pytest.mark.skipif(not FULL, reason="make test-console runs the whole browser suite")
LIVE = gate_frame(TRAVELLER / "Amram_Mitzna_0001.jpg")
PORTRAIT = (TRAVELLER / "Amram_Mitzna_0002.jpg").read_bytes()
WAIT_MS = 120_000
#: The screenshots docs/ shows (FACEGATE_CONSOLE_SCREENSHOTS_TO_DOCS=1 make test-console refreshes them).
DOCS_SHOTS = (
    "officer-referral",
    "officer-compare",
    "officer-hit-same-officer-refused",
    "admin-enrol-photo-checks",
    "admin-bulk-import",
    "admin-subjects",
    "ops",
)


def jpeg(name: str, data: bytes) -> dict:
    return {"name": name, "mimeType": "image/jpeg", "buffer": data}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run installs it)")
    from playwright.sync_api import sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture
def page_for(browser, console):
    """role or key -> a fresh page logged in through the login form (its own cookies)."""
    contexts = []

    def open_page(key: str):
        context = browser.new_context(viewport={"width": 1360, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(WAIT_MS)
        page.goto(console.url + "/")
        assert page.url.endswith("/login")
        page.fill("#key", key)
        page.click("#login-button")
        page.wait_for_selector("#who:has-text('·')")
        return page

    yield open_page
    for context in contexts:
        context.close()


def until(page, selector: str, predicate: str, timeout_s: float = WAIT_MS / 1000) -> None:
    """Poll ``predicate`` on the element from here: the pages' CSP (rightly) forbids the string
    evaluation Playwright's wait_for_function would need inside the page."""
    deadline = time.monotonic() + timeout_s
    while not page.eval_on_selector(selector, predicate):
        assert time.monotonic() < deadline, f"{selector}: {predicate} still false"
        time.sleep(0.2)


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def kiosk_refer(console, **kwargs) -> str:
    with Gateway(console.stack.target, key=console.stack.keys["kiosk"], timeout=120) as kiosk:
        decision = kiosk.verify_traveller(LIVE, gate_id=kwargs.pop("gate_id", "gate-4"), **kwargs)
    assert decision.outcome == "REFER"
    return decision.decision_id


def test_officer_compares_sees_a_referral_arrive_live_and_closes_it(console, page_for) -> None:
    page = page_for(console.stack.keys["officer"])
    page.wait_for_selector("#queue-state:has-text('live')")
    shot(page, "login-then-officer-queue")

    page.click("#tab-compare")
    page.set_input_files("#compare-first", jpeg("live.jpg", LIVE))
    page.set_input_files("#compare-second", jpeg("portrait.jpg", PORTRAIT))
    page.click("#compare-run")
    page.wait_for_selector("#compare-verdict:has-text('same person')")
    assert float(page.inner_text("#compare-score")) >= float(page.inner_text("#compare-threshold")) > 0
    shot(page, "officer-compare")

    page.click("#tab-queue")
    decision_id = kiosk_refer(console, portrait=OTHER_PERSON.read_bytes(), gate_id="gate-4")
    row = page.wait_for_selector(f"#queue tr[data-decision='{decision_id}']")  # pushed, no reload
    assert "gate-4" in row.inner_text() and "NO_MATCH" in row.inner_text()
    row.click()
    page.wait_for_selector("#referral-meta:has-text('gate-4')")
    until(page, "#live-image", "img => img.naturalWidth > 0")  # the held images arrived and decode
    until(page, "#portrait-image", "img => img.naturalWidth > 0")
    assert page.get_attribute("#live-image", "src").startswith("blob:")  # no image data in any URL
    similarity = page.wait_for_selector("#referral-scores tr:has-text('document_similarity')").inner_text()
    assert "image, " in similarity and "px between the eyes" in similarity and "FAR there" in similarity
    shot(page, "officer-referral")
    page.click("#outcome-actions button[data-outcome='escalated']")
    page.wait_for_selector("#referral-outcome:has-text('ESCALATED')")
    assert page.get_attribute("#live-image", "src") is None  # the images were dropped
    page.wait_for_selector(f"#queue tr[data-decision='{decision_id}']", state="detached")

    page.click("#logout")
    page.wait_for_url("**/login")
    page.goto(console.url + "/officer")
    assert page.url.endswith("/login")  # the session is gone


@full_only
def test_a_watchlist_hit_needs_two_different_officers_in_the_browser(console, page_for) -> None:
    from gateway.keys import add_key

    second_key, _ = add_key(console.stack.servicer.settings.key_file, "officer", "browser: second officer")
    name = "wanted_" + uuid.uuid4().hex[:8]
    with Gateway(console.stack.target, key=console.stack.keys["admin"], timeout=120) as admin:
        admin.create_watchlist(name, "wanted")
        info = watchlist_pb2.SubjectInfo(display_name="Example Wanted", category="wanted", reason="test")
        admin.enroll(name, [LIVE], info=info)
    time.sleep(1.5)  # the gateway re-reads its key file within a second
    try:
        decision_id = kiosk_refer(console, portrait=PORTRAIT, watchlists=[name], gate_id="gate-7")
        first, second = page_for(console.stack.keys["officer"]), page_for(second_key)
        for page in (first, second):
            page.wait_for_selector(
                f"#queue tr[data-decision='{decision_id}']:has-text('WATCHLIST HIT')"
            ).click()
            page.wait_for_selector("#hit-status:has-text('unconfirmed')")
            page.wait_for_selector("#referral-candidates:has-text('Example Wanted')")  # who the hit is
        first.click("#confirm-hit")
        first.wait_for_selector("#hit-status:has-text('awaiting a second officer')")
        first.click("#confirm-hit")
        first.wait_for_selector("#referral-message:has-text('second, different officer')")
        shot(first, "officer-hit-same-officer-refused")
        second.click("#confirm-hit")
        second.wait_for_selector("#hit-status:has-text('confirmed by two officers')")
        assert second.is_disabled("#confirm-hit")
        shot(second, "officer-hit-confirmed")
        second.click("#outcome-actions button[data-outcome='refused']")
        second.wait_for_selector("#referral-outcome:has-text('REFUSED')")
    finally:
        with Gateway(console.stack.target, key=console.stack.keys["admin"], timeout=120) as admin:
            admin.delete_watchlist(name)


@full_only
def test_admin_enrols_imports_filters_and_erases(console, page_for, tmp_path) -> None:
    name = "console_" + uuid.uuid4().hex[:8]
    page = page_for(console.stack.keys["admin"])
    page.click("#tab-lists")
    page.fill("#new-list-name", name)
    page.click("#new-list-run")
    page.wait_for_selector(f"#admin-message:has-text('Created {name}')")
    shot(page, "admin-watchlists")

    page.click("#tab-enrol")
    page.fill("#enrol-name", "Amram Mitzna")
    page.set_input_files("#enrol-photos", [jpeg("gate.jpg", LIVE), jpeg("small.jpg", PORTRAIT)])
    page.wait_for_selector("#enrol-checks li.bad")  # the 150 px photo fails the enrolment quality
    assert page.is_disabled("#enrol-run") and "good" in page.inner_text("#enrol-checks li.ok")
    shot(page, "admin-enrol-photo-checks")
    page.set_input_files("#enrol-photos", [jpeg("gate.jpg", LIVE)])
    page.wait_for_selector("#enrol-checks li.ok")
    page.click("#enrol-run")
    page.wait_for_selector("#enrol-message:has-text('Enrolled Amram Mitzna')")

    # Two travellers' gate frames (enrolled unless the quality policy refuses one) and a dog, which
    # is always refused (no face): the import goes on past a refusal and lists it.
    people = ["Anne_McLellan", "Ai_Sugiyama"]
    files = [jpeg(f"{p}_0001.jpg", gate_frame(next((FACES / "images" / p).iterdir()))) for p in people]
    files.append(jpeg("Dog_0001.jpg", (FACES / "no_face" / "dlib_dog.jpg").read_bytes()))
    page.click("#tab-import")
    page.set_input_files("#import-files", files)
    page.click("#import-run")
    status = page.wait_for_selector("#import-status:has-text('Import finished')").inner_text()
    enrolled = int(re.search(r"(\d+) enrolled, (\d+) refused, of 3", status).group(1))
    assert "Dog" in page.inner_text("#import-failures") and "face" in page.inner_text("#import-failures")
    assert 1 <= enrolled <= 2
    assert page.eval_on_selector("#import-progress", "p => p.value === p.max && p.max === 3")
    shot(page, "admin-bulk-import")

    total = 1 + enrolled
    page.click("#tab-subjects")
    page.wait_for_selector(f"#subject-count:has-text('{total} of {total}')")
    page.fill("#filter", "amram")
    page.wait_for_selector(f"#subject-count:has-text('1 of {total}')")
    shot(page, "admin-subjects")
    page.click("#subjects button.danger")
    page.wait_for_selector("#confirm-remove[open]")
    page.click("#remove-yes")
    page.wait_for_selector("#admin-message:has-text('Removed Amram Mitzna')")
    page.fill("#filter", "")
    page.wait_for_selector(f"#subject-count:has-text('{total - 1} of {total - 1}')")
    with Gateway(console.stack.target, key=console.stack.keys["admin"], timeout=120) as admin:
        admin.delete_watchlist(name)


@full_only
def test_ops_sees_health_model_lists_and_decision_counts(console, page_for) -> None:
    name = "ops_" + uuid.uuid4().hex[:8]
    with Gateway(console.stack.target, key=console.stack.keys["admin"], timeout=120) as admin:
        admin.create_watchlist(name, "alert")
        admin.enroll(name, [LIVE])
    try:
        kiosk_refer(console, portrait=OTHER_PERSON.read_bytes())  # at least one decision to count
        page = page_for(console.stack.keys["ops"])
        page.wait_for_selector("#services tr:has-text('embedding') .badge:has-text('SERVING')")
        assert page.inner_text("#model-version")
        row = page.wait_for_selector(f"#watchlists tr:has-text('{name}')").inner_text()
        assert row.split("\t")[1:] == ["alert", "1", "1"]  # kind, subjects, templates
        page.wait_for_selector("#decisions tr:has-text('VerifyTraveller'):has-text('REFER')")
        # the second sample (5 s later) turns the counts into a rate per minute
        until(
            page,
            "#decisions",
            "t => [...t.querySelectorAll('td:nth-child(4)')].every(d => d.textContent !== '–')",
        )
        assert page.get_attribute("#services tr:has-text('gateway') a", "href").endswith("/metrics")
        shot(page, "ops")
    finally:
        with Gateway(console.stack.target, key=console.stack.keys["admin"], timeout=120) as admin:
            admin.delete_watchlist(name)
    other = page_for(console.stack.keys["ops"])
    other.goto(console.url + "/officer")
    assert "this needs the officer role" in other.inner_text("main")


def test_screenshots_are_kept_as_artefacts() -> None:
    """Runs last: the pages above left their screenshots under var/ (docs/console/ has copies)."""
    assert (SHOTS / "officer-referral.png").stat().st_size > 10_000
    docs = REPO / "docs" / "console"
    if os.environ.get("FACEGATE_CONSOLE_SCREENSHOTS_TO_DOCS") == "1":
        docs.mkdir(exist_ok=True)
        for name in DOCS_SHOTS:
            shutil.copy(SHOTS / f"{name}.png", docs / f"{name}.png")

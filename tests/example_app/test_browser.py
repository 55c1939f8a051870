"""The page at ``/`` in a real headless Chromium (Debian's, driven by Playwright).

One browser for the module; the demo app is served by uvicorn on a real port, so the
browser talks HTTP to it and PUTs files straight to the storage's upload URL (the
app's own signed ``/files`` URLs on the demo, moto's S3 and Azurite on the AWS and
Azure stand-in configs). Each scenario saves a screenshot (``page.png``) under its
pytest temp dir. The page's server side alone is tested in ``test_page.py``.

Chromium comes from ``$CLOUDRIFT_CHROMIUM`` (``make install`` writes it via
``scripts/ensure-chromium.sh``) or ``chromium`` on PATH; without one these tests fail,
they never skip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3
import pytest
import uvicorn
from fastapi import FastAPI
from playwright.sync_api import (
    Browser,
    FilePayload,
    Locator,
    Page,
    Request,
    expect,
    sync_playwright,
)

from cloudrift.config import CloudriftSettings
from example_app import create_app
from example_app.config import DEMO_SETTINGS, SETTINGS_DIR, IntakeConfig
from tests.example_app.conftest import aws_events_env
from tests.example_app.test_azure import azure_standins  # noqa: F401 (a fixture)
from tests.servers.azurite import AzuriteContainer
from tests.servers.moto import MotoEndpoint
from tests.servers.redis import RedisServer

#: The demo's size limit here: small, so the over-limit file is small too.
LIMIT = 200_000
#: Upper bound on waiting for the page to show something; a bound, not a timing assertion.
WAIT_MS = 20_000


def _chromium() -> str:
    path = os.environ.get("CLOUDRIFT_CHROMIUM") or shutil.which("chromium")
    if not path or not os.access(path, os.X_OK):
        pytest.fail(
            "no Chromium for the browser tests: run scripts/ensure-chromium.sh (as root it "
            "installs Debian's chromium) or set CLOUDRIFT_CHROMIUM=/path/to/chromium",
            pytrace=False,
        )
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium, started once for every scenario in this module."""
    path = _chromium()
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=path)
        try:
            yield chromium
        finally:
            chromium.close()


class LiveServer:
    """``app`` served by uvicorn on a free 127.0.0.1 port, in a thread of its own."""

    def __init__(self, app: FastAPI) -> None:
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, daemon=True
        )

    def __enter__(self) -> LiveServer:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                pytest.fail("the example app did not start under uvicorn", pytrace=False)
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(20)
        self._socket.close()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """The demo app (local files, memory queue, file outbox) with a LIMIT-byte cap."""
    data = tmp_path_factory.mktemp("browser-demo")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("DEMO_DATA_DIR", str(data))
        settings = CloudriftSettings.from_yaml(DEMO_SETTINGS)
        with LiveServer(create_app(settings, IntakeConfig(max_upload_bytes=LIMIT))) as server:
            yield server


@pytest.fixture
def page(browser: Browser, tmp_path: Path) -> Iterator[Page]:
    """A fresh browser context and page; a screenshot of it is saved when the test ends."""
    context = browser.new_context(accept_downloads=True)
    opened = context.new_page()
    try:
        yield opened
    finally:
        opened.screenshot(path=tmp_path / "page.png", full_page=True)
        context.close()


def _file(name: str, content: bytes, mime: str = "text/plain") -> FilePayload:
    return {"name": name, "mimeType": mime, "buffer": content}


def _text(label: str, lines: int) -> bytes:
    return "".join(f"{label} line {i}: {'x' * 40}\n" for i in range(lines)).encode()


def _upload(page: Page, *files: FilePayload) -> None:
    page.get_by_label("Choose a file").set_input_files(list(files))
    page.get_by_role("button", name="Upload").click()


def _drop(page: Page, name: str, text: str) -> None:
    """Drop a text file named ``name`` onto the page's drop zone, as a drag would."""
    page.evaluate(
        """([name, text]) => {
          const data = new DataTransfer();
          data.items.add(new File([text], name, { type: "text/plain" }));
          document.getElementById("dropzone").dispatchEvent(
            new DragEvent("drop", { dataTransfer: data, bubbles: true, cancelable: true }));
        }""",
        [name, text],
    )


def _finished_upload(page: Page, name: str) -> str:
    """Wait until the page's upload of ``name`` is complete; its document id."""
    item = page.locator("li.upload", has=page.locator("span.name", has_text=name))
    expect(item.locator(".state")).to_have_text("uploaded: queued", timeout=WAIT_MS)
    expect(item.locator("progress")).to_have_js_property("value", 100)
    expect(item.locator(".percent")).to_have_text("100%")
    doc_id = item.get_attribute("data-id")
    assert doc_id is not None
    return doc_id


def _processed_row(page: Page, doc_id: str, content: bytes) -> Locator:
    """Wait until the document's row is processed with ``content``'s size and SHA-256."""
    row = page.locator(f"#doc-{doc_id}")
    expect(row.locator(".badge")).to_have_text("processed", timeout=WAIT_MS)
    expect(row.locator(".sha256")).to_have_text(hashlib.sha256(content).hexdigest())
    expect(row.locator(".size")).to_have_text(str(len(content)))
    return row


def _puts(page: Page) -> list[str]:
    seen: list[str] = []

    def record(request: Request) -> None:
        if request.method == "PUT":
            seen.append(request.url)

    page.on("request", record)
    return seen


#: Records every value each upload's progress bar shows (``value`` reflects an attribute).
_RECORD_PROGRESS = """
window.progressSeen = {};
new MutationObserver((changes) => {
  for (const change of changes) {
    const bar = change.target;
    if (!(bar instanceof HTMLProgressElement)) continue;
    const name = bar.closest("li").querySelector(".name").textContent;
    (window.progressSeen[name] ||= []).push(bar.value);
  }
}).observe(document, { subtree: true, attributes: true, attributeFilter: ["value"] });
"""


def test_two_files_from_the_picker_go_straight_to_storage_and_are_processed(
    page: Page, site: LiveServer
) -> None:
    """Both progress bars move through intermediate values (uploads are throttled to
    200 kB/s) to 100%, each file is PUT to its signed /files URL (not through
    POST /documents), both rows become processed with the right SHA-256, the
    notifications panel lists both emails with their summary attachments and the audit
    panel both document.processed events. Nothing is fetched from anywhere but the app."""
    first, second = _text("first", 1500), _text("second", 900)
    puts = _puts(page)
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.add_init_script(_RECORD_PROGRESS)
    cdp = page.context.new_cdp_session(page)
    cdp.send(
        "Network.emulateNetworkConditions",
        {"offline": False, "latency": 0, "downloadThroughput": -1, "uploadThroughput": 200_000},
    )
    page.goto(site.url)
    _upload(page, _file("first.txt", first), _file("second.txt", second))
    ids = {name: _finished_upload(page, name) for name in ("first.txt", "second.txt")}
    seen = page.evaluate("window.progressSeen")
    for name in ("first.txt", "second.txt"):
        assert any(0 < value < 100 for value in seen[name]), (name, seen[name])
        assert seen[name] == sorted(seen[name]) and seen[name][-1] == 100, (name, seen[name])
    for name, content in (("first.txt", first), ("second.txt", second)):
        row = _processed_row(page, ids[name], content)
        expect(row.locator(".lines")).to_have_text(str(content.count(b"\n")))
    assert sorted(url.split("?")[0].rsplit("/", 1)[-1] for url in puts) == sorted(ids.values())
    assert all(url.startswith(f"{site.url}/files/") for url in puts)
    for doc_id in ids.values():
        note = page.locator("#notifications li", has=page.get_by_text(f"summary-{doc_id}.json"))
        expect(note).to_have_count(1, timeout=WAIT_MS)
    expect(page.locator("#notifications .subject", has_text="first.txt")).to_have_count(1)
    for name in ("first.txt", "second.txt"):
        event = page.locator("#audit .audit-event", has=page.get_by_text(name, exact=True))
        expect(event.locator(".type")).to_have_text("document.processed", timeout=WAIT_MS)
    # No CDN, no outside font or script: the page works offline.
    assert [url for url in requested if not url.startswith(f"{site.url}/")] == []


def test_the_download_link_returns_the_uploaded_bytes(page: Page, site: LiveServer) -> None:
    """Clicking a processed row's Download link saves exactly the bytes uploaded."""
    content = bytes(range(256)) * 40
    page.goto(site.url)
    _upload(page, _file("blob.bin", content, "application/octet-stream"))
    doc_id = _finished_upload(page, "blob.bin")
    row = _processed_row(page, doc_id, content)
    with page.expect_download() as started:
        row.get_by_role("link", name="Download").click()
    download = started.value
    assert download.suggested_filename == "blob.bin"
    assert Path(download.path()).read_bytes() == content


def test_the_form_works_without_javascript(
    browser: Browser, site: LiveServer, tmp_path: Path
) -> None:
    """With JavaScript off, the form posts the file to POST /documents, which redirects
    back to the page saying it was accepted; the document is processed (seen on reload).
    A file over the limit is redirected back with the 413 reason instead."""
    content = _text("plain form", 20)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto(site.url)
        page.set_input_files("#file", _file("no-js.txt", content))
        with page.expect_navigation():
            page.get_by_role("button", name="Upload").click()
        assert page.url == f"{site.url}/"
        expect(page.locator("#flash")).to_contain_text("Uploaded \u201cno-js.txt\u201d")
        row = page.locator("#documents tr", has=page.locator("td.filename", has_text="no-js.txt"))
        expect(row).to_have_count(1)
        page.reload()
        expect(page.locator("#flash")).to_have_count(0)  # the message is shown once
        deadline = time.monotonic() + WAIT_MS / 1000
        while row.get_attribute("data-status") != "processed":
            assert time.monotonic() < deadline, "the form upload was never processed"
            page.wait_for_timeout(100)  # how often to reload, not a verdict
            page.reload()
        expect(row.locator(".sha256")).to_have_text(hashlib.sha256(content).hexdigest())

        # Over the limit: refused while streaming, and the page says why.
        page.set_input_files("#file", _file("no-js-big.txt", b"b" * (LIMIT + 1)))
        with page.expect_navigation():
            page.get_by_role("button", name="Upload").click()
        expect(page.locator("#flash")).to_contain_text(
            f"Not uploaded: the file is larger than the limit of {LIMIT} bytes"
        )
        expect(page.locator("#documents td.filename", has_text="no-js-big")).to_have_count(0)
    finally:
        page.screenshot(path=tmp_path / "page.png", full_page=True)
        context.close()


def test_a_file_over_the_limit_shows_the_413_reason(page: Page, site: LiveServer) -> None:
    """A file one byte over the limit is refused before any upload, and the page says
    why, in the server's words; no document row appears for it."""
    page.goto(site.url)
    _upload(page, _file("too-big.txt", b"z" * (LIMIT + 1)))
    item = page.locator("li.upload", has=page.locator("span.name", has_text="too-big.txt"))
    expect(item.locator(".state")).to_have_text(
        f"not uploaded: 413: the file is larger than the limit of {LIMIT} bytes",
        timeout=WAIT_MS,
    )
    assert item.get_attribute("data-state") == "error"
    page.reload()
    expect(page.locator("#documents td.filename", has_text="too-big.txt")).to_have_count(0)


def test_a_dropped_file_with_a_unicode_name_is_shown_exactly(page: Page, site: LiveServer) -> None:
    """A file dropped onto the page with accents, CJK, an emoji and punctuation in its
    name keeps it unchanged in the upload list, the row, the download name and the
    notification subject."""
    name = 'Grüße \u2013 報告書 🧾 (v2) "final".txt'
    content = "ünïcödé\n".encode()
    page.goto(site.url)
    _drop(page, name, content.decode())
    doc_id = _finished_upload(page, name)
    row = _processed_row(page, doc_id, content)
    expect(row.locator("td.filename")).to_have_text(name)
    assert row.get_by_role("link", name="Download").get_attribute("download") == name
    expect(
        page.locator("#notifications .subject", has_text=f"Document processed: {name}")
    ).to_have_count(1, timeout=WAIT_MS)


@pytest.fixture
def s3_preflights(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make moto answer an object's CORS preflight from the bucket's CORS rules alone, as
    S3 does. moto (5.x) checks a presigned URL's ``content-type`` parameter against the
    request's headers before it looks at the method, so it refuses the preflight (an
    OPTIONS without Content-Type, sent without credentials by design) with
    SignatureDoesNotMatch; S3 never authenticates a preflight."""
    from moto.s3.responses import S3Response

    key_response = S3Response._key_response

    def answer(self: S3Response, request: Any, full_url: str) -> Any:
        if request.method == "OPTIONS":
            bucket = self.parse_bucket_name_from_url(request, full_url)
            return self._response_options(request.headers, bucket)
        return key_response(self, request, full_url)

    monkeypatch.setattr(S3Response, "_key_response", answer)


@contextmanager
def _aws_site(moto: MotoEndpoint, redis: RedisServer) -> Iterator[tuple[LiveServer, Any]]:
    """local-aws.yaml (moto S3/SQS/SES, redis-server cache) served on a real port."""
    aws: dict[str, Any] = {
        "endpoint_url": moto.endpoint_url,
        "region_name": moto.region,
        "aws_access_key_id": moto.access_key,
        "aws_secret_access_key": moto.secret_key,
    }
    s3 = boto3.client("s3", **aws)
    s3.create_bucket(Bucket="intake")
    sqs = boto3.client("sqs", **aws)
    queue_url = sqs.create_queue(QueueName="intake-jobs")["QueueUrl"]
    events = aws_events_env(boto3.client("sns", **aws), sqs)
    boto3.client("sesv2", **aws).create_email_identity(EmailIdentity="intake@example.test")
    with pytest.MonkeyPatch.context() as env:
        for name, value in {
            "AWS_ENDPOINT_URL": moto.endpoint_url,
            "AWS_REGION": moto.region,
            "AWS_ACCESS_KEY_ID": moto.access_key,
            "AWS_SECRET_ACCESS_KEY": moto.secret_key,
            "INTAKE_QUEUE_URL": queue_url,
            "REDIS_URL": redis.url,
            **events,
        }.items():
            env.setenv(name, value)
        settings = CloudriftSettings.from_yaml(SETTINGS_DIR / "local-aws.yaml")
        with LiveServer(create_app(settings, IntakeConfig())) as server:
            yield server, s3


def _allow_browser_puts(s3: Any, origin: str) -> None:
    """The bucket CORS rule example_app/README.md documents, for ``origin``."""
    s3.put_bucket_cors(
        Bucket="intake",
        CORSConfiguration={
            "CORSRules": [
                {
                    "AllowedOrigins": [origin],
                    "AllowedMethods": ["PUT"],
                    "AllowedHeaders": ["Content-Type"],
                    "MaxAgeSeconds": 3600,
                }
            ]
        },
    )


@pytest.mark.usefixtures("s3_preflights")
def test_on_the_aws_standins_the_browser_puts_straight_to_moto(
    page: Page, moto: MotoEndpoint, redis: RedisServer
) -> None:
    """On local-aws.yaml the same page PUTs the file straight to moto's S3: refused (the
    page says to check CORS) while the bucket's CORS rule names another origin, accepted
    once it names the app's; the row becomes processed with the right SHA-256 and S3
    holds the bytes. With SES there is no notifications panel or endpoint."""
    content = _text("to s3", 800)
    puts = _puts(page)
    with _aws_site(moto, redis) as (site, s3):
        page.goto(site.url)
        expect(page.locator(".backends")).to_contain_text("storage: s3")
        # SES mail leaves the machine: no notifications panel, no endpoint reading them.
        expect(page.locator("#notifications")).to_have_count(0)
        assert page.request.get(f"{site.url}/notifications").status == 404
        _allow_browser_puts(s3, "https://some-other-app.example")
        _upload(page, _file("refused.txt", content))
        refused = page.locator("li.upload", has=page.locator("span.name", has_text="refused.txt"))
        expect(refused.locator(".state")).to_contain_text("check its CORS rules", timeout=WAIT_MS)

        _allow_browser_puts(s3, site.url)
        _upload(page, _file("s3.txt", content))
        doc_id = _finished_upload(page, "s3.txt")
        _processed_row(page, doc_id, content)
        stored = s3.get_object(Bucket="intake", Key=f"documents/{doc_id}")["Body"].read()
    assert stored == content
    assert puts[-1].startswith(f"{moto.endpoint_url}/intake/documents/incoming/{doc_id}?")


@pytest.fixture
def azurite_cors(azurite: AzuriteContainer) -> Iterator[Callable[[str], None]]:
    """Sets the Azurite account's Blob CORS rule (the one example_app/README.md
    documents) for an origin; the account's rules are emptied again afterwards."""
    from azure.storage.blob import BlobServiceClient, CorsRule

    service = BlobServiceClient.from_connection_string(azurite.server.connection_string)

    def allow(origin: str) -> None:
        rule = CorsRule(
            [origin],
            ["PUT"],
            allowed_headers=["content-type", "x-ms-blob-type"],
            exposed_headers=["etag"],
            max_age_in_seconds=3600,
        )
        service.set_service_properties(cors=[rule])

    try:
        yield allow
    finally:
        service.set_service_properties(cors=[])
        service.close()


def test_on_the_azure_standins_the_browser_puts_straight_to_azurite(
    page: Page,
    azure_standins: CloudriftSettings,  # noqa: F811 (the fixture imported above)
    azurite_cors: Callable[[str], None],
) -> None:
    """On local-azure.yaml the page PUTs the file (with x-ms-blob-type) straight to
    Azurite: refused while the account's CORS rule names another origin, accepted once
    it names the app's; the row becomes processed with the right SHA-256."""
    content = _text("to azure", 700)
    puts = _puts(page)
    with LiveServer(create_app(azure_standins, IntakeConfig())) as site:
        page.goto(site.url)
        expect(page.locator(".backends")).to_contain_text("storage: azure_blob")
        azurite_cors("https://some-other-app.example")
        _upload(page, _file("refused.txt", content))
        refused = page.locator("li.upload", has=page.locator("span.name", has_text="refused.txt"))
        expect(refused.locator(".state")).to_contain_text("check its CORS rules", timeout=WAIT_MS)

        azurite_cors(site.url)
        _upload(page, _file("azure.txt", content))
        doc_id = _finished_upload(page, "azure.txt")
        _processed_row(page, doc_id, content)
    assert f"/incoming/{doc_id}?" in puts[-1]
    assert not puts[-1].startswith(site.url)

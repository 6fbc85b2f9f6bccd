"""End to end in real headless Chromium against a real ``twistd market --web`` and a real worker:
sign up -> confirm with the link from an in-test SMTP server -> log in -> register a client ->
submit a job -> the worker finishes it -> the result is shown -> change a price -> download the
report and validate it against the posted XSD.

With ``MARKET_WEB_SCREENSHOTS=DIR`` the main pages are saved as PNGs in DIR (docs/screenshots).
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
import time
import urllib.request

import pytest_twisted
from lxml import etree

from tests.servers import Market, Worker, free_port, stop_all, wait_for_port
from tests.support import need
from tests.test_web_support import Mailbox, confirmation_link, smtp_server

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"

JOB = (
    "def main(n):\n"
    "    total = 0\n"
    "    for i in range(n):\n"
    "        total += i * i\n"
    "    return {'n': n, 'sum of squares': total}\n"
)
SLOW_JOB = "def main(n):\n    while n > 0:\n        n = n - 1\n    return n\n"


def _driver(downloads: str, profile: str):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-dev-shm-usage",
        "--window-size=1100,900",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.add_experimental_option(
        "prefs", {"download.default_directory": downloads, "download.prompt_for_download": False}
    )
    return webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)


class Run:
    """The browser script; runs in a thread so the test's reactor keeps serving SMTP."""

    def __init__(self, base: str, mailbox: Mailbox, workdir: str, rpc_url: str, shots: str, processes: list):
        self.base = base
        self.mailbox = mailbox
        self.workdir = workdir
        self.rpc_url = rpc_url
        self.shots = shots
        self.processes = processes
        self.downloads = tempfile.mkdtemp(dir=workdir)
        self.d = None

    def shot(self, name: str) -> None:
        if self.shots:
            self.d.execute_script("window.scrollTo(0, 0)")  # only for the picture; the site has no script
            self.d.save_screenshot(os.path.join(self.shots, f"{name}.png"))

    def fill(self, **fields) -> None:
        for name, value in fields.items():
            element = self.d.find_element("name", name)
            element.clear()
            element.send_keys(value)

    def submit(self, form_action: str) -> None:
        self.d.find_element("css selector", f"form[action='{form_action}'] button[type=submit]").click()

    def until(self, condition, what: str) -> None:
        """Wait for a page to arrive (a click returns before the next page has loaded)."""
        from selenium.webdriver.support.ui import WebDriverWait

        WebDriverWait(self.d, 20, poll_frequency=0.1).until(lambda d: condition(d), message=what)

    def text(self) -> str:
        return self.d.find_element("tag name", "body").text

    def __call__(self):
        profile = tempfile.mkdtemp(dir=self.workdir)
        self.d = _driver(self.downloads, profile)
        try:
            return self.script()
        finally:
            self.d.quit()

    def script(self):
        d = self.d
        d.get(self.base + "/")
        assert "Log in" in d.title
        self.shot("login")
        d.find_element("link text", "Create a new account").click()
        self.fill(name="michael", email="michael@example.org", password="a long password", again="a long password")
        self.shot("signup")
        self.submit("/signup")
        self.until(lambda d: "Check your e-mail" in d.title, "the page after signing up")
        assert "Check your e-mail" in self.text()
        link = confirmation_link(self.mailbox.queue.get(timeout=30))
        assert link.startswith(self.base + "/confirm/"), link
        d.get(link)
        assert "is confirmed" in self.text()
        d.get(self.base + "/login")
        self.fill(name="michael", password="a long password")
        self.submit("/login")
        self.until(lambda d: d.title.startswith("Home"), "the home page after logging in")
        assert "Welcome michael." in self.text()
        self.shot("home")

        # register a client and start the very worker command the page shows
        d.find_element("link text", "Clients").click()
        self.fill(name="office-pc")
        self.submit("/clients")
        self.until(lambda d: d.find_elements("id", "worker-command"), "the new client's token")
        command = d.find_element("id", "worker-command").text
        client_id = int(d.find_element("id", "client-id").text)
        token = d.find_element("id", "client-token").text
        assert command == f"MARKET_CLIENT_TOKEN={token} twistd -n worker --server {self.rpc_url} --client {client_id}"
        self.shot("register-client")
        extra = ["--user", "nobody"] if os.geteuid() == 0 else []
        worker = Worker(self.rpc_url, client_id, token, self.workdir, "--slice", "2", *extra).start()
        self.processes.append(worker)

        # a module outside the resumable subset is refused with its line numbers, kept in the form
        module = os.path.join(self.workdir, "squares.py")
        with open(module, "w") as f:
            f.write(JOB + "\nimport socket\n")
        d.find_element("link text", "Submit a job").click()
        d.find_element("id", "module").send_keys(module)
        self.fill(function="main", args="[20000]", name="Sum of squares", price="0.50")
        self.submit("/submit")
        self.until(lambda d: d.find_elements("id", "module-error"), "the refusal")
        assert "line 7: import of 'socket' is not allowed" in d.find_element("id", "module-error").text
        self.shot("submit-refused")

        # submit a job from an uploaded module
        with open(module, "w") as f:
            f.write(JOB)
        d.find_element("link text", "Submit a job").click()
        d.find_element("id", "module").send_keys(module)
        self.fill(function="main", args="[20000]", name="Sum of squares", price="0.50")
        self.shot("submit")
        self.submit("/submit")
        self.until(lambda d: re.search(r"/jobs/\d+$", d.current_url), "the job's page after submitting")
        job_url = d.current_url

        # the worker finishes it; the page shows the result
        deadline = time.monotonic() + 90
        while "finished" not in d.find_element("id", "job-status").text:
            assert time.monotonic() < deadline, "the job did not finish:\n" + worker.logtext()[-3000:]
            time.sleep(0.5)
            d.get(job_url)
        assert str(sum(i * i for i in range(20000))) in d.find_element("id", "result").text
        self.shot("job-result")
        worker.stop()

        # a second job waits on the ready list (no worker now): change its price with the jobs form
        d.find_element("link text", "Submit a job").click()
        with open(module, "w") as f:
            f.write(SLOW_JOB)
        d.find_element("id", "module").send_keys(module)
        self.fill(function="main", args="[100000000]", name="Count down", price="1.00")
        self.submit("/submit")
        self.until(
            lambda d: re.search(r"/jobs/\d+$", d.current_url) and d.current_url != job_url, "the second job's page"
        )
        slow_id = int(d.current_url.rsplit("/", 1)[1])
        d.find_element("link text", "My jobs").click()
        self.fill(**{f"price-{slow_id}": "2.75"})
        self.shot("jobs")
        self.submit("/jobs/prices")
        self.until(lambda d: "updated=" in d.current_url, "the jobs page after changing prices")
        assert "1 price changed" in self.text()
        assert d.find_element("id", f"price-{slow_id}").get_attribute("value") == "2.75"

        d.find_element("link text", "Balance").click()
        assert "starting grant" in self.text()
        self.shot("ledger")

        # the report, downloaded by the browser, against the XSD the site posts
        d.find_element("link text", "XML report").click()
        self.shot("report")
        d.find_element("link text", "Download the XML report").click()
        path = os.path.join(self.downloads, "market-report.xml")
        deadline = time.monotonic() + 20
        while not os.path.exists(path):
            assert time.monotonic() < deadline, f"no download in {os.listdir(self.downloads)}"
            time.sleep(0.2)
        with open(path, "rb") as f:
            report = f.read()
        with urllib.request.urlopen(self.base + "/schema/report.xsd", timeout=10) as r:
            xsd = r.read()
        return report, xsd, slow_id


@pytest_twisted.ensureDeferred
async def test_sign_up_to_report_in_a_real_browser_with_a_real_worker(tmp_path):
    from twisted.internet import reactor, threads

    need(os.path.exists(CHROMIUM) and os.path.exists(CHROMEDRIVER), "Chromium and chromedriver")
    mailbox = Mailbox()
    smtp = reactor.listenTCP(0, smtp_server(mailbox), interface="127.0.0.1")
    web_port = free_port()
    base = f"http://127.0.0.1:{web_port}"
    workdir = str(tmp_path)
    os.chmod(workdir, 0o755)  # the worker's unprivileged user reads the job's files under here
    processes = []
    shots = os.environ.get("MARKET_WEB_SCREENSHOTS", "")
    if shots:
        os.makedirs(shots, exist_ok=True)
    try:
        server = Market(
            f"sqlite:{tmp_path}/market.sqlite",
            workdir,
            "--web",
            f"tcp:{web_port}:interface=127.0.0.1",
            "--smtp",
            f"127.0.0.1:{smtp.getHost().port}",
            "--public-url",
            base,
            "--window",
            "0.3",
            "--test-job-size",
            "20",
            "--min-slice",
            "1",
        )
        processes.append(server)
        server.start()
        wait_for_port(web_port, server.proc, log=server.log)
        run = Run(base, mailbox, workdir, server.url, shots, processes)
        report, xsd, slow_id = await threads.deferToThread(run)
    finally:
        await threads.deferToThread(stop_all, list(reversed(processes)))
        await smtp.stopListening()
    parser = etree.XMLParser(resolve_entities=False, no_network=True)
    doc = etree.fromstring(report, parser)
    etree.XMLSchema(etree.fromstring(xsd, parser)).assertValid(doc)
    ns = {"r": "urn:market:report:1"}
    assert doc.xpath(f"//r:job[@id='{slow_id}']/r:price/text()", namespaces=ns) == ["2.75"]
    assert doc.xpath("//r:job[@status='finished']/@owner", namespaces=ns) == ["michael"]
    assert "Traceback" not in server.logtext()
    if shots:
        shutil.rmtree(run.downloads, ignore_errors=True)

"""Installing one extra is enough, and pulls in no other cloud's SDK.

Each test builds a fresh venv with the cloudrift wheel and exactly one extra (or none)
and runs probe_extras.py inside it. The AWS probe talks to this session's moto server
and the GCP probe to the Pub/Sub stand-in, so those installs are shown to work for real,
not just to import.
"""

from __future__ import annotations

import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.servers.moto import MotoEndpoint
from tests.servers.pubsub import PubSubEndpoint

ROOT = Path(__file__).resolve().parents[2]
PROBE = Path(__file__).with_name("probe_extras.py")

pytestmark = [pytest.mark.slow, pytest.mark.timeout(600)]


def _run(argv: list[str], what: str) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=540, check=False)
    if done.returncode != 0:
        pytest.fail(
            f"{what} failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}",
            pytrace=False,
        )
    return done.stdout


def _make_venv(base: Path, wheel: Path, extra: str) -> Path:
    venv = base / f"venv-{extra}"
    _run([sys.executable, "-m", "venv", str(venv)], f"creating the {extra} venv")
    spec = str(wheel) if extra == "none" else f"{wheel}[{extra}]"
    _run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-input", spec],
        f"pip install {spec}",
    )
    return venv


@pytest.fixture(scope="module")
def extra_venvs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Future[Path]]:
    """Fresh venvs with the built wheel and exactly one extra each, built concurrently."""
    base = tmp_path_factory.mktemp("extras")
    _run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(base), str(ROOT)],
        "building the cloudrift wheel",
    )
    wheel = next(base.glob("cloudrift-*.whl"))
    extras = ("none", "aws", "azure", "gcp")
    pool = ThreadPoolExecutor(max_workers=len(extras))
    futures = {extra: pool.submit(_make_venv, base, wheel, extra) for extra in extras}
    pool.shutdown(wait=False)
    return futures


def _probe(venv: Path, *args: str) -> None:
    out = _run([str(venv / "bin" / "python"), str(PROBE), *args], f"probe {' '.join(args)}")
    assert out.strip().endswith("PROBE OK"), out


def test_no_extra_imports_every_category_and_names_the_missing_extra(
    extra_venvs: dict[str, Future[Path]],
) -> None:
    """With no extra, every category imports, memory works, and s3 asks for cloudrift[aws]."""
    _probe(extra_venvs["none"].result(), "none")


def test_aws_extra_works_against_moto_without_any_azure_module(
    extra_venvs: dict[str, Future[Path]], moto: MotoEndpoint
) -> None:
    """cloudrift[aws] alone runs S3 and SQS for real and never imports azure."""
    _probe(extra_venvs["aws"].result(), "aws", moto.endpoint_url)


def test_azure_extra_constructs_every_azure_provider_without_aws_sdks(
    extra_venvs: dict[str, Future[Path]],
) -> None:
    """cloudrift[azure] alone builds every Azure provider and never imports boto."""
    _probe(extra_venvs["azure"].result(), "azure")


def test_gcp_extra_runs_pubsub_without_aws_or_azure_sdks(
    extra_venvs: dict[str, Future[Path]], pubsub: PubSubEndpoint
) -> None:
    """cloudrift[gcp] alone runs Pub/Sub against the stand-in and never imports boto or azure."""
    pubsub.create_topic("iso")
    pubsub.create_subscription("iso-sub", "iso")
    _probe(extra_venvs["gcp"].result(), "gcp", pubsub.host)

